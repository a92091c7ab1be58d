"""A local folder standing in for Drive: Colab's /content/drive mount, a
Drive-for-desktop folder, or any directory.

Writes go to a temporary sibling and are renamed into place, so a reader never
sees a half-written file. "Trash" is ``ROOT/.drivesync-trash`` (hidden from
listings, counted in ``quota().trash``). Entry ids are inode numbers, so a
delete aimed at a file that has since been replaced does not remove the new one.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import threading
import time
from pathlib import Path
from typing import BinaryIO, Optional, Union

from ..errors import ChecksumMismatch, NotAFolder, NotFound, RemoteError, Unreadable, UsageError
from ..hashing import CHUNK, HashCache, default_cache_path, md5_file
from ..progress import NULL_PROGRESS, Progress
from ..types import FILE, FOLDER, Entry, Quota, clean_relpath, is_internal, temp_name
from .base import Features, Remote, Target, file_path, outgoing, target_path
from .partial import PartialDownload

log = logging.getLogger(__name__)
TRASH = ".drivesync-trash"
_HASHES_LOCK = threading.Lock()


class LocalRemote(Remote):
    #: a file system's free space is a quota; other programs' files show while written
    features = Features(paced_writes=False, quota=True, live_writes=True)

    def __init__(self, root: Union[str, Path], *, hash_cache: Optional[HashCache] = None):
        super().__init__()
        self.root = Path(root).expanduser().absolute()
        self.address = f"local:{self.root}"
        self._hashes = hash_cache
        self._chunk = CHUNK

    # ---- helpers --------------------------------------------------------
    @property
    def hashes(self) -> HashCache:
        if self._hashes is None:
            with _HASHES_LOCK:  # threads of one push: one cache, not one each (sqlite locks)
                if self._hashes is None:
                    self._hashes = HashCache(default_cache_path())
        return self._hashes

    def _label(self, rel: str) -> str:
        """How a path is named in messages: the address, plus the path if any."""
        return f"{self.address}/{rel}" if rel else self.address

    def _abs(self, path: str) -> Path:
        rel = clean_relpath(path)
        return self.root / rel if rel else self.root

    def _entry(self, rel: str, p: Path, st: Optional[os.stat_result] = None) -> Entry:
        st = st or p.stat()
        if p.is_dir():
            return Entry(path=rel, kind=FOLDER, modified=st.st_mtime, id=str(st.st_ino))
        return Entry(path=rel, size=st.st_size, md5=self.hashes.md5(p, st=st),
                     modified=st.st_mtime, kind=FILE, id=str(st.st_ino))

    def _resolve(self, target: Target) -> tuple[str, Path]:
        rel = clean_relpath(target_path(target))
        p = self._abs(rel)
        if not p.exists():
            raise NotFound(f"{self._label(rel)}: no such file or folder")
        try:
            if isinstance(target, Entry) and target.id and str(p.stat().st_ino) != target.id:
                raise NotFound(f"{self._label(rel)}: the item was replaced since it was listed")
        except FileNotFoundError:
            raise NotFound(f"{self._label(rel)}: no such file or folder") from None
        return rel, p

    # ---- primitives -----------------------------------------------------
    def list(self, path: Target = "") -> list[Entry]:
        return self._list(target_path(path), internal=False)

    def list_internal(self, path: str = "") -> list[Entry]:
        return self._list(path, internal=True)

    def _list(self, path: str, *, internal: bool) -> list[Entry]:
        rel = clean_relpath(path)
        p = self._abs(rel)
        self.stats.requests += 1
        if not p.is_dir():
            raise NotFound(f"{self._label(rel)}: no such folder")
        try:
            children = sorted(os.scandir(p), key=lambda d: d.name)
        except FileNotFoundError:
            raise NotFound(f"{self._label(rel)}: no such folder") from None
        except OSError as exc:  # never "empty": a pruner would take that for "all gone"
            raise Unreadable(f"{self._label(rel)}: cannot list: {exc.strerror or exc}") from None
        out = []
        for child in children:
            if is_internal(child.name) != internal or child.is_symlink() and not child.is_file():
                continue
            try:
                if not (child.is_dir() or child.is_file()):
                    continue  # a FIFO or socket: reading it would block, it holds no file
                out.append(self._entry(posixpath.join(rel, child.name) if rel else child.name,
                                       Path(child.path)))
            except FileNotFoundError:
                continue  # removed while we listed (a trainer or prune at work): it is gone
            except OSError as exc:
                raise Unreadable(f"{self._label(rel)}: cannot read {child.name}: "
                                 f"{exc.strerror or exc}") from None
        return out

    def stat(self, path: str) -> Entry:
        rel, p = self._resolve(path)
        self.stats.requests += 1
        return self._entry(rel, p)

    def mkdir(self, path: str) -> Entry:
        rel = clean_relpath(path)
        p = self._abs(rel)
        if p.exists() and not p.is_dir():
            raise NotAFolder(f"{self._label(rel)}: exists and is not a folder")
        p.mkdir(parents=True, exist_ok=True)
        self.stats.requests += 1
        return self._entry(rel, p)

    def upload(self, source: Union[str, Path], path: str, *,
               progress: Progress = NULL_PROGRESS) -> Entry:
        rel, source, _, want = outgoing(source, path)
        dest = self._abs(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / temp_name(dest.name)
        with open(source, "rb") as src, open(tmp, "wb") as out:
            while True:
                block = src.read(self._chunk)
                if not block:
                    break
                out.write(block)
                progress.on_progress(bytes=len(block))
            out.flush()
            os.fsync(out.fileno())
        got = md5_file(tmp)
        if got != want:
            tmp.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{self._label(rel)}: copy has md5 {got}, source {want}")
        os.replace(tmp, dest)
        self.stats.requests += 1
        self.stats.bytes_up += dest.stat().st_size
        return self._entry(rel, dest)

    def download(self, target: Target, dest: Union[str, Path], *,
                 progress: Progress = NULL_PROGRESS) -> Entry:
        rel, src = self._resolve(target)
        if src.is_dir():
            raise RemoteError(f"{self._label(rel)}: is a folder, not a file")
        try:
            entry = self._entry(rel, src)
            inp = open(src, "rb")
        except FileNotFoundError:  # removed since it was resolved (a writer at work)
            raise NotFound(f"{self._label(rel)}: no such file or folder") from None
        with PartialDownload(dest, size=entry.size, disk=self.disk) as part, inp:
            inp.seek(part.have)
            for block in iter(lambda: inp.read(self._chunk), b""):
                part.write(block)
                progress.on_progress(bytes=len(block))
        part.commit(entry.md5, label=self._label(rel), mtime=entry.modified)
        self.stats.requests += 1
        self.stats.bytes_down += entry.size
        return entry

    def open_read(self, target: Target) -> tuple[Entry, BinaryIO]:
        rel, src = self._resolve(target)
        if src.is_dir():
            raise RemoteError(f"{self._label(rel)}: is a folder, not a file")
        entry = self._entry(rel, src)
        self.stats.requests += 1
        return entry, open(src, "rb")  # noqa: SIM115 - the caller closes it

    def move(self, target: Target, dest_path: str) -> Entry:
        rel, src = self._resolve(target)
        drel = clean_relpath(dest_path)
        dst = self._abs(drel)
        if dst.is_dir():
            raise RemoteError(f"{self._label(drel)}: a folder is in the way")
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        self.stats.requests += 1
        return self._entry(drel, dst)

    def copy(self, target: Target, dest_path: str) -> Entry:
        rel, src = self._resolve(target)
        if src.is_dir():
            raise UsageError(f"{self._label(rel)}: copy copies files, not folders")
        # temp sibling, md5 check, rename
        made = self.upload(src, file_path(dest_path, verb="copy"))
        st = src.stat()
        os.utime(self._abs(made.path), ns=(st.st_atime_ns, st.st_mtime_ns))  # as `cp -p`
        # the md5 upload just verified still holds: only the time changed (no re-read)
        return Entry(path=made.path, size=made.size, md5=made.md5, modified=st.st_mtime,
                     kind=FILE, id=made.id)

    def delete(self, target: Target, *, permanent: bool = False) -> None:
        rel, p = self._resolve(target)
        if not rel:
            raise UsageError("refusing to delete the remote root")
        self.stats.requests += 1
        if permanent:
            try:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            except FileNotFoundError:
                raise NotFound(f"{self._label(rel)}: no such file or folder") from None
            return
        trash = self.root / TRASH
        trash.mkdir(exist_ok=True)
        stamp = f"{time.time():.6f}".replace(".", "")
        os.replace(p, trash / f"{stamp}-{rel.replace('/', '__')}")

    def empty_trash(self) -> None:
        trash = self.root / TRASH
        self.stats.requests += 1
        if trash.exists():
            shutil.rmtree(trash)

    def quota(self) -> Quota:
        usage = shutil.disk_usage(self.root)
        trash = 0
        for dirpath, _dirs, files in os.walk(self.root / TRASH):
            for f in files:
                try:
                    trash += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
        self.stats.requests += 1
        return Quota(limit=usage.total, usage=usage.used, trash=trash)
