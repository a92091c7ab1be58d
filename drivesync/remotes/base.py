"""The one interface every transport implements (Drive API, local folder).

Paths are POSIX strings relative to the remote's root; "" is the root.
Implementations write a few primitives; walk/exists/delete_many/replace come
for free and may be overridden for speed (the Drive remote batches deletes).
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple, Optional, Union

from ..errors import (
    AuthError,
    DriveSyncError,
    NetworkDown,
    NotFound,
    QuotaExceeded,
    RemoteError,
    UsageError,
)
from ..hashing import md5_file
from ..localdisk import DISK, LocalDisk
from ..progress import NULL_PROGRESS, Progress
from ..types import Entry, Quota, Stats, clean_relpath

log = logging.getLogger(__name__)

Target = Union[str, Entry]


@dataclass(frozen=True)
class Features:
    """Optional abilities of a transport (as rclone's fs/features.go), so a workflow
    asks the remote what it can do instead of reading it from the address. The
    defaults are the plain case; each transport states what it does differently."""

    #: a finished upload becomes visible at once and whole (object stores): writers
    #: need no temporary name to hide a half-written file
    atomic_upload: bool = False
    #: creates must be paced (Drive: ~3 new files/s per user); False: no write limit
    paced_writes: bool = True
    #: parallel transfers when the user chose none (None: ``Settings.jobs``)
    default_jobs: Optional[int] = None
    #: :meth:`Remote.copy` happens on the remote side (no byte read back or sent);
    #: where it does not (a local folder, maybe a FUSE mount), a local file is the
    #: cheaper source for a second copy of the same bytes
    server_side_copy: bool = False
    #: :meth:`Remote.delete_many` sends many deletes per request (Drive: batches of
    #: 100), not one request per item
    batch_delete: bool = False
    #: :meth:`Remote.quota` reports a storage limit, so free space (``--min-free``)
    #: is known; False: ``limit`` is None (a bucket, a shared drive)
    quota: bool = False
    #: files other programs write are listed while they are being written, with a
    #: modified time that still moves (a local folder, the Colab Drive mount): a
    #: young file may be incomplete. False: a file appears only once whole (APIs)
    live_writes: bool = False


class Remote(ABC):
    """A tree of folders and files that drivesync can read and write."""

    #: human-readable address, e.g. "drive:space_Colab/data" or "local:/mnt/x"
    address: str = ""

    #: the local disk downloads write to: free space and how files are opened
    #: (a test stands in a full disk here)
    disk: LocalDisk = DISK

    #: what else this transport can do (see :class:`Features`)
    features = Features()

    def __init__(self) -> None:
        self.stats = Stats()

    # ---- primitives -----------------------------------------------------
    @abstractmethod
    def list(self, path: Target = "") -> list[Entry]:
        """Direct children of folder ``path`` (same-named duplicates included).

        ``path`` may be a folder Entry: its id reaches that very folder, also
        when a path would reach an older same-named one (Drive allows them).
        Raises NotFound when ``path`` does not exist or is not a folder.
        Hides drivesync's own temporary files (``types.TEMP_PREFIX``).
        """

    @abstractmethod
    def stat(self, path: str) -> Entry:
        """The item at ``path``; NotFound if absent. Among same-named duplicates
        the choice is deterministic (oldest, then smallest id) and logged."""

    @abstractmethod
    def mkdir(self, path: str) -> Entry:
        """Create folder ``path`` and its parents; idempotent."""

    @abstractmethod
    def upload(self, source: Union[str, Path], path: str, *,
               progress: Progress = NULL_PROGRESS) -> Entry:
        """Stream local file ``source`` into a NEW file at ``path`` and return it.

        Parents are created. Existing items named ``path`` are left alone (use
        :meth:`replace`). The result's md5 is verified against the local bytes;
        a retried create never leaves two copies.
        """

    @abstractmethod
    def download(self, target: Target, dest: Union[str, Path], *,
                 progress: Progress = NULL_PROGRESS) -> Entry:
        """Stream a remote file into local ``dest``.

        Bytes go to a temporary sibling of ``dest`` (resumed if one is left from
        an interrupted run), are verified against the remote md5, then renamed
        onto ``dest`` atomically, with the remote's modified time. A half-written
        ``dest`` never exists; a full disk (ENOSPC) leaves no partial behind.
        """

    @abstractmethod
    def move(self, target: Target, dest_path: str) -> Entry:
        """Rename and/or move one item to ``dest_path`` (parents created)."""

    @abstractmethod
    def copy(self, target: Target, dest_path: str) -> Entry:
        """A new file at ``dest_path`` (parents created) with the bytes of file ``target``.

        On Drive no byte travels (``files.copy``): mirroring a ``best.pt`` that
        holds the same bytes as the ``last.pt`` just uploaded costs one request,
        not a second upload. The copy is verified by md5, keeps the source's
        modified time (as ``cp -p``), and a retry never doubles it.
        """

    @abstractmethod
    def delete(self, target: Target, *, permanent: bool = False) -> None:
        """Trash (default) or permanently delete a file or a whole folder."""

    @abstractmethod
    def empty_trash(self) -> None:
        """Delete everything in the trash for good."""

    @abstractmethod
    def quota(self) -> Quota:
        """Storage limit, usage and the part of usage held by the trash."""

    def list_internal(self, path: str = "") -> list[Entry]:
        """drivesync's own items directly in folder ``path``, the ones :meth:`list`
        hides (names starting ``.drivesync``: lease files, in-flight temp files).

        Leases (:mod:`..checkpoints.lease`) are found this way. NotFound when
        ``path`` is not a folder. Every remote must provide it.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list drivesync's own files")

    # ---- derived --------------------------------------------------------
    def open_read(self, target: Target) -> tuple[Entry, BinaryIO]:
        """The file ``target`` and a reader of its bytes from the start (``read(n)``,
        ``close``): for consumers that stream, such as unpacking a tar as it arrives.

        The reader does NOT verify the md5: the caller hashes what it reads. This
        fallback downloads to an anonymous temporary file first; transports that
        can stream (Drive, a local folder) override it.
        """
        with tempfile.TemporaryDirectory(prefix=".drivesync-") as tmp:
            dest = Path(tmp) / "f"
            entry = self.download(target, dest)
            reader = open(dest, "rb")  # noqa: SIM115 - handed to the caller, unlinked below
        return entry, reader  # the name is gone; the open file lives until closed

    def walk(self, path: str = "", *,
             unreadable: Optional[list[tuple[str, DriveSyncError]]] = None) -> Iterator[Entry]:
        """Every folder and file below ``path`` (breadth-first, parents first).

        A folder below ``path`` whose listing fails raises, or, when a list is
        given as ``unreadable``, is recorded there as (path, error) and skipped:
        the caller must then treat it as unknown, never as empty.
        """
        queue = [path]
        while queue:
            folder = queue.pop(0)
            try:
                children = self.list(folder)
            except NotFound:
                if folder == path:
                    raise
                continue  # removed since its parent was listed: nothing below it now
            except DriveSyncError as exc:
                if folder == path or unreadable is None or not is_read_error(exc):
                    raise
                unreadable.append((folder, exc))
                continue
            for entry in sorted(children, key=lambda e: (e.path, e.id)):
                yield entry
                if entry.is_dir:
                    queue.append(entry.path)

    def exists(self, path: str) -> bool:
        """True/False for present/absent; every other error propagates."""
        try:
            self.stat(path)
            return True
        except NotFound:
            return False

    def delete_many(self, targets: Iterable[Target], *,
                    permanent: bool = False) -> dict[str, DriveSyncError]:
        """Delete several items; returns {path: error} for the ones that failed."""
        failed: dict[str, DriveSyncError] = {}
        for t in targets:
            try:
                self.delete(t, permanent=permanent)
            except DriveSyncError as exc:
                failed[t.path if isinstance(t, Entry) else t] = exc
        return failed

    def replace(self, source: Union[str, Path], path: str, *,
                progress: Progress = NULL_PROGRESS, permanent: bool = True) -> Entry:
        """Upload ``source`` as a new file at ``path``, then remove the old ones.

        Uploading a new file (instead of updating content in place) keeps Drive
        from storing old revisions that count against the quota. Between the two
        steps both copies exist, so the path is never without a complete file.
        """
        try:
            old = [e for e in self.list(posixpath.dirname(path))
                   if e.name == posixpath.basename(path) and not e.is_dir]
        except NotFound:
            old = []
        new = self.upload(source, path, progress=progress)
        for e in old:
            if e.id != new.id:
                try:
                    self.delete(e, permanent=permanent)
                except NotFound:
                    pass  # already gone: a local upload renames over the old file
        return new

    def set_write_rate(self, rate: Optional[float]) -> None:  # noqa: B027 - optional hook
        """Pace creates of new items to ``rate`` per second (Drive allows ~3 per
        user). Transports without such a limit (a local folder) ignore it."""

    def set_status_listener(self, listener: Optional[Callable[[str], None]]  # noqa: B027
                            ) -> None:
        """Tell ``listener`` what is going wrong while it is retried ("files.list
        failed: ...; next try in 4s"), and "" once a request succeeds again. The
        progress subscriber's ``on_status`` is the usual listener. Transports
        that never retry ignore it."""

    def set_interrupted(self, flag: bool) -> None:  # noqa: B027 - optional hook
        """While ``flag`` is set, transfers in other threads stop at once by raising
        :class:`TransferInterrupted` (Ctrl-C). A transfer that stops never leaves
        a partial file at its destination. Cleared again once they stopped."""

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections; the default has nothing to release."""

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TransferInterrupted(KeyboardInterrupt):
    """Raised in a worker thread whose transfer was stopped by Ctrl-C."""


def is_read_error(exc: BaseException) -> bool:
    """A failure to read one folder or file (the rest of the run may go on), as
    opposed to one that no further request can avoid (auth, quota, network down)."""
    return (isinstance(exc, RemoteError) and not isinstance(exc, NotFound)
            and not isinstance(exc, (AuthError, QuotaExceeded, NetworkDown)))


def target_path(target: Target) -> str:
    return target.path if isinstance(target, Entry) else target


def file_path(path: str, *, verb: str) -> str:
    """``path`` cleaned, where only a file may go: never the remote root."""
    rel = clean_relpath(path)
    if not rel:
        raise UsageError(f"{verb} needs a file path, not the remote root")
    return rel


class Outgoing(NamedTuple):
    """An upload's start, the same on every remote: where it goes (a file path) and
    the local file as it is now (stat, md5), read before a byte is sent; the md5 is
    what the stored copy is checked against."""

    rel: str
    source: Path
    stat: os.stat_result
    md5: str


def outgoing(source: Union[str, Path], path: str) -> Outgoing:
    rel = file_path(path, verb="upload")
    source = Path(source)
    st = os.stat(source)
    return Outgoing(rel, source, st, md5_file(source))
