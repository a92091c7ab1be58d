"""Folder ids by path, for a store that addresses items by id (rclone's ``lib/dircache``).

A path is a tuple of names from the store's base folder (My Drive or a shared
drive). The backend answers two questions, one folder level at a time: which
folder of this name is in that parent (``find_leaf``), and make one
(``make_leaf``); this module walks the levels, remembers the answers and keeps
threads that resolve in parallel from creating the same folder twice.

What it guarantees, whatever the backend:
- an error reading a folder (auth, network, rate limit) propagates as itself:
  only an answer saying "no such item" becomes NotFound;
- a file where a folder is asked for is a NotAFolder (exit 2) when making the
  path, a :class:`FileInTheWay` (a NotFound for lookups, said plainly) otherwise;
- folders are made one at a time and looked up again under the lock, so two
  threads asking for the same new folder get the same id.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from ..errors import NotAFolder, NotFound

Parts = tuple[str, ...]


class LeafIsFile(Exception):
    """``find_leaf``'s answer when the name is taken by files only (never escapes)."""


class FileInTheWay(NotFound):
    """A path used as a folder names a file: absent as a folder, said plainly; for the
    user the wrong place was named, the usage error (exit 2) every verb gives for it."""

    exit_code = NotAFolder.exit_code


class DirCache:
    """Resolves folder paths to ids through ``find_leaf`` / ``make_leaf``; thread-safe.

    ``base()`` is the id of the empty path (asked lazily: it may cost a request);
    ``find_leaf(parent_id, parts)`` is the id of folder ``parts[-1]`` in the parent,
    None when no item has that name, :class:`LeafIsFile` when only files do;
    ``make_leaf(parent_id, parts)`` creates it and returns the id to use;
    ``where(parts)`` names a path in messages.
    """

    def __init__(self, *, base: Callable[[], str],
                 find_leaf: Callable[[str, Parts], Optional[str]],
                 make_leaf: Callable[[str, Parts], str],
                 where: Callable[[Parts], str]):
        self._base = base
        self._find_leaf = find_leaf
        self._make_leaf = make_leaf
        self._where = where
        self._ids: dict[Parts, str] = {}
        self._lock = threading.Lock()          # the dict
        self._mkdir = threading.RLock()        # folder creation: one at a time, no twins

    # ---- the cache itself ------------------------------------------------------
    def get(self, parts: Parts) -> Optional[str]:
        with self._lock:
            return self._ids.get(parts)

    def put(self, parts: Parts, folder_id: str) -> None:
        with self._lock:
            self._ids[parts] = folder_id

    def offer(self, parts: Parts, folder_id: str) -> None:
        """Remember ``folder_id`` unless ``parts`` is known already (a listing saw it)."""
        with self._lock:
            self._ids.setdefault(parts, folder_id)

    def flush(self, parts: Parts = ()) -> None:
        """Forget ``parts`` and everything below it (after a move or delete); all by default."""
        n = len(parts)
        with self._lock:
            for key in [k for k in self._ids if k[:n] == parts]:
                del self._ids[key]

    # ---- resolving -------------------------------------------------------------
    def find(self, parts: Parts, *, create: bool = False) -> str:
        """Id of folder ``parts``; NotFound (or made, with ``create``) when absent."""
        if not parts:
            return self._base()
        cached = self.get(parts)
        if cached:
            return cached
        parent = self.find(parts[:-1], create=create)
        found = self._lookup(parent, parts, create=create)
        if found:
            return found
        if not create:
            raise NotFound(f"{self._where(parts)}: no such folder")
        with self._mkdir:  # re-check: another thread may have just made it
            found = self.get(parts) or self._lookup(parent, parts, create=True)
            if found:
                return found
            made = self._make_leaf(parent, parts)
            self.put(parts, made)
            return made

    def existing(self, parts: Parts) -> str:
        """Id of an existing folder; NotFound naming the whole path asked for."""
        self._base()  # a missing base (shared drive) is said as such, not as a missing folder
        try:
            return self.find(parts)
        except FileInTheWay:
            raise
        except NotFound:
            raise NotFound(f"{self._where(parts)}: no such folder") from None

    def _lookup(self, parent: str, parts: Parts, *, create: bool) -> Optional[str]:
        try:
            found = self._find_leaf(parent, parts)
        except LeafIsFile:
            if create:
                raise NotAFolder(f"{self._where(parts)}: exists and is not a folder") from None
            raise FileInTheWay(f"{self._where(parts)}: is a file, not a folder") from None
        if found:
            self.put(parts, found)
        return found
