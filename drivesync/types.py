"""Plain value types shared by every layer."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Optional

from .errors import UsageError

FOLDER = "folder"
FILE = "file"

# Files whose name starts with this are in-flight uploads/downloads written by
# drivesync itself; listings hide them and nothing treats them as user data.
TEMP_PREFIX = ".drivesync-partial-"
# Every name drivesync writes for itself (temp files, local trash, locks, state)
# starts with this; listings hide such items.
INTERNAL_PREFIX = ".drivesync"


def clean_relpath(path: str) -> str:
    """Normalise a remote-relative path; refuse anything that could leave the root.

    Every remote (local, Drive, object stores) and every address parser runs a
    path through this before using it, so it lives with the shared types.
    """
    if "\x00" in path:
        raise UsageError(f"path contains a NUL byte: {path!r}")
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UsageError(f"path must stay inside the remote root: {path!r}")
    return "/".join(parts)


def is_internal(name: str) -> bool:
    return name.startswith(INTERNAL_PREFIX)


def temp_name(name: str) -> str:
    """The name of the in-flight copy of ``name`` (same folder).

    Fixed length (35 bytes), never prefix + name: a final name may use all 255
    bytes a file system allows, and its temporary name must fit too. The same
    name always gives the same temporary name, so a re-run resumes it.
    """
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()
    return TEMP_PREFIX + digest[:16]


@dataclass(frozen=True)
class Entry:
    """One file or folder on a Remote.

    ``path`` is a POSIX path relative to the remote's root ("" is the root).
    ``id`` is an opaque handle (a Drive file id, or the absolute local path) used
    only to address one of several same-named items; above the remotes layer it
    is passed back, never interpreted.
    """

    path: str
    size: int = 0
    md5: Optional[str] = None
    modified: float = 0.0  # seconds since the epoch, UTC
    kind: str = FILE
    id: str = ""

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> str:
        return posixpath.dirname(self.path)

    @property
    def is_dir(self) -> bool:
        return self.kind == FOLDER


@dataclass(frozen=True)
class Quota:
    """Storage in bytes; ``limit`` is None when unlimited. ``trash`` counts in ``usage``."""

    limit: Optional[int]
    usage: int
    trash: int = 0
    items: Optional[int] = None       # items held, where the store limits them (shared drive)
    item_limit: Optional[int] = None
    note: str = ""                    # what the figures mean there, when not a user's quota

    @property
    def free(self) -> Optional[int]:
        return None if self.limit is None else max(0, self.limit - self.usage)


@dataclass
class Stats:
    """Counters a Remote keeps so commands can report what they cost."""

    requests: int = 0
    retries: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    extra: dict = field(default_factory=dict)


def join(*parts: str) -> str:
    """Join remote path parts, dropping empty ones; never returns a leading '/'."""
    out = posixpath.join(*[p.strip("/") for p in parts if p and p.strip("/")]) if any(
        p and p.strip("/") for p in parts
    ) else ""
    return posixpath.normpath(out) if out else ""
