"""The Drive v3 remote, over google-api-python-client.

Every HTTP call goes through one Pacer (``.execute(num_retries=0)``; no other
retry loop), each thread gets its own httplib2 object (it is not thread-safe),
and creates carry ids from ``files.generateIds`` so a retried create can never
leave two copies. Drive file ids stay inside this module and its helpers
(dircache, drive_client, drive_upload, drive_batch, drive_media, ...) except as
the opaque ``Entry.id``.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Optional, TypeVar, Union

from ..config import Settings, resolve_settings
from ..errors import (
    AlreadyExists,
    ChecksumMismatch,
    DriveSyncError,
    NetworkDown,
    NotFound,
    RateLimited,
    RemoteError,
    TransientError,
    UsageError,
    is_retryable,
)
from ..pacer import Breaker, Pacer, RateLimiter
from ..progress import NULL_PROGRESS, Progress
from ..types import FILE, FOLDER, Entry, Quota, clean_relpath, is_internal
from .base import (
    Features,
    Remote,
    Target,
    TransferInterrupted,
    file_path,
    is_read_error,
    outgoing,
    target_path,
)
from .dircache import DirCache, LeafIsFile
from .drive_batch import BATCH_MAX, delete_batch
from .drive_client import DriveClient
from .drive_errors import classify
from .drive_media import MediaStream
from .drive_space import DriveSpace
from .drive_support import (
    IdPool,
    StopClock,
    drive_names,
    parse_rfc3339,
    pick,
    q_literal,
    rfc3339,
    shown_name,
)
from .drive_upload import send_file
from .partial import BLOCK, PartialDownload

log = logging.getLogger(__name__)
T = TypeVar("T")

FOLDER_MIME = "application/vnd.google-apps.folder"
FIELDS = "id,name,mimeType,size,md5Checksum,modifiedTime,createdTime,parents,trashed"
LIST_FIELDS = f"nextPageToken,files({FIELDS})"


class DriveRemote(Remote):
    """A folder under My Drive (``root`` like "space_Colab/data"), or in a shared drive
    (``root`` like "@TeamData/space_Colab/data": a leading ``@NAME`` segment names the
    shared drive, found by name with drives.list), as a Remote."""

    def __init__(self, root: str, *, settings: Optional[Settings] = None,
                 credentials: Any = None):
        super().__init__()
        self.settings = resolve_settings(settings or Settings())  # + DRIVESYNC_TOKEN etc.
        self.root = clean_relpath(root)
        self.address = f"drive:{self.root}"
        # "@NAME/rest": the shared drive NAME, and the path inside it
        head, _, rest = self.root.partition("/")
        self.shared_drive: Optional[str] = head[1:] if head.startswith("@") else None
        self._top = rest if self.shared_drive is not None else self.root
        if self.shared_drive == "":
            raise UsageError(f"{self.address}: '@' must be followed by a shared drive's name "
                             "(drive:@TeamData/folder)")
        self._space = DriveSpace(self.shared_drive, run=self._run, address=self.address)
        # files.copy duplicates the bytes in Drive; deletes go in batches; a shared
        # drive has no quota of its own (see DriveSpace.quota)
        self.features = Features(server_side_copy=True, batch_delete=True,
                                 quota=self.shared_drive is None)
        self.endpoint = self.settings.api_endpoint or "https://www.googleapis.com/"
        self._lock = threading.Lock()          # stats counters, the client's lists
        self._client = DriveClient(self.settings, endpoint=self.endpoint,
                                   credentials=credentials, stats=self.stats, lock=self._lock)
        self._streams: set[MediaStream] = set()  # downloads in flight (cut on Ctrl-C)
        self._dirs = DirCache(base=self._space.base_id, find_leaf=self._find_leaf,
                              make_leaf=self._make_folder, where=self._where)
        self._ids = IdPool(self._generate_ids)
        self._interrupted = threading.Event()
        self._clock = StopClock(self._interrupted)
        self._writes = RateLimiter(self.settings.write_rate, burst=3, clock=self._clock)
        #: one per remote, i.e. per command: every worker stops when the network is gone
        self.breaker = Breaker(self.settings.outage_window, clock=self._clock)
        self._pacer = Pacer(max_tries=self.settings.max_tries, base=self.settings.backoff_base,
                            cap=self.settings.backoff_cap, classify=is_retryable,
                            on_retry=self._on_retry, clock=self._clock, breaker=self.breaker)
        self._status: Optional[Callable[[str], None]] = None
        self._retrying = False
        chunk = max(256 * 1024, self.settings.chunk_size)
        self._chunk = chunk - chunk % (256 * 1024)

    # ---- the client, one per thread -----------------------------------------
    def _service(self) -> Any:
        return self._client.service()

    def close(self) -> None:
        self._client.close()

    # ---- one HTTP call, paced ---------------------------------------------
    def set_status_listener(self, listener: Optional[Callable[[str], None]]) -> None:
        self._status = listener

    def _on_retry(self, exc: BaseException, attempt: int, delay: float) -> None:
        with self._lock:
            self.stats.retries += 1
            self._retrying = True
        text = f"retrying: {exc}; next try in {delay:.0f}s"
        log.info("%s", text)
        if self._status is not None:
            self._status(text)

    def _settled(self) -> None:
        """A request succeeded: clear the retry note on the progress line."""
        if self._retrying:
            with self._lock:
                self._retrying = False
            if self._status is not None:
                self._status("")

    def _call(self, fn: Callable[[], T], *, what: str) -> T:
        """Run ``fn`` through the pacer with every error classified into ours."""
        def attempt() -> T:
            if self._interrupted.is_set():
                raise TransferInterrupted(f"{what}: interrupted")
            try:
                return fn()
            except Exception as exc:
                err = classify(exc, endpoint=self.endpoint, what=what)
                if err is None or err is exc:
                    raise
                raise err from exc

        try:
            result = self._pacer.call(attempt, what=what)
        except NetworkDown:
            raise
        except (RateLimited, TransientError) as exc:
            raise type(exc)(f"{exc} (gave up after {self._pacer.max_tries} tries)") from exc
        self._settled()
        return result

    def _run(self, build: Callable[[Any], Any], *, what: str) -> Any:
        """Build a request on this thread's service and execute it once per attempt."""
        return self._call(lambda: build(self._service()).execute(num_retries=0), what=what)

    def _generate_ids(self, count: int) -> list[str]:
        res = self._run(lambda s: s.files().generateIds(count=count, space="drive"),
                        what="files.generateIds")
        return list(res.get("ids", []))

    # ---- paths and ids --------------------------------------------------------
    def _parts(self, path: str) -> tuple[str, ...]:
        return tuple(p for p in f"{self._top}/{clean_relpath(path)}".split("/") if p)

    def _where(self, parts: tuple[str, ...]) -> str:
        """How folder ``parts`` (inside My Drive or the shared drive) is named in messages."""
        base = f"@{self.shared_drive}/" if self.shared_drive is not None else ""
        return "drive:" + base + "/".join(parts)

    def _rel(self, parts: tuple[str, ...]) -> str:
        return "/".join(parts[len(self._parts("")):])

    def _children(self, parent_id: str, *, name: Optional[str] = None) -> list[dict]:
        """Every untrashed child of a folder (or those shown as ``name``), all pages."""
        q = f"{q_literal(parent_id)} in parents and trashed = false"
        if name is not None:
            q += " and (" + " or ".join(f"name = {q_literal(n)}" for n in drive_names(name)) + ")"
        out: list[dict] = []
        token: Optional[str] = None
        while True:
            page = self._run(lambda s, t=token: s.files().list(
                q=q, pageSize=1000, fields=LIST_FIELDS, pageToken=t, **self._space.list_kw()),
                what="files.list")
            for meta in page.get("files", []):
                meta["name"] = shown_name(meta.get("name") or "")
                if name is None or meta["name"] == name:
                    out.append(meta)
            token = page.get("nextPageToken")
            if not token:
                return out

    def _find_leaf(self, parent: str, parts: tuple[str, ...]) -> Optional[str]:
        """The dircache's question: folder ``parts[-1]`` in ``parent`` (the oldest of
        same-named ones), None when nothing has the name, LeafIsFile when files do."""
        items = self._children(parent, name=parts[-1])
        folders = [f for f in items if f.get("mimeType") == FOLDER_MIME]
        if not folders:
            if items:
                raise LeafIsFile()
            return None
        return pick(folders, what=f"{self._where(parts)}")["id"]

    def _make_folder(self, parent: str, parts: tuple[str, ...]) -> str:
        """The dircache's make: files.create, then :meth:`_adopt_twin`."""
        meta = self._create({"name": parts[-1], "parents": [parent],
                             "mimeType": FOLDER_MIME}, what=f"{self._where(parts)}")
        log.info("created folder drive:%s", "/".join(parts))
        return self._adopt_twin(parent, parts, meta["id"])

    def _adopt_twin(self, parent: str, parts: tuple[str, ...], made: str) -> str:
        """Another process may have created the same folder at the same moment (two
        launchers, two pushes): look again and use the oldest, as every other
        lookup will, removing ours while it is still empty. Everyone agrees on
        the oldest (createdTime, then id), so no two writers end up in twins."""
        chosen = pick([f for f in self._children(parent, name=parts[-1])
                       if f.get("mimeType") == FOLDER_MIME] or [{"id": made}],
                      what=f"{self._where(parts)}")["id"]
        if chosen != made:
            log.info("drive:%s was created twice at once; using the older one",
                     "/".join(parts))
            self._discard(made, what=f"removal of a twin of drive:{'/'.join(parts)}")
        return chosen

    def _create(self, body: dict, *, what: str, media: Any = None) -> dict:
        """files.create with a pre-generated id; a 409 means an earlier try landed."""
        body = dict(body, id=self._ids.take())
        self._writes.acquire()
        try:
            return self._run(lambda s: s.files().create(body=body, fields=FIELDS,
                                                        media_body=media,
                                                        supportsAllDrives=True), what=what)
        except AlreadyExists:
            return self._landed(body, what=what)

    def _landed(self, body: dict, *, what: str) -> dict:
        """The item a retried create collided with, if it is really ours."""
        meta = self._get(body["id"], what=what)
        if meta.get("name") != body["name"] or body["parents"][0] not in meta.get("parents", []):
            raise RemoteError(f"{what}: id {body['id']} is taken by another item")
        log.debug("%s: an earlier attempt of the create landed", what)
        return meta

    def _get(self, file_id: str, *, what: str) -> dict:
        return self._run(lambda s: s.files().get(fileId=file_id, fields=FIELDS,
                                                 supportsAllDrives=True), what=what)

    def _entry(self, meta: dict, rel: str) -> Entry:
        if meta.get("mimeType") == FOLDER_MIME:
            return Entry(path=rel, kind=FOLDER, id=meta["id"],
                         modified=parse_rfc3339(meta.get("modifiedTime")))
        return Entry(path=rel, size=int(meta.get("size") or 0), md5=meta.get("md5Checksum"),
                     modified=parse_rfc3339(meta.get("modifiedTime")), kind=FILE,
                     id=meta["id"])

    def _resolve(self, target: Target) -> Entry:
        """An Entry with an id; an Entry that has one is trusted (no request)."""
        if isinstance(target, Entry) and target.id:
            return target
        return self.stat(target_path(target))

    # ---- listing ----------------------------------------------------------------
    def _list_id(self, folder_id: str, rel: str, parts: tuple[str, ...], *,
                 internal: bool = False) -> list[Entry]:
        items = self._children(folder_id)
        folders: dict[str, list[dict]] = {}
        out = []
        for meta in items:
            name = meta["name"]
            if is_internal(name) != internal:
                continue
            if meta.get("mimeType") == FOLDER_MIME:
                folders.setdefault(name, []).append(meta)
            out.append(self._entry(meta, f"{rel}/{name}" if rel else name))
        for name, same in folders.items():
            first = min(same, key=lambda f: (f.get("createdTime") or "", f["id"]))
            self._dirs.offer(parts + (name,), first["id"])
        return sorted(out, key=lambda e: (e.path, e.id))

    def list(self, path: Target = "") -> list[Entry]:
        rel = clean_relpath(target_path(path))
        parts = self._parts(rel)
        if isinstance(path, Entry) and path.id and path.is_dir:
            return self._list_id(path.id, rel, parts)
        return self._list_id(self._dirs.existing(parts), rel, parts)

    def list_internal(self, path: str = "") -> list[Entry]:
        rel = clean_relpath(path)
        parts = self._parts(rel)
        return self._list_id(self._dirs.existing(parts), rel, parts, internal=True)

    def walk(self, path: str = "", *,
             unreadable: Optional[list[tuple[str, DriveSyncError]]] = None) -> Iterator[Entry]:
        """Breadth-first, parents first; one files.list per folder (per 1000 items).

        A folder is listed whole or not at all: one page that keeps failing fails
        the folder (see :meth:`Remote.walk` for ``unreadable``).
        """
        rel = clean_relpath(path)
        queue = [(rel, self._dirs.existing(self._parts(rel)))]
        while queue:
            folder, folder_id = queue.pop(0)
            try:
                children = self._list_id(folder_id, folder, self._parts(folder))
            except DriveSyncError as exc:
                if folder == rel or unreadable is None or not is_read_error(exc):
                    raise
                unreadable.append((folder, exc))
                continue
            for entry in children:
                yield entry
                if entry.is_dir:
                    queue.append((entry.path, entry.id))

    def stat(self, path: str) -> Entry:
        rel = clean_relpath(path)
        parts = self._parts(rel)
        if not rel:
            return Entry(path="", kind=FOLDER, id=self._dirs.existing(parts))
        self._space.base_id()
        try:
            parent = self._dirs.find(parts[:-1])
        except NotFound:
            raise NotFound(f"{self.address}/{rel}: no such file or folder") from None
        items = self._children(parent, name=parts[-1])
        if not items:
            raise NotFound(f"{self.address}/{rel}: no such file or folder")
        return self._entry(pick(items, what=f"{self.address}/{rel}"), rel)

    def mkdir(self, path: str) -> Entry:
        rel = clean_relpath(path)
        return Entry(path=rel, kind=FOLDER, id=self._dirs.find(self._parts(rel), create=True))

    def set_write_rate(self, rate: Optional[float]) -> None:
        """Every create (files and folders) of this remote waits on one token bucket."""
        self._writes = RateLimiter(rate, burst=3, clock=self._clock)

    def set_interrupted(self, flag: bool) -> None:
        """Ctrl-C: requests in flight are cut (an unfinished upload never becomes a
        Drive file; a download keeps its finished chunks for the next run) and no
        new request starts. Clearing drops the cut connections."""
        if flag:
            self._interrupted.set()
            self._client.cut()
            with self._lock:
                streams = list(self._streams)
            for stream in streams:
                stream.abort()
        elif self._interrupted.is_set():
            self._interrupted.clear()
            self.close()

    # ---- transfers ----------------------------------------------------------------
    def upload(self, source: Union[str, Path], path: str, *,
               progress: Progress = NULL_PROGRESS) -> Entry:
        rel, source, st, want = outgoing(source, path)
        parts = self._parts(rel)
        parent = self._dirs.find(parts[:-1], create=True)
        body = {"id": self._ids.take(), "name": parts[-1], "parents": [parent],
                "modifiedTime": rfc3339(st.st_mtime)}
        mimetype = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
        what = f"upload of {self.address}/{rel}"
        self._writes.acquire()
        try:
            meta = send_file(self._service, self._call, source, body, mimetype=mimetype,
                             fields=FIELDS, size=st.st_size,
                             threshold=self.settings.resumable_threshold, chunk=self._chunk,
                             what=what, progress=progress, on_restart=self._count_retry)
        except AlreadyExists:
            meta = self._landed(body, what=what)
        if meta.get("md5Checksum") != want or int(meta.get("size") or 0) != st.st_size:
            self._discard(meta["id"], what=what)
            now = os.stat(source)
            if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise ChecksumMismatch(f"{what}: {source} changed while it was uploaded; the "
                                       "mixed copy was removed (re-run once it is written)")
            raise ChecksumMismatch(f"{what}: Drive has md5 {meta.get('md5Checksum')}, "
                                   f"the local file {want}; the bad copy was removed")
        with self._lock:
            self.stats.bytes_up += st.st_size
        return self._entry(meta, rel)

    def _count_retry(self) -> None:
        with self._lock:
            self.stats.retries += 1

    def _discard(self, file_id: str, *, what: str) -> None:
        try:
            self._run(lambda s: s.files().delete(fileId=file_id, supportsAllDrives=True),
                      what=what)
        except DriveSyncError as exc:
            log.warning("%s: could not remove the bad copy: %s", what, exc)

    def download(self, target: Target, dest: Union[str, Path], *,
                 progress: Progress = NULL_PROGRESS) -> Entry:
        entry, label = self._downloadable(target)
        part = PartialDownload(dest, size=entry.size, disk=self.disk)
        with part, self._media(entry, offset=part.have, label=label) as stream:
            # this thread receives; the partial's writer thread hashes and writes
            while True:
                data = stream.read(BLOCK)
                if not data:
                    break
                part.write(data)
                progress.on_progress(bytes=len(data))
                with self._lock:
                    self.stats.bytes_down += len(data)
        part.commit(entry.md5, label=label, mtime=entry.modified)
        return entry

    def open_read(self, target: Target) -> tuple[Entry, BinaryIO]:
        entry, label = self._downloadable(target)
        stream = self._media(entry, offset=0, label=label)
        return entry, _CountingReader(stream, self)  # type: ignore[return-value]

    def _downloadable(self, target: Target) -> tuple[Entry, str]:
        entry = self._resolve(target)
        if entry.md5 is None and not entry.is_dir:
            entry = self._entry(self._get(entry.id, what=f"{self.address}/{entry.path}"),
                                entry.path)
        label = f"{self.address}/{entry.path}"
        if entry.is_dir:
            raise RemoteError(f"{label}: is a folder, not a file")
        if entry.md5 is None:
            raise RemoteError(f"{label}: a Google Docs file or shortcut has no bytes "
                              "to download")
        return entry, label

    def _media(self, entry: Entry, *, offset: int, label: str) -> MediaStream:
        """One streamed GET of the file from ``offset`` (a Range only when resuming)."""
        url = self._client.files().get_media(fileId=entry.id, supportsAllDrives=True).uri
        stream = MediaStream(url=url, size=entry.size, offset=offset,
                             what=f"download of {label}", session=self._client.session,
                             call=self._call, on_request=self._count_request,
                             on_close=self._forget_stream)
        with self._lock:
            self._streams.add(stream)
        return stream

    def _forget_stream(self, stream: MediaStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def _count_request(self) -> None:
        with self._lock:
            self.stats.requests += 1

    # ---- changes ------------------------------------------------------------------
    def move(self, target: Target, dest_path: str) -> Entry:
        src = self._resolve(target)
        drel = clean_relpath(dest_path)
        if not drel or not src.path:
            raise UsageError("move needs a source and a destination below the remote root")
        parts = self._parts(drel)
        what = f"move of {self.address}/{src.path} to {drel}"
        parent = self._dirs.find(parts[:-1], create=True)
        in_way = [f for f in self._children(parent, name=parts[-1]) if f["id"] != src.id]
        if any(f.get("mimeType") == FOLDER_MIME for f in in_way):
            raise RemoteError(f"{self.address}/{drel}: a folder is in the way")
        old_parents = self._get(src.id, what=what).get("parents", [])
        extra: dict[str, str] = {}
        if parent not in old_parents:
            extra = {"addParents": parent, "removeParents": ",".join(old_parents)}
        meta = self._run(lambda s: s.files().update(fileId=src.id, body={"name": parts[-1]},
                                                    fields=FIELDS, supportsAllDrives=True,
                                                    **extra), what=what)
        if src.is_dir and src.path:
            self._dirs.flush(self._parts(src.path))
        for old in in_way:  # the move replaced these files, as a local rename would
            self._delete_id(old["id"], permanent=True, what=what)
        return self._entry(meta, drel)

    def copy(self, target: Target, dest_path: str) -> Entry:
        src = self._resolve(target)
        if src.is_dir:
            raise UsageError(f"{self.address}/{src.path}: copy copies files, not folders")
        drel = file_path(dest_path, verb="copy")
        parts = self._parts(drel)
        what = f"copy of {self.address}/{src.path} to {drel}"
        parent = self._dirs.find(parts[:-1], create=True)
        body = {"id": self._ids.take(), "name": parts[-1], "parents": [parent]}
        if src.modified:  # as `cp -p`: the bytes' time, not the copy's (latest orders by it)
            body["modifiedTime"] = rfc3339(src.modified)
        self._writes.acquire()  # a copy is a new file: it counts against the write rate
        try:
            meta = self._run(lambda s: s.files().copy(fileId=src.id, body=body, fields=FIELDS,
                                                      supportsAllDrives=True), what=what)
        except AlreadyExists:
            meta = self._landed(body, what=what)
        if src.md5 and meta.get("md5Checksum") != src.md5:
            self._discard(meta["id"], what=what)
            raise ChecksumMismatch(f"{what}: the copy has md5 {meta.get('md5Checksum')}, the "
                                   f"source {src.md5}; the bad copy was removed")
        return self._entry(meta, drel)

    def delete(self, target: Target, *, permanent: bool = False) -> None:
        if not clean_relpath(target_path(target)):
            raise UsageError("refusing to delete the remote root")
        entry = self._resolve(target)
        self._delete_id(entry.id, permanent=permanent,
                        what=f"delete of {self.address}/{entry.path}")
        if entry.is_dir:
            self._dirs.flush(self._parts(entry.path))

    def _delete_id(self, file_id: str, *, permanent: bool, what: str) -> None:
        tries = 0

        def attempt() -> Any:
            nonlocal tries
            tries += 1
            service = self._service()
            if permanent:
                return service.files().delete(fileId=file_id,
                                              supportsAllDrives=True).execute(num_retries=0)
            return service.files().update(fileId=file_id, body={"trashed": True}, fields="id",
                                          supportsAllDrives=True).execute(num_retries=0)
        try:
            self._call(attempt, what=what)
        except NotFound:
            if tries <= 1:
                raise  # absent before we started
            # A retried delete answered 404: the earlier attempt had landed.

    def delete_many(self, targets: Iterable[Target], *,
                    permanent: bool = False) -> dict[str, DriveSyncError]:
        """Deletes in batches of up to 100 calls; only failed inner calls are retried."""
        failed: dict[str, DriveSyncError] = {}
        entries: list[Entry] = []
        for t in targets:
            try:
                if not clean_relpath(target_path(t)):
                    raise UsageError("refusing to delete the remote root")
                entries.append(self._resolve(t))
            except DriveSyncError as exc:
                failed[target_path(t)] = exc
        for i in range(0, len(entries), BATCH_MAX):
            failed.update(delete_batch(self._service, self._call, entries[i:i + BATCH_MAX],
                                       permanent=permanent, endpoint=self.endpoint))
        for e in entries:
            if e.is_dir:
                self._dirs.flush(self._parts(e.path))
        return failed

    def empty_trash(self) -> None:
        self._space.empty_trash()

    def quota(self) -> Quota:
        return self._space.quota()

    def account(self) -> dict:
        """Who the credentials belong to (``auth status``): {"email", "name"}."""
        about = self._run(lambda s: s.about().get(fields="user(emailAddress,displayName)"),
                          what="about.get")
        user = about.get("user", {})
        return {"email": user.get("emailAddress"), "name": user.get("displayName")}


class _CountingReader:
    """``open_read``'s file object: counts bytes down and closes the stream."""

    def __init__(self, stream: MediaStream, remote: DriveRemote):
        self._stream = stream
        self._remote = remote

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(BLOCK if n is None or n < 0 else n)
        with self._remote._lock:
            self._remote.stats.bytes_down += len(data)
        return data

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _CountingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
