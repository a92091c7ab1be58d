"""Names and paths as datasets see them: printable, ASCII-safe, relative keys (pure)."""

from __future__ import annotations

import contextlib
import os
import re
import unicodedata
from typing import Any, Iterator, Optional, Tuple

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def display(path: Any) -> str:
    """A printable form of any path, even one whose bytes are not UTF-8."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def safe_stem(stem: str) -> str:
    """An ASCII stem that is safe in train.txt, on Drive, on Windows and in shells.

    Accents are folded (``é`` -> ``e``), anything else outside ``[A-Za-z0-9._-]``
    becomes ``_``. A name that cannot be listed safely is renamed, never
    written as-is, because one bad line in train.txt stops darknet.
    """
    folded = unicodedata.normalize("NFKD", stem)
    folded = folded.encode("ascii", "ignore").decode("ascii")
    out = _UNSAFE.sub("_", folded).strip("._-")
    return out or "img"


def relkey(root: str, path: str) -> str:
    """The POSIX path of ``path`` relative to ``root`` (the manifest key)."""
    if os.sep == "/" and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) + 1 :]  # the common case, without relpath's cost
    return os.path.relpath(path, root).replace(os.sep, "/")


# One run's choice (prepare --ascii-names), set by ascii_names(): forked workers
# inherit it; a module value because the converters and workers share this code.
_ASCII_ONLY = False


@contextlib.contextmanager
def ascii_names(on: bool) -> Iterator[None]:
    """Within the block, image names are transliterated to ASCII (``街景_01`` -> ``01``)."""
    global _ASCII_ONLY
    before, _ASCII_ONLY = _ASCII_ONLY, bool(on)
    try:
        yield
    finally:
        _ASCII_ONLY = before


def _word_char(c: str) -> bool:
    """Letters and digits of any script (and their combining marks), '.', '_', '-'."""
    return c.isalnum() or c in "._-" or unicodedata.category(c).startswith("M")


def utf8_stem(stem: str) -> str:
    """A valid UTF-8 stem kept as it is (darknet and Ultralytics on Linux read it);
    only characters that break a list file or a shell (spaces, controls, quotes,
    slashes...) become ``_``."""
    out = "".join(c if _word_char(c) else "_" for c in stem)
    out = re.sub(r"_{2,}", "_", out) if out != stem else out
    return out.strip("._-") or "img"


def name_fields(root: str, path: str) -> Tuple[str, str, str, Optional[str]]:
    """(key, safe stem, lower-case ext, why the stem was changed or None); pure.

    A valid UTF-8 name keeps its letters (``街景_01.jpg`` stays); it is folded to
    ASCII only under :func:`ascii_names`, and always when its bytes are not UTF-8.
    """
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    if _PLAIN.fullmatch(stem) and stem[-1] not in "._-":
        return relkey(root, path), stem, ext.lower(), None
    try:
        base.encode("utf-8")
    except UnicodeEncodeError:
        new, why = safe_stem(stem), "name is not valid UTF-8"
    else:
        if _ASCII_ONLY:
            new, why = safe_stem(stem), "name is not plain ASCII or has unsafe characters"
        else:
            new, why = utf8_stem(stem), "name has characters unsafe in a list file or shell"
    return relkey(root, path), new, ext.lower(), (None if new == stem else why)
