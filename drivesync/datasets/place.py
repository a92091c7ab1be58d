"""Put one file where the plan says, in link, copy or move mode; idempotent and never lossy.

Every step is judged from what is on disk (source there? destination there?
same inode, same md5, same bytes?), so running a step twice, or after a crash
in the middle of it, ends the same way: the file present once, nothing
overwritten that was not ours. Hard links fall back to copies, and renames to
a durable copy + unlink, when source and output sit on different filesystems.

An md5 of "" means unknown (a link or move shard does not hash images): it is
never compared as a value. Whether a destination already holds the file is
then decided by its inode or by comparing its bytes with the source's.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from typing import Set, Tuple

from ..hashing import md5_file
from ..types import TEMP_PREFIX
from .manifest import FileOp
from .names import display
from .report import Report, atomic_write

log = logging.getLogger(__name__)

# link() refused for a reason that means "not here", not "something is wrong"
NOLINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES}
_BLOCK = 1 << 20


def size_of(path: str) -> int:
    """The size of a file, -1 when it is not there (one stat)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def size_md5(path: str) -> Tuple[int, str]:
    return os.path.getsize(path), md5_file(path)


def same_bytes(a: str, b: str) -> bool:
    """Whether two files hold the same bytes, block by block.

    Not filecmp.cmp: its module-level cache would grow with every pair
    compared, and memory must stay flat over a 60k-pair dataset.
    Raises FileNotFoundError when either file is missing.
    """
    with open(a, "rb") as fa, open(b, "rb") as fb:
        if os.fstat(fa.fileno()).st_size != os.fstat(fb.fileno()).st_size:
            return False
        while True:
            x, y = fa.read(_BLOCK), fb.read(_BLOCK)
            if x != y:
                return False
            if not x:
                return True


def in_place(mode: str, src: str, dst: str, size: int, md5: str) -> bool:
    """Whether ``dst`` still holds what the (just probed) source placed there, from one stat.

    The caller has found the same md5 for the source now and in the manifest:
    a real one, or "" (unknown) on both sides; then the size decides. A link
    needs no more (the same inode, or a copy where no hard link was possible:
    its size). A move whose source is still there is never "in place": the
    Executor finishes it and drops the source only once proven identical.
    """
    try:
        d = os.stat(dst)
    except OSError:
        return False
    if d.st_size != size:
        return False
    return bool(md5) or mode == "link"  # the caller has just read the source


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

    def _holds(self, src: str, dst: str, size: int, md5: str) -> bool:
        """Whether the existing ``dst`` is proven to hold the source's bytes.

        A known md5 is compared with dst's; an unknown one ("") means comparing
        dst with the source itself. Raises FileNotFoundError when the source is
        gone and the md5 is unknown (the caller decides what is there now).
        """
        if md5:
            return size_md5(dst) == (size, md5)
        return same_bytes(src, dst)

    def _replace(self, src: str, dst: str, size: int, md5: str) -> bool:
        if os.path.exists(dst):
            try:
                if self._holds(src, dst, size, md5):
                    return True
            except FileNotFoundError:
                # the source is gone: dst is what is left of it; keep it as it is
                if not os.path.lexists(src) and size_of(dst) == size:
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
            try:
                same = os.path.samefile(src, dst) or self._holds(src, dst, size, md5)
            except FileNotFoundError:  # the source went away meanwhile
                return self._moved_already(src, dst)
            if same:
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
