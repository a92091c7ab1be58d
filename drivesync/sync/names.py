"""Turn untrusted Drive names into safe local path parts.

Drive allows any name: "../evil", "a/b", "CON", "", names with NUL or control
characters, and several items with one name in a folder. Nothing from Drive
may become a local path before it went through :func:`safe_part`, and every
final path is checked to stay inside the target folder (:func:`inside`).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from typing import Iterable, Sequence

from ..types import Entry

MAX_PART_BYTES = 255  # every common file system's limit; a name that fits is kept as is
_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}
_BAD = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


def safe_part(name: str) -> str:
    """One local file or folder name for a Drive name; never empty, ".", ".." or reserved.

    On POSIX a name that :func:`remote_part` encoded gets its backslashes back
    (``a＼b.txt`` -> ``a\\b.txt``), so push and pull round-trip. A name over the file
    system's 255 bytes is shortened with a stable hash suffix (:func:`shorten`).
    """
    out = _BAD.sub("_", name).strip(" ")
    if os.sep == "/" and (BACKSLASH_SHOWN in out or QUOTE in out):
        out = local_part(out)
    out = out.rstrip(".") if out not in (".", "..") else out  # Windows drops trailing dots
    if out in ("", ".", ".."):
        out = "_" + out.replace(".", "_") if out else "_unnamed"
    stem = out.split(".", 1)[0].upper()
    if stem in _RESERVED:
        out = "_" + out
    if out.startswith(".drivesync"):  # never shadow drivesync's own internal files
        out = "_" + out
    return _truncate(out, MAX_PART_BYTES)


def _truncate(name: str, limit: int) -> str:
    return shorten(name, limit)


def shorten(name: str, limit: int = MAX_PART_BYTES) -> str:
    """``name`` if it fits ``limit`` bytes, else its start + ``~`` + 10 hex digits of its
    sha1 + its extension: the same on every run, and two long names that share a
    start still differ. Callers report the shortening (:func:`is_shortened`)."""
    if len(name.encode("utf-8", "surrogateescape")) <= limit:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    stem, ext = posixpath.splitext(name)
    ext = ext if len(ext.encode("utf-8", "surrogateescape")) <= 20 else ""
    tail = f"~{digest}{ext}"
    budget = limit - len(tail.encode("utf-8", "surrogateescape"))
    cut = stem.encode("utf-8", "surrogateescape")[:budget].decode("utf-8", "ignore")
    return cut + tail


def is_shortened(raw: str) -> bool:
    """Whether the local name of remote name ``raw`` had to be shortened."""
    return len(raw.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES


def numbered(name: str, n: int) -> str:
    """``name (n).ext``: the distinct name given to the n-th same-named item."""
    if n <= 1:
        return name
    stem, ext = posixpath.splitext(name)
    if not stem:  # ".bashrc" style names
        stem, ext = name, ""
    suffix = f" ({n}){ext}"
    budget = MAX_PART_BYTES - len(suffix.encode("utf-8"))
    if budget < 1:  # an absurd extension: drop it rather than the number
        suffix, budget = f" ({n})", MAX_PART_BYTES - len(f" ({n})")
    return stem.encode("utf-8")[:budget].decode("utf-8", "ignore") + suffix


def assign_names(entries: Sequence[Entry], *, folder: str = "",
                 taken: Iterable[str] = ()) -> dict[str, str]:
    """Local names for the children of one remote folder: {entry id: local name}.

    Same-named items (before or after sanitising, compared case-insensitively so
    the result also works on macOS/Windows) get ``name (2).ext``, ... in order of
    (modified, id), so the choice is the same on every run.
    """
    used = {t.lower() for t in taken}
    out: dict[str, str] = {}
    ordered = sorted(entries, key=lambda e: (safe_part(raw_name(e, folder)).lower(),
                                             e.modified, e.id))
    for e in ordered:
        base = safe_part(raw_name(e, folder))
        n, cand = 1, base
        while cand.lower() in used:
            n += 1
            cand = numbered(base, n)
        used.add(cand.lower())
        out[e.id or e.path] = cand
    return out


def raw_name(entry: Entry, folder: str = "") -> str:
    """The item's own name as listed in ``folder``.

    ``Entry.name`` (a basename) would cut a Drive name holding "/" short, so the
    name is taken as everything after the folder's path.
    """
    prefix = folder.rstrip("/") + "/" if folder else ""
    if prefix and entry.path.startswith(prefix):
        return entry.path[len(prefix):]
    if not prefix:
        return entry.path
    return entry.name


def inside(root: str, path: str) -> bool:
    """True when ``path`` (after resolving links) is ``root`` or below it."""
    r = os.path.realpath(root)
    p = os.path.realpath(path)
    try:
        return os.path.commonpath([r, p]) == r
    except ValueError:  # different drives on Windows
        return False


def ensure_dir(root: str, parts: Sequence[str]) -> str:
    """Create ``root/parts...`` one level at a time, refusing links that leave ``root``.

    ``os.makedirs`` would follow a pre-existing symlink ``root/a -> /etc`` and
    create folders outside; here every existing level is checked first.
    """
    cur = os.path.realpath(root)
    for part in parts:
        if part in ("", ".", "..") or "/" in part or (os.sep != "/" and "\\" in part):
            raise ValueError(f"unsafe path part {part!r}")
        nxt = os.path.join(cur, part)
        if os.path.islink(nxt):
            if not inside(root, nxt) or not os.path.isdir(nxt):
                raise ValueError(f"{nxt}: a link that leaves the target folder")
        elif not os.path.exists(nxt):
            os.mkdir(nxt)
        elif not os.path.isdir(nxt):
            raise ValueError(f"{nxt}: a file is in the way of a folder")
        cur = nxt
    if not inside(root, cur):
        raise ValueError(f"{cur}: outside the target folder")
    return cur


# ---- local names <-> remote names (push side) ----------------------------------------
# A Linux file name may hold "\\", which every path on the remote side reads as a
# separator ("a\\b.txt" became a folder "a" and a file "b.txt", never matched again, and
# each re-push added a copy). Encoded reversibly as rclone does: "\\" -> FULLWIDTH
# REVERSE SOLIDUS; the two characters the encoding uses are quoted with QUOTE when a
# name holds them literally, so the mapping is one-to-one.
BACKSLASH_SHOWN = "\uff3c"   # ＼
QUOTE = "\u201b"             # ‛
_SPECIAL = (BACKSLASH_SHOWN, QUOTE)


class ControlCharacterName(ValueError):
    """A local name holds a control character (newline, ESC...): pull never writes
    such a name (it would drive a terminal), so it could not come back: push refuses it."""


def remote_part(name: str) -> str:
    """The remote name of one local name (one path part), the same on every run;
    :func:`local_part` gives the local name back. UnicodeEncodeError for a name that
    is not valid UTF-8 (surrogate escapes): Drive names are UTF-8, push reports it;
    ControlCharacterName for one that pull could not give back."""
    name.encode("utf-8")  # strict: surrogate-escaped bytes cannot become a Drive name
    bad = next((ch for ch in name if ch < " " or ch == "\x7f"), None)
    if bad is not None:
        raise ControlCharacterName(f"the name holds the control character {bad!r}")
    out = []
    for ch in name:
        if ch == "\\":
            out.append(BACKSLASH_SHOWN)
        elif ch in _SPECIAL:
            out.append(QUOTE + ch)
        else:
            out.append(ch)
    return "".join(out)


def local_part(name: str) -> str:
    """The inverse of :func:`remote_part`; a QUOTE not followed by ＼ or ‛ stays."""
    out = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == QUOTE and i + 1 < len(name) and name[i + 1] in _SPECIAL:
            out.append(name[i + 1])
            i += 2
            continue
        out.append("\\" if ch == BACKSLASH_SHOWN else ch)
        i += 1
    return "".join(out)


def printable(name: str) -> str:
    """A local name for messages: undecodable bytes shown as \\xNN, never an error."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
