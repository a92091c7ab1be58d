"""The local disk as downloads see it: its free space and the files bytes go to.

One small object, so a test can stand in a full disk (few free bytes, a write
failing with ENOSPC) without touching ``os``; every download and pull takes it.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Union

#: errors that mean "the disk (or the user's disk quota) is full"
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class LocalDisk:
    def free_bytes(self, path: Union[str, Path]) -> int:
        """Bytes a non-root user may still write on the file system holding ``path``
        (its nearest existing parent when ``path`` is not made yet)."""
        p = Path(os.path.abspath(path))
        while not p.exists() and p.parent != p:
            p = p.parent
        return shutil.disk_usage(p).free

    def open_append(self, path: Union[str, Path]) -> BinaryIO:
        """``path`` opened for appending bytes, created 0644; never through a symlink."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o644)
        return os.fdopen(fd, "ab")

    def open_new(self, path: Union[str, Path]) -> BinaryIO:
        """A new file ``path`` (an existing file or link there is an error)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        return os.fdopen(fd, "wb")


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


DISK = LocalDisk()


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS
