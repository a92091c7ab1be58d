"""The Remote contract on an object store (S3, GCS), written once over a small Store.

An object store has keys, not folders. Here a folder is a key prefix: it exists
while a key lies below it or its marker object ``dir/`` (zero bytes, as the S3
and GCS consoles and rclone write them) does. ``mkdir`` writes the marker, and so
does a delete or move that takes the last item out of a folder, so a folder
emptied by drivesync stays, as on Drive.

What the stores give is used instead of Drive's workarounds: an upload becomes
visible only when complete (no temporary name), a copy is made by the server,
many writes may run at once (no pacing), and every object has an md5 (the
single-part ETag, GCS's md5Hash, or the ``md5chksum`` metadata drivesync and
rclone store on a multipart upload). There is no trash: ``delete`` moves items
under ``ROOT/.drivesync-trash/`` (as the local remote does), ``permanent=True``
and ``empty_trash`` delete for good. There is no quota: ``limit`` is None.
Every request goes through the one :class:`~drivesync.pacer.Pacer`; a Store
turns its client's errors into drivesync's.
"""

from __future__ import annotations

import base64
import binascii
import logging
import posixpath
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar, Union

from ..errors import ChecksumMismatch, NotFound, RemoteError, TransientError, UsageError
from ..hashing import CHUNK
from ..pacer import Pacer
from ..progress import NULL_PROGRESS, Progress
from ..types import FILE, FOLDER, Entry, Quota, clean_relpath, is_internal
from .base import Features, Remote, Target, TransferInterrupted, file_path, outgoing, target_path
from .partial import PartialDownload

log = logging.getLogger(__name__)
T = TypeVar("T")

TRASH = ".drivesync-trash"
MD5_KEY = "md5chksum"     # base64 md5 of the whole object (rclone's name for it)
MTIME_KEY = "mtime"       # seconds since the epoch, kept by copy/move (rclone's name)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Obj:
    """One stored object as a Store reports it."""

    key: str
    size: int
    md5: Optional[str]       # hex; None when the store cannot say (foreign multipart)
    modified: float          # metadata mtime when present, else the store's time
    version: str             # ETag or generation: changes when the object is rewritten


def md5_from_etag(etag: str) -> Optional[str]:
    """A single-part ETag is the hex md5; a multipart one (``md5-N``) is not."""
    etag = etag.strip('"')
    if len(etag) == 32 and "-" not in etag:
        try:
            int(etag, 16)
            return etag.lower()
        except ValueError:
            return None
    return None


def b64_to_hex(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def object_meta(md5: Optional[str], mtime: float) -> dict[str, str]:
    """The metadata drivesync stores on an object: its md5 (base64) where known and
    the modified time (rclone's names), which copies carry over."""
    meta = {MTIME_KEY: f"{mtime:.6f}"}
    if md5:
        meta[MD5_KEY] = hex_to_b64(md5)
    return meta


def hex_to_b64(md5: str) -> str:
    return base64.b64encode(bytes.fromhex(md5)).decode()


class Store(ABC):
    """The few primitives a bucket gives; raises drivesync errors only."""

    scheme = ""
    bucket = ""

    @abstractmethod
    def pages(self, prefix: str, delimiter: str, limit: Optional[int]
              ) -> Iterator[tuple[list[Obj], list[str]]]:
        """The listing below ``prefix``, page by page: (objects, sub-prefixes); with
        ``delimiter`` "" every depth, with ``limit`` one page of at most that many."""

    def list_level(self, prefix: str, *, limit: Optional[int] = None
                   ) -> tuple[list[Obj], list[str]]:
        """Objects and sub-prefixes directly below ``prefix`` (delimiter ``/``)."""
        objs: list[Obj] = []
        subs: list[str] = []
        for page_objs, page_subs in self.pages(prefix, "/", limit):
            objs += page_objs
            subs += page_subs
        return objs, subs

    def list_all(self, prefix: str) -> list[Obj]:
        """Every object below ``prefix``, any depth."""
        return [o for objs, _ in self.pages(prefix, "", None) for o in objs]

    @abstractmethod
    def head(self, key: str) -> Obj:
        """The object ``key``; NotFound if absent."""

    @abstractmethod
    def put_file(self, source: Path, key: str, *, md5: str, size: int,
                 on_bytes: Callable[[int], None]) -> Obj:
        """Upload a file (multipart/resumable above the store's threshold)."""

    @abstractmethod
    def put_marker(self, key: str) -> None:
        """A zero-byte object (a folder marker ``dir/``)."""

    @abstractmethod
    def read_range(self, obj: Obj, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of ``obj``; fewer at its end."""

    def read(self, obj: Obj, offset: int) -> Iterator[bytes]:
        """The bytes of ``obj`` from ``offset`` on, in ranged reads of 8 CHUNKs; a
        read that brings nothing before the end is a TransientError (retried)."""
        pos = offset
        while pos < obj.size:
            data = self.read_range(obj, pos, min(obj.size, pos + 8 * CHUNK))
            if not data:
                raise TransientError(f"{self.url(obj.key)}: no bytes at offset {pos}")
            yield data
            pos += len(data)

    def url(self, key: str) -> str:
        """``s3://bucket/key``: how an object is named in messages."""
        return f"{self.scheme}://{self.bucket}/{key}" if key else f"{self.scheme}://{self.bucket}"

    def no_root(self, key: str) -> None:
        """``head`` of the empty key: the bucket itself is not an object."""
        if not key:
            raise NotFound(f"{self.url('')}: the bucket root is not an object")

    @abstractmethod
    def copy(self, src: Obj, dst_key: str, *, mtime: float) -> Obj:
        """A server-side copy that keeps the md5 and records ``mtime``."""

    @abstractmethod
    def delete(self, keys: list[str]) -> None:
        """Delete objects for good; absent keys are no error."""

    def check_bucket(self) -> None:  # noqa: B027 - optional
        """NotFound/AuthError if the bucket cannot be used."""

    def abort_stale_uploads(self, prefix: str, older_than: float) -> int:
        """Abort unfinished multipart uploads below ``prefix``; how many."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional
        pass


class _Stop(Exception):
    """Carries a progress subscriber's exception out through the client library."""

    def __init__(self, exc: BaseException):
        super().__init__(str(exc))
        self.exc = exc


class ObjectRemote(Remote):
    """A bucket prefix as a Remote. ``root`` is the prefix ("" for the whole bucket)."""

    #: a bucket has no quota and no per-user write limit; copies happen in the store
    features = Features(atomic_upload=True, paced_writes=False, default_jobs=16,
                        server_side_copy=True)

    #: unfinished multipart uploads older than this are aborted by empty_trash
    stale_upload_age = 24 * 3600.0

    def __init__(self, store: Store, root: str, *, pacer: Optional[Pacer] = None):
        super().__init__()
        self.store = store
        self.prefix = clean_relpath(root)
        self.address = f"{store.scheme}://{store.bucket}" + (f"/{self.prefix}" if self.prefix
                                                             else "")
        self.pacer = pacer or Pacer()
        if self.pacer.on_retry is None:
            self.pacer.on_retry = self._count_retry
        self._interrupted = threading.Event()
        self._stats_lock = threading.Lock()

    # ---- helpers --------------------------------------------------------
    def _count_retry(self, exc: BaseException, attempt: int, delay: float) -> None:
        with self._stats_lock:
            self.stats.retries += 1

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        def once() -> T:
            with self._stats_lock:
                self.stats.requests += 1
            return fn()
        return self.pacer.call(once, what=what)

    def _label(self, rel: str) -> str:
        return f"{self.address}/{rel}" if rel else self.address

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix and rel else (rel or self.prefix)

    def _dir_prefix(self, rel: str) -> str:
        key = self._key(rel)
        return key + "/" if key else ""

    def _rel(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    def _file(self, rel: str, o: Obj) -> Entry:
        return Entry(path=rel, size=o.size, md5=o.md5, modified=o.modified, kind=FILE,
                     id=f"{o.version}:{rel}")

    @staticmethod
    def _folder(rel: str, modified: float = 0.0) -> Entry:
        return Entry(path=rel, kind=FOLDER, modified=modified, id=rel + "/")

    def _head(self, rel: str) -> Obj:
        key = self._key(rel)
        try:
            return self._call(f"head {key}", lambda: self.store.head(key))
        except NotFound:
            raise NotFound(f"{self._label(rel)}: no such file") from None

    def _is_folder(self, rel: str) -> bool:
        if not rel:
            return True
        prefix = self._dir_prefix(rel)
        objs, subs = self._call(f"list {prefix}",
                                lambda: self.store.list_level(prefix, limit=1))
        return bool(objs or subs)

    def _resolve(self, target: Target) -> tuple[str, Optional[Obj]]:
        """(rel, the object) for a file, (rel, None) for a folder; NotFound if neither."""
        rel = clean_relpath(target_path(target))
        if isinstance(target, Entry) and target.is_dir or not rel:
            if self._is_folder(rel):
                return rel, None
            raise NotFound(f"{self._label(rel)}: no such folder")
        try:
            obj = self._head(rel)
        except NotFound:
            if self._is_folder(rel):
                return rel, None
            raise NotFound(f"{self._label(rel)}: no such file or folder") from None
        if isinstance(target, Entry) and target.id and \
                target.id.split(":", 1)[0] != obj.version:
            raise NotFound(f"{self._label(rel)}: the item was replaced since it was listed")
        return rel, obj

    def _keep_parent(self, rel: str) -> None:
        """Write the marker of ``rel``'s folder, so taking its last item out keeps it."""
        parent = posixpath.dirname(rel)
        if parent:
            marker = self._dir_prefix(parent)
            self._call(f"mark {marker}", lambda: self.store.put_marker(marker))

    def _objects_below(self, rel: str) -> list[Obj]:
        prefix = self._dir_prefix(rel)
        return self._call(f"list {prefix}**", lambda: self.store.list_all(prefix))

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            self._call(f"delete {len(batch)} objects", lambda b=batch: self.store.delete(b))

    def _copy(self, obj: Obj, dst_rel: str) -> Obj:
        dst = self._key(dst_rel)
        made = self._call(f"copy {obj.key} -> {dst}",
                          lambda: self.store.copy(obj, dst, mtime=obj.modified))
        if obj.md5 and made.md5 != obj.md5 or made.size != obj.size:
            raise ChecksumMismatch(f"{self._label(dst_rel)}: copy has md5 {made.md5} and "
                                   f"{made.size} bytes, source {obj.md5} and {obj.size}")
        return made

    # ---- primitives -----------------------------------------------------
    def list(self, path: Target = "") -> list[Entry]:
        return self._list(path, internal=False)

    def list_internal(self, path: str = "") -> list[Entry]:
        return self._list(path, internal=True)

    def _list(self, path: Target, *, internal: bool) -> list[Entry]:
        rel = clean_relpath(target_path(path))
        prefix = self._dir_prefix(rel)
        objs, subs = self._call(f"list {prefix}", lambda: self.store.list_level(prefix))
        if rel and not objs and not subs:
            raise NotFound(f"{self._label(rel)}: no such folder")
        out = []
        for o in objs:
            name = o.key[len(prefix):]
            if not name or "/" in name or is_internal(name) != internal:
                continue  # the folder's own marker, or items of the other kind
            out.append(self._file(posixpath.join(rel, name) if rel else name, o))
        for sub in subs:
            name = sub[len(prefix):].rstrip("/")
            if name and is_internal(name) == internal:
                out.append(self._folder(posixpath.join(rel, name) if rel else name))
        return sorted(out, key=lambda e: e.name)

    def stat(self, path: str) -> Entry:
        rel, obj = self._resolve(path)
        return self._folder(rel) if obj is None else self._file(rel, obj)

    def mkdir(self, path: str) -> Entry:
        """Write the marker ``path/`` (a key may also name a file: stores allow both)."""
        rel = clean_relpath(path)
        if not rel and not self.prefix:
            self._call(f"bucket {self.store.bucket}", self.store.check_bucket)
            return self._folder("")
        marker = self._dir_prefix(rel)
        self._call(f"mark {marker}", lambda: self.store.put_marker(marker))
        return self._folder(rel)

    def upload(self, source: Union[str, Path], path: str, *,
               progress: Progress = NULL_PROGRESS) -> Entry:
        rel, source, st, want = outgoing(source, path)
        size = st.st_size
        key = self._key(rel)

        def on_bytes(n: int) -> None:
            if self._interrupted.is_set():
                raise _Stop(TransferInterrupted(f"{self._label(rel)}: upload interrupted"))
            try:
                progress.on_progress(bytes=n)
            except BaseException as exc:  # noqa: BLE001 - carried out and re-raised as is
                raise _Stop(exc) from exc

        try:
            obj = self._call(f"upload {key}", lambda: self.store.put_file(
                source, key, md5=want, size=size, on_bytes=on_bytes))
        except _Stop as stop:
            raise stop.exc from None
        if obj.md5 != want or obj.size != size:
            raise ChecksumMismatch(f"{self._label(rel)}: stored md5 {obj.md5} ({obj.size} "
                                   f"bytes), local {want} ({size} bytes)")
        with self._stats_lock:
            self.stats.bytes_up += size
        return self._file(rel, obj)

    def download(self, target: Target, dest: Union[str, Path], *,
                 progress: Progress = NULL_PROGRESS) -> Entry:
        if isinstance(target, Entry) and not target.is_dir and target.md5 and target.id:
            # a listed file: no HEAD first (one request a file, not two); had it been
            # rewritten since, its bytes fail the md5 check and nothing is renamed
            rel = clean_relpath(target.path)
            obj = Obj(key=self._key(rel), size=target.size, md5=target.md5,
                      modified=target.modified, version=target.id.split(":", 1)[0])
        else:
            rel, obj = self._resolve(target)
        if obj is None:
            raise RemoteError(f"{self._label(rel)}: is a folder, not a file")
        if obj.md5 is None:
            raise RemoteError(f"{self._label(rel)}: no md5 is known for this object (uploaded "
                              "in parts by another tool): cannot verify a download")
        entry = self._file(rel, obj)
        with PartialDownload(dest, size=obj.size, disk=self.disk) as part:
            done = [part.have]  # bytes on disk: a retry goes on from there

            def fetch() -> None:
                for block in self.store.read(obj, done[0]):
                    if self._interrupted.is_set():
                        raise TransferInterrupted(f"{self._label(rel)}: download interrupted")
                    part.write(block)
                    done[0] += len(block)
                    progress.on_progress(bytes=len(block))
            self._call(f"download {obj.key}", fetch)
        part.commit(obj.md5, label=self._label(rel), mtime=entry.modified)
        with self._stats_lock:
            self.stats.bytes_down += obj.size
        return entry

    def move(self, target: Target, dest_path: str) -> Entry:
        rel, obj = self._resolve(target)
        drel = clean_relpath(dest_path)
        if not rel or not drel:
            raise UsageError("move cannot take or replace the remote root")
        if drel == rel:
            return self.stat(rel)
        if self._is_folder(drel):
            raise RemoteError(f"{self._label(drel)}: a folder is in the way")
        if obj is not None:
            made = self._copy(obj, drel)
            self._delete_keys([obj.key])
            self._keep_parent(rel)
            return self._file(drel, made)
        if drel.startswith(rel + "/"):
            raise UsageError(f"cannot move {self._label(rel)} into itself")
        src_prefix, dst_prefix = self._dir_prefix(rel), self._dir_prefix(drel)
        objs = self._objects_below(rel)
        for o in objs:
            self._copy(o, self._rel(dst_prefix + o.key[len(src_prefix):]))
        self._delete_keys([o.key for o in objs])
        self._keep_parent(rel)
        return self._folder(drel)

    def copy(self, target: Target, dest_path: str) -> Entry:
        rel, obj = self._resolve(target)
        if obj is None:
            raise UsageError(f"{self._label(rel)}: copy copies files, not folders")
        drel = file_path(dest_path, verb="copy")
        made = self._copy(obj, drel)
        return self._file(drel, made)

    def delete(self, target: Target, *, permanent: bool = False) -> None:
        rel, obj = self._resolve(target)
        if not rel:
            raise UsageError("refusing to delete the remote root")
        objs = [obj] if obj is not None else self._objects_below(rel)
        if not permanent:
            stamp = f"{time.time():.6f}".replace(".", "")
            base = posixpath.join(TRASH, f"{stamp}-{rel.replace('/', '__')}")
            src_prefix = self._dir_prefix(rel)
            for o in objs:
                dst = base if obj is not None else posixpath.join(
                    base, o.key[len(src_prefix):]) + ("/" if o.key.endswith("/") else "")
                if dst.endswith("/"):
                    continue  # a folder marker: nothing to keep
                self._copy(o, dst)
        self._delete_keys([o.key for o in objs])
        self._keep_parent(rel)

    def empty_trash(self) -> None:
        objs = self._objects_below(TRASH)
        self._delete_keys([o.key for o in objs])
        aborted = self._call("abort stale uploads", lambda: self.store.abort_stale_uploads(
            self._dir_prefix(""), self.stale_upload_age))
        if aborted:
            log.info("%s: aborted %d unfinished multipart upload(s)", self.address, aborted)

    def quota(self) -> Quota:
        """No limit; usage is what lies below the root (one listing of all of it)."""
        objs = self._objects_below("")
        trash_prefix = self._dir_prefix(TRASH)
        usage = sum(o.size for o in objs)
        trash = sum(o.size for o in objs if o.key.startswith(trash_prefix))
        return Quota(limit=None, usage=usage, trash=trash)

    def set_interrupted(self, flag: bool) -> None:
        if flag:
            self._interrupted.set()
        else:
            self._interrupted.clear()

    def close(self) -> None:
        self.store.close()


def read_blocks(fh, *, block: int = CHUNK) -> Iterator[bytes]:
    """Blocks of an open binary file, closed at the end."""
    with fh:
        yield from iter(lambda: fh.read(block), b"")
