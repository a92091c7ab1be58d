"""One writer per output folder: ``OUT/.drivesync-lock`` held with a non-blocking flock.

Two runs writing the same OUT would plan the same free names, race on the
journal and the manifest, and one of them would lose the other's entries.
The lock is an advisory ``flock`` on a file inside OUT, so it goes away with
the process however it ends (even SIGKILL): no stale lock to clean up.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from ..errors import LockedError
from .names import display

log = logging.getLogger(__name__)

LOCK = ".drivesync-lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; msvcrt locks a byte range instead
    fcntl = None  # type: ignore[assignment]


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    import msvcrt

    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def out_lock(out: str) -> Iterator[None]:
    """Hold the lock of ``out`` (created if needed) for the body; LockedError when taken."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            raise LockedError(
                f"{display(out)} is being written by another drivesync run "
                f"(it holds {LOCK}); wait for it to finish"
            )
        if fcntl is not None:  # who holds it, for a curious user
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiter)
