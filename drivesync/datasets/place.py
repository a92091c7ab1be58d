"""Put one file where the plan says, in link, copy or move mode; idempotent and never lossy.

Every step is judged from what is on disk (source there? destination there?
same inode or same md5?), so running a step twice, or after a crash in the
middle of it, ends the same way: the file present once, nothing overwritten
that was not ours. Hard links fall back to copies, and renames to a verified
copy + unlink, when source and output sit on different filesystems.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from typing import Set, Tuple

from ..hashing import md5_file
from ..types import TEMP_PREFIX
from . import display
from .manifest import FileOp
from .report import Report, atomic_write

log = logging.getLogger(__name__)

# link() refused for a reason that means "not here", not "something is wrong"
NOLINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES}


def size_of(path: str) -> int:
    """The size of a file, -1 when it is not there (one stat)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def size_md5(path: str) -> Tuple[int, str]:
    return os.path.getsize(path), md5_file(path)


def _temp_beside(dst: str) -> str:
    return os.path.join(os.path.dirname(dst), TEMP_PREFIX + os.path.basename(dst))


def _copy_into_place(src: str, dst: str, *, fsync: bool = False) -> None:
    """Copy to a temp name beside dst and rename into place (never half a file)."""
    tmp = _temp_beside(dst)
    shutil.copy2(src, tmp)
    if fsync:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)


class Executor:
    """Carries out FileOps in one mode; counts what it did; reports what it could not do."""

    def __init__(self, out: str, mode: str, report: Report):
        self.out, self.mode, self.report = out, mode, report
        self.can_link = True
        self.linked = self.copied = self.moved = 0
        self.dirs: Set[str] = set()

    def run(self, op: FileOp, *, fresh: bool = False) -> bool:
        """``fresh``: dst was planned as a new name nobody holds, so a plain rename is safe."""
        src, dst_rel, size, md5, text = op
        dst = self.out + "/" + dst_rel if os.sep == "/" else os.path.join(self.out, dst_rel)
        d = dst[: dst.rfind("/")] if os.sep == "/" else os.path.dirname(dst)
        if d not in self.dirs:
            os.makedirs(d, exist_ok=True)
            self.dirs.add(d)
        if fresh and text is None and self.mode == "move":
            try:
                os.rename(src, dst)  # atomic: the file is under exactly one name at any time
                self.moved += 1
                return True
            except OSError:
                pass  # another filesystem, or the source is gone: take the careful path
        if text is not None:
            if not (os.path.exists(dst) and size_md5(dst) == (size, md5)):
                atomic_write(dst, text, fsync=False)  # the journal holds the text
            return True
        if self.mode == "move":
            return self._move(src, dst, size, md5)
        if self.mode == "link" and self.can_link:
            try:
                os.link(src, dst)
                self.linked += 1
                return True
            except FileExistsError:
                if os.path.samefile(src, dst):
                    return True
                return self._replace(src, dst, size, md5)
            except FileNotFoundError:
                self.report.add(src, "", "source vanished before it could be linked")
                return False
            except OSError as exc:
                if exc.errno not in NOLINK:
                    raise
                log.info("hard links not possible here (%s); copying instead", exc.strerror)
                self.can_link = False
        return self._replace(src, dst, size, md5)

    def _replace(self, src: str, dst: str, size: int, md5: str) -> bool:
        if os.path.exists(dst) and size_md5(dst) == (size, md5):
            return True
        try:
            _copy_into_place(src, dst)
        except FileNotFoundError:
            self.report.add(src, "", "source vanished before it could be copied")
            return False
        self.copied += 1
        return True

    def _move(self, src: str, dst: str, size: int, md5: str) -> bool:
        # link + unlink instead of rename: a link never replaces an existing file,
        # and a crash between the two leaves one inode under two names (still one file).
        if self.can_link:
            try:
                os.link(src, dst)
                os.unlink(src)
                self.moved += 1
                return True
            except FileExistsError:
                pass
            except FileNotFoundError:
                return self._moved_already(src, dst)
            except OSError as exc:
                if exc.errno not in NOLINK:
                    raise
                self.can_link = False
        if not os.path.lexists(src):
            return self._moved_already(src, dst)
        if os.path.lexists(dst):
            if os.path.samefile(src, dst) or size_md5(dst) == (size, md5):
                os.unlink(src)  # the copy is complete and verified: drop the source
                return True
            self.report.add(
                dst, "", f"destination exists with other contents; {display(src)} left in place"
            )
            return False
        try:
            os.rename(src, dst)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # across filesystems: a durable copy first, the source goes only after
            _copy_into_place(src, dst, fsync=True)
            os.unlink(src)
        self.moved += 1
        return True

    def _moved_already(self, src: str, dst: str) -> bool:
        if os.path.exists(dst):
            return True
        self.report.add(src, "", "source is missing and not in the shard either")
        return False
