"""A non-blocking per-folder lock so two prune runs (cron overlap) never race.

An advisory ``flock`` on a file in the state dir named after the remote address
and folder; the kernel drops it when the process dies, so a crashed run never
leaves a stale lock behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from types import TracebackType
from typing import IO, Optional

from ..errors import LockedError

log = logging.getLogger(__name__)

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


def lock_path(lock_dir: Path, address: str, path: str = "") -> Path:
    """``LOCK_DIR/locks/prune-<readable>-<hash>.lock`` for one remote folder."""
    key = f"{address}/{path.strip('/')}" if path.strip("/") else address
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[-60:].strip("_")
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    return Path(lock_dir) / "locks" / f"prune-{readable}-{digest}.lock"


class FolderLock:
    """``with FolderLock(path, what):`` or raise LockedError (exit 8) at once."""

    def __init__(self, path: Path, what: str = ""):
        self.path = Path(path)
        self.what = what or str(path)
        self._file: Optional[IO[str]] = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")
        try:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # pragma: no cover
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            f.close()
            raise LockedError(f"another drivesync run holds the lock for {self.what} "
                              f"({self.path}); try again when it has finished") from exc
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        log.debug("locked %s", self.path)

    def release(self) -> None:
        if self._file is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.release()
