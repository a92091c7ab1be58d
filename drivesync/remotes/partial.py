"""The temporary file a download streams into, shared by every Remote.

Bytes go to a hidden sibling of the destination (resumed when an interrupted
run left one), are hashed as they are written, and the file is renamed onto the
destination only when the md5 matches: a half-written or corrupt destination
never exists, and a bad partial is thrown away. A disk that fills up (ENOSPC)
also throws the partial away, so a failed pull does not keep the disk full.

Writing and hashing run in a second thread for files larger than one block,
so the connection is read while the previous block is written: at most
``DEPTH`` blocks wait in between, which bounds memory per download. That
thread also syncs to disk every ``SYNC_EVERY`` bytes, so the fsync before the
rename (a crash never leaves an empty file under the final name) is short.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import BinaryIO, Optional, Union

from ..errors import ChecksumMismatch, DiskFull
from ..hashing import CHUNK
from ..localdisk import DISK, LocalDisk, is_disk_full
from ..progress import human_bytes
from ..types import temp_name

# Measured with benchmarks/bench_sync.py pull: 512 KiB x 4 keeps 8 parallel downloads
# at ~76 MB peak RSS and 4 at >= 90% of their connections; 1 MiB x 2 was ~2 points
# faster and 14 MB heavier at 8.
BLOCK = 1 << 19   # bytes handed from the receiving thread to the writer at a time
DEPTH = 4         # blocks queued for the writer: (DEPTH + 2) x BLOCK = 3 MiB per download
SYNC_EVERY = 8 << 20  # the writer flushes to disk as it goes, so the final fsync is short


class PartialDownload:
    """``with PartialDownload(dest, size=...) as part: part.write(...)`` then ``commit``."""

    def __init__(self, dest: Union[str, Path], *, size: int, disk: LocalDisk = DISK):
        self.dest = Path(dest)
        self.size = size
        self.disk = disk
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dest.parent / temp_name(self.dest.name)
        if self.tmp.is_symlink():
            self.tmp.unlink()  # never write through a link planted where the partial goes
        self.have = self.tmp.stat().st_size if self.tmp.exists() else 0
        if self.have > size:  # not a prefix of this file: start again
            self.tmp.unlink()
            self.have = 0
        self._digest = hashlib.md5()
        if self.have:  # resuming: the bytes already on disk count towards the md5
            with open(self.tmp, "rb") as part:
                for block in iter(lambda: part.read(CHUNK), b""):
                    self._digest.update(block)
        self.written = self.have
        self._unsynced = 0
        self._out: Optional[BinaryIO] = None
        self._queue: Optional[queue.Queue] = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def __enter__(self) -> PartialDownload:
        free = self.disk.free_bytes(self.dest.parent)
        if self.size - self.have > free:
            raise DiskFull(f"{self.dest}: not enough free space on the disk of "
                           f"{self.dest.parent}: needed {human_bytes(self.size - self.have)} "
                           f"({self.size - self.have} bytes), {human_bytes(free)} ({free} "
                           "bytes) free; nothing was written")
        try:
            self._out = self.disk.open_append(self.tmp)
        except OSError as exc:
            self._fail(exc)
            raise self._disk_full() from exc
        if self.size - self.have > BLOCK:
            self._queue = queue.Queue(maxsize=DEPTH)
            self._thread = threading.Thread(target=self._drain, daemon=True,
                                            name="drivesync-writer")
            self._thread.start()
        return self

    def write(self, data: bytes) -> None:
        """Queue ``data`` (blocks while ``DEPTH`` blocks wait); raises a writer failure."""
        assert self._out is not None, "use PartialDownload as a context manager"
        if self._error is not None:
            raise self._raised()
        if self._queue is None:
            self._store(data)
            if self._error is not None:
                raise self._raised()
        else:
            self._queue.put(data)

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self._error is None:  # after a failure: keep taking, so write() never blocks
                self._store(data)

    def _store(self, data: bytes) -> None:
        assert self._out is not None
        try:
            self._out.write(data)
        except BaseException as exc:  # noqa: BLE001 - handed to the receiving thread
            self._fail(exc)
            return
        self._digest.update(data)
        self.written += len(data)
        self._unsynced += len(data)
        if self._queue is not None and self._unsynced >= SYNC_EVERY:
            self._unsynced = 0
            try:
                self._out.flush()
                os.fdatasync(self._out.fileno())
            except OSError as exc:
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def _raised(self) -> BaseException:
        return self._disk_full() if is_disk_full(self._error) else self._error  # type: ignore[return-value]

    def _disk_full(self) -> DiskFull:
        try:
            free = self.disk.free_bytes(self.dest.parent)
        except OSError:
            free = 0
        return DiskFull(f"{self.dest}: no space left on the disk of {self.dest.parent} "
                        f"(needed {human_bytes(self.size)}, {human_bytes(free)} free); "
                        "the partial file was removed: free some space and re-run")

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = self._queue = None
        if self._out is not None:
            try:
                self._out.flush()
                os.fsync(self._out.fileno())
            except OSError as err:
                self._fail(err)
            finally:
                try:
                    self._out.close()
                except OSError as err:  # the final flush of a full disk
                    self._fail(err)
                self._out = None
        if self._error is not None and is_disk_full(self._error):
            self.tmp.unlink(missing_ok=True)  # a full disk must not stay full of our partial
            if exc[0] is None or not isinstance(exc[1], DiskFull):
                raise self._disk_full() from self._error
        elif self._error is not None and exc[0] is None:
            raise self._error

    def commit(self, expected_md5: Optional[str], *, label: str,
               mtime: Optional[float] = None) -> None:
        """Rename onto the destination if the md5 matches; else drop the partial.

        ``mtime`` (the remote's modified time) is set first, so the file appears
        with it, as rclone and ``cp -p`` keep it: ``latest`` and users' tools
        order files by it.
        """
        got = self._digest.hexdigest()
        if got != expected_md5:
            self.tmp.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{label}: downloaded md5 {got}, expected {expected_md5}")
        if mtime:
            os.utime(self.tmp, (os.stat(self.tmp).st_atime, mtime))
        os.replace(self.tmp, self.dest)
