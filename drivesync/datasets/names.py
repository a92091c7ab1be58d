"""Names and paths as datasets see them: printable, ASCII-safe, relative keys (pure)."""

from __future__ import annotations

import os
import re
import unicodedata
from typing import Any, Optional, Tuple

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


def name_fields(root: str, path: str) -> Tuple[str, str, str, Optional[str]]:
    """(key, safe stem, lower-case ext, why the stem was changed or None); pure."""
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    if _PLAIN.fullmatch(stem) and stem[-1] not in "._-":
        return relkey(root, path), stem, ext.lower(), None
    new = safe_stem(stem)
    try:
        base.encode("utf-8")
        why = "name is not plain ASCII or has unsafe characters"
    except UnicodeEncodeError:
        why = "name is not valid UTF-8"
    return relkey(root, path), new, ext.lower(), (None if new == stem else why)
