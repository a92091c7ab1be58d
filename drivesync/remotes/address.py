"""Remote addresses, read strictly: one parser and a registry of remote types.

``WORD:REST`` names a remote type when WORD is registered (``drive:``,
``local:``, and whatever else calls :func:`register_scheme`); any other
``WORD:`` prefix is a usage error, so a typo such as ``gdrive:voc`` never
becomes a new local folder. Text without such a prefix is a local path; a
local path that holds a colon is written ``./a:b`` or ``local:a:b``.

``drive:PATH`` is a path under My Drive: ``drive:`` alone is My Drive
itself, ``drive:space_Colab`` and ``drive:/space_Colab`` are the same
folder, so ``mkdir drive:x`` then ``ls drive:`` shows ``x/``. A leading
``@NAME`` segment names a shared drive instead: ``drive:@TeamData/x`` is
folder ``x`` in the shared drive called TeamData.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import UsageError
from ..types import clean_relpath

if TYPE_CHECKING:
    from ..config import Settings
    from .base import Remote

__all__ = ["Address", "parse_address", "register_scheme", "known_schemes"]

# a URI-style scheme word; a path starting with "/", "." or "~" never matches
_WORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


@dataclass(frozen=True)
class Address:
    """A parsed address: the remote type and the rest, as that type reads it."""

    scheme: str  # "drive", "local", or a registered type such as "s3"
    path: str    # drive: POSIX path under My Drive ("" = My Drive); local: a path
    text: str    # as the user wrote it

    @property
    def is_local(self) -> bool:
        return self.scheme == "local"

    @property
    def is_drive(self) -> bool:
        return self.scheme == "drive"

    @property
    def shared_drive(self) -> Optional[str]:
        """``drive:@NAME/...``: the shared drive's name; None for My Drive and other types."""
        if self.is_drive and self.path.startswith("@"):
            return self.path[1:].partition("/")[0]
        return None

    @property
    def drive_folder(self) -> str:
        """A ``drive:`` path inside its drive (My Drive or the shared drive), "" for its root."""
        return self.path.partition("/")[2] if self.shared_drive is not None else self.path

    @property
    def place(self) -> str:
        """Where this points, in words a user recognises (printed before writing)."""
        if self.is_drive and self.path.startswith("@"):
            name, _, rest = self.path[1:].partition("/")
            return f"shared drive {name}" + (f"/{rest}" if rest else "")
        if self.is_drive:
            return "My Drive" + (f"/{self.path}" if self.path else "")
        if self.is_local:
            return os.path.abspath(os.path.expanduser(self.path))
        return self.text

    def __str__(self) -> str:
        return f"{self.scheme}:{self.path}"


Opener = Callable[[Address, "Settings"], "Remote"]


@dataclass(frozen=True)
class _Scheme:
    name: str
    open: Opener
    normalize: Callable[[str], str]
    summary: str


_SCHEMES: dict[str, _Scheme] = {}


def register_scheme(name: str, opener: Opener, *, summary: str,
                    normalize: Optional[Callable[[str], str]] = None) -> None:
    """Make ``name:`` a remote type; ``opener(address, settings)`` returns its Remote.

    ``normalize`` turns the text after ``name:`` into ``Address.path`` (and may
    raise UsageError for a malformed one); default: unchanged.
    """
    _SCHEMES[name] = _Scheme(name, opener, normalize or (lambda rest: rest), summary)


def known_schemes() -> list[str]:
    """The registered remote types, ``drive`` and ``local`` first."""
    first = [n for n in ("drive", "local") if n in _SCHEMES]
    return first + sorted(n for n in _SCHEMES if n not in first)


def scheme_opener(name: str) -> Opener:
    return _SCHEMES[name].open


def _known_list() -> str:
    return ", ".join(f"{n}: ({_SCHEMES[n].summary})" for n in known_schemes())


def parse_address(text: str) -> Address:
    """Read one remote address; a UsageError (exit 2) says what was expected."""
    if not isinstance(text, str):
        raise UsageError(f"a remote address must be text, got {type(text).__name__}")
    if not text.strip():
        raise UsageError("empty remote address: give drive:FOLDER/SUB, local:PATH or a path")
    if "\x00" in text:
        raise UsageError(f"remote address contains a NUL byte: {text!r}")
    m = _WORD.match(text)
    if m is None:
        return Address("local", text, text)
    word, rest = m.group(1), text[m.end():]
    scheme = _SCHEMES.get(word)
    if scheme is None:
        hint = ""
        if word.lower() in _SCHEMES:
            hint = f" (did you mean {word.lower()}:?)"
        raise UsageError(
            f"{text!r}: unknown remote type {word + ':'!r}{hint}; known types: "
            f"{_known_list()}; a local path that holds a colon is written ./{text} "
            f"or local:{text}")
    if scheme.name == "local" and not rest:
        raise UsageError("empty local path in remote address 'local:'")
    return Address(scheme.name, scheme.normalize(rest), text)


def drive_path(rest: str) -> str:
    """``drive:`` paths: leading/trailing slashes do not matter; no ``..``."""
    return clean_relpath(rest)
