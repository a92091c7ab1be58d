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

from .config import Settings, load_settings

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


#: The md5 cache's file name inside the state directory (``Settings.resolved_state_dir()``).
CACHE_FILE = "hashes.sqlite"


def cache_path(state_dir: Union[str, Path]) -> Path:
    """Where the md5 cache lives in ``state_dir``; callers pass
    ``settings.resolved_state_dir()``, the one place the state directory is decided."""
    return Path(state_dir) / CACHE_FILE


def default_cache_path(settings: Optional[Settings] = None) -> Path:
    """The md5 cache of ``settings`` (default: resolved as the CLI does, flags aside).

    For callers not handed a state directory; it never reads the environment
    itself, so DRIVESYNC_STATE_DIR, ``state_dir =`` in the config file and
    XDG_CACHE_HOME mean the same here as everywhere else.
    """
    return cache_path((settings or load_settings()).resolved_state_dir())


class HashCache:
    """md5 by (absolute path, size, mtime_ns); ``path=None`` keeps it in memory.

    Safe to share between threads. ``reads`` counts files whose contents were
    actually hashed, so tests and benchmarks can prove a no-op run read nothing.
    The database is opened on first use, so a remote that never hashes (``mkdir``)
    creates no state directory.
    """

    def __init__(self, path: Optional[Union[str, Path]] = None):
        self.path = Path(path) if path else None
        self._conn: Optional[sqlite3.Connection] = None
        self._lock = threading.Lock()
        self.reads = 0

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, opened on first use; call with ``_lock`` held."""
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every write is committed at once, so two caches (two
        # processes, or two remotes in one process) never wait on each other's
        # open transaction. WAL + synchronous=NORMAL keeps commits cheap.
        db = sqlite3.connect(str(self.path) if self.path else ":memory:",
                             check_same_thread=False, timeout=30, isolation_level=None)
        db.execute(f"PRAGMA journal_mode={'WAL' if self.path else 'MEMORY'}")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS md5 (path TEXT PRIMARY KEY, size INTEGER,"
                   " mtime_ns INTEGER, md5 TEXT)")
        return db

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
            if self._conn is not None:
                self._conn.close()
                self._conn = None
