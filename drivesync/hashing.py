"""Streaming md5 and a small SQLite cache of file md5s keyed by (path, size, mtime).

The cache lets a re-push of an unchanged dataset read no file contents.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Optional, Union

CHUNK = 1 << 20


def md5_file(path: Union[str, Path], *, on_bytes: Optional[Callable[[int], None]] = None) -> str:
    """md5 hex digest of a file, read in 1 MiB chunks (memory stays flat)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                break
            h.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return h.hexdigest()


def _key(path: str) -> Union[str, bytes]:
    """The cache key of an absolute path: the text, or for a name that is not valid
    UTF-8 (Python hands it over with surrogate escapes, which SQLite cannot store as
    text) the raw bytes; a BLOB never equals a TEXT key, so the two cannot collide."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def default_cache_path() -> Path:
    base = os.environ.get("DRIVESYNC_STATE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "drivesync")
    return Path(base) / "hashes.sqlite"


class HashCache:
    """md5 by (absolute path, size, mtime_ns); ``path=None`` keeps it in memory.

    Safe to share between threads. ``reads`` counts files whose contents were
    actually hashed, so tests and benchmarks can prove a no-op run read nothing.
    """

    def __init__(self, path: Optional[Union[str, Path]] = None):
        self.path = Path(path) if path else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every write is committed at once, so two caches (two
        # processes, or two remotes in one process) never wait on each other's
        # open transaction. WAL + synchronous=NORMAL keeps commits cheap.
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:",
                                   check_same_thread=False, timeout=30, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            mode = "WAL" if self.path else "MEMORY"
            self._db.execute(f"PRAGMA journal_mode={mode}")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS md5 (path TEXT PRIMARY KEY, size INTEGER,"
                " mtime_ns INTEGER, md5 TEXT)")
        self.reads = 0

    def md5(self, file: Union[str, Path], *, st: Optional[os.stat_result] = None) -> str:
        p = os.path.abspath(file)
        st = st or os.stat(p)
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns, md5 FROM md5 WHERE path=?",
                                   (_key(p),)).fetchone()
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return row[2]
        digest = md5_file(p)
        with self._lock:
            self.reads += 1
            self._db.execute("INSERT OR REPLACE INTO md5 VALUES (?,?,?,?)",
                             (_key(p), st.st_size, st.st_mtime_ns, digest))
        return digest

    def remember(self, file: Union[str, Path], md5: str, *, st: os.stat_result) -> None:
        """Record an md5 learned elsewhere (e.g. verified by an upload) for ``st``.

        Lets the next push skip reading a file that was just uploaded.
        """
        p = os.path.abspath(file)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO md5 VALUES (?,?,?,?)",
                             (_key(p), st.st_size, st.st_mtime_ns, md5))

    def flush(self) -> None:
        """Kept for callers; writes are already committed."""

    def close(self) -> None:
        with self._lock:
            self._db.close()
