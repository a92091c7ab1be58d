"""pull: a Remote -> a local folder; the mirror of push, with unpacking of shards.

Names from Drive are untrusted: each becomes a local name through
names.safe_part, same-named items get distinct local names, and every write is
checked to stay inside the target folder without following links out of it.
A packed shard (``000.tar`` + ``000.tar.json``) becomes the folder ``000/``.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

from ..errors import DatasetError, DiskFull, DriveSyncError, NotFound, Stopped, UsageError
from ..hashing import HashCache, cache_path
from ..localdisk import LocalDisk
from ..outcome import Problem
from ..progress import NULL_PROGRESS, Progress, human_bytes
from ..readahead import ReadAhead
from ..remotes.base import Remote
from ..remotes.partial import BLOCK
from ..types import Entry, is_internal, temp_name
from .apply import apply_plan
from .names import assign_names, ensure_dir, inside, is_shortened, raw_name, safe_part
from .options import SyncOptions
from .pack import FORMAT, MANIFEST_SUFFIX, TAR_SUFFIX, Manifest, parse_manifest, unpack_stream
from .plan import (
    DOWNLOAD,
    MKDIR,
    NATIVE,
    SKIP,
    UNPACK,
    Action,
    Plan,
    PullItem,
    is_native,
    plan_pull,
)
from .result import SyncResult

log = logging.getLogger(__name__)


def pull(remote: Remote, local_dir: Union[str, Path], *, path: str = "",
         options: Optional[SyncOptions] = None, progress: Progress = NULL_PROGRESS,
         hash_cache: Optional[HashCache] = None, **overrides: Any) -> SyncResult:
    """Make ``local_dir`` hold the files of ``remote:path``; see README, "push, pull, dedupe".

    ``options`` (a :class:`SyncOptions`; its fields may also be given as keywords)
    say how. Files already identical locally are skipped; packed shards are
    unpacked (``unpack=False`` keeps the tars). Raises NotFound when ``path`` is
    absent, DiskFull (nothing downloaded) when the plan cannot fit on the disk.
    """
    opts = SyncOptions.of(options, **overrides)
    t0 = time.monotonic()
    req0, retry0 = remote.stats.requests, remote.stats.retries
    root = os.path.abspath(local_dir)
    own_cache = hash_cache is None
    cache = hash_cache if hash_cache is not None else HashCache(cache_path(opts.state_path()))
    if os.path.lexists(root) and not os.path.isdir(root):
        raise UsageError(f"{root}: exists and is not a folder; pull writes into a folder")
    try:
        plan, warnings = _make_plan(remote, path.strip("/"), root, unpack=opts.unpack,
                                    cache=cache)
        short = _space_shortfall(plan, root, remote.disk)
        result = SyncResult(plan=plan.summary(), dry_run=opts.dry_run,
                            problems=list(plan.problems), warnings=warnings,
                            actions=[a for a in plan.actions if a.kind != SKIP])
        runner = _PullRunner(remote=remote, root=root, progress=progress, cache=cache)
        report = apply_plan(plan, runner.run, remote=remote, jobs=opts.jobs,
                            dry_run=opts.dry_run, progress=progress, desc="pull",
                            blockers=[(root, DiskFull(short))] if short else [],
                            prepare=lambda: os.makedirs(root, exist_ok=True))
        cache.flush()
        result.warnings += report.warnings
        result.downloaded = report.done[DOWNLOAD]
        result.unpacked = report.done[UNPACK]
        result.skipped = report.done[SKIP]
        result.failed = report.failed
        result.bytes = report.bytes
        result.left_files, result.left_bytes = report.left_files, report.left_bytes
        result.problems += report.problems + runner.member_problems
        result.requests = remote.stats.requests - req0
        result.retries = remote.stats.retries - retry0
        result.seconds = time.monotonic() - t0
        if report.fatal is not None:
            raise Stopped.of(report.fatal, result)
        return result
    finally:
        if own_cache:
            cache.close()


def _space_shortfall(plan: Plan, root: str, disk: LocalDisk) -> Optional[str]:
    """Why the planned downloads cannot fit on the disk of ``root``; None if they can.

    Bytes already in partial files left by an interrupted run are not counted
    again; an unpacked shard takes about its tar's size (the tar itself is
    never stored: it is unpacked as it arrives).
    """
    todo = plan.of(DOWNLOAD) + plan.of(UNPACK)
    needed = 0
    for a in todo:
        have = 0
        if a.kind == DOWNLOAD:
            try:
                have = os.lstat(os.path.join(os.path.dirname(a.local),
                                             temp_name(os.path.basename(a.local)))).st_size
            except OSError:
                pass
        needed += max(0, a.size - have)
    if not needed:
        return None
    free = disk.free_bytes(root)
    if needed <= free:
        return None
    return (f"not enough free space for this pull: needed {human_bytes(needed)} "
            f"({needed} bytes) for {len(todo)} item(s), {human_bytes(free)} ({free} bytes) "
            f"free on the disk of {root}; nothing was downloaded: free "
            f"{human_bytes(needed - free)} or pull a sub-folder")


def _local_md5(cache: HashCache, path: str,
               size: Optional[int] = None) -> tuple[Optional[int], Optional[str]]:
    """(size, md5) of an existing regular local file, (None, None) otherwise.

    The md5 (from the cache when the file is unchanged) is read only when the
    size equals ``size``: a different size already says "download".
    """
    try:
        st = os.lstat(path)
    except OSError:
        return None, None
    if not os.path.isfile(path) or os.path.islink(path):
        return None, None
    if size is not None and st.st_size != size:
        return st.st_size, None
    return st.st_size, cache.md5(path, st=st)


def _make_plan(remote: Remote, base: str, root: str, *, unpack: bool,
               cache: HashCache) -> tuple[Plan, list[Problem]]:
    """Walk the remote folder by folder, map names to safe local paths, then plan."""
    walk = _PullWalk(remote, root, unpack=unpack, cache=cache)
    # (remote folder path, the folders shown at that path, local path parts): Drive
    # allows same-named folders; their children are merged into one local folder.
    queue: list[tuple[str, list[Union[str, Entry]], tuple[str, ...]]] = [(base, [base], ())]
    first = True
    while queue:
        folder, sources, parts = queue.pop(0)
        children: list[Entry] = []
        for source in sources:
            try:
                children += remote.list(source)
            except NotFound:
                if first:
                    raise
                walk.warnings.append(Problem(folder, "folder vanished or cannot be addressed "
                                                     "by its name"))
        first = False
        queue += walk.folder(folder, parts, children)
    plan = plan_pull(walk.items, unpacks=[a for a in walk.extra if a.kind != MKDIR])
    plan.actions = [a for a in walk.extra if a.kind == MKDIR] + plan.actions
    for a in plan.of(DOWNLOAD):
        plan.actions[plan.actions.index(a)] = Action(
            a.kind, a.path, local=a.local, size=a.size, md5=a.md5, targets=a.targets,
            data=tuple(os.path.relpath(a.local, root).split(os.sep)))
    return plan, walk.warnings


class _PullWalk:
    """What a pull found so far: files to compare, folders and shards to make, warnings."""

    def __init__(self, remote: Remote, root: str, *, unpack: bool, cache: HashCache):
        self.remote, self.root, self.unpack, self.cache = remote, root, unpack, cache
        self.warnings: list[Problem] = []
        self.items: list[PullItem] = []
        self.extra: list[Action] = []

    def folder(self, folder: str, parts: tuple[str, ...], children: list[Entry]
               ) -> list[tuple[str, list[Union[str, Entry]], tuple[str, ...]]]:
        """Take in one folder's children; the subfolders to walk next."""
        warnings, root = self.warnings, self.root
        children = [c for c in children if not is_internal(raw_name(c, folder))]
        folders = self._folders(folder, children)
        for c in children:
            if is_native(c):
                warnings.append(Problem(c.path, f"{NATIVE}: skipped"))
        files = _drop_identical_copies([c for c in children if not c.is_dir and not is_native(c)],
                                       folder, warnings)
        shards, files = (_find_shards(self.remote, folder, files, warnings) if self.unpack
                         else ({}, files))
        local_names = self._names(folder, [same[0] for same in folders.values()] + files
                                  + [m for m, _, _ in shards.values()], files)
        nexts = []
        for same in folders.values():
            e = same[0]
            sub = parts + (local_names[e.id or e.path],)
            if not os.path.isdir(os.path.join(root, *sub)):
                self.extra.append(Action(MKDIR, e.path, local=os.path.join(root, *sub), data=sub))
            nexts.append((e.path, list(same), sub))
        for e in files:
            dest = os.path.join(root, *parts, local_names[e.id or e.path])
            size, md5 = (_local_md5(self.cache, dest, e.size)
                         if inside(root, os.path.dirname(dest)) else (None, None))
            self.items.append(PullItem(entry=Entry(e.path, e.size, e.md5, e.modified, e.kind,
                                                   e.id), local=dest, local_size=size,
                                       local_md5=md5))
        for man_entry, tar_entry, man in shards.values():
            sub = parts + (local_names[man_entry.id or man_entry.path],)
            dest = os.path.join(root, *sub)
            if _shard_present(self.cache, root, dest, man):
                self.extra.append(Action(SKIP, tar_entry.path, local=dest, size=man.tar_size))
            else:
                self.extra.append(Action(UNPACK, tar_entry.path, local=dest, size=man.tar_size,
                                         md5=man.tar_md5, targets=(tar_entry,), data=(sub, man)))
        return nexts

    def _folders(self, folder: str, children: list[Entry]) -> dict[str, list[Entry]]:
        """Subfolders by name, oldest first; same-named ones said (merged locally)."""
        folders: dict[str, list[Entry]] = defaultdict(list)
        for c in sorted((c for c in children if c.is_dir), key=lambda e: (e.modified, e.id)):
            folders[raw_name(c, folder)].append(c)
        where = f"{self.remote.address}/{folder}" if folder else self.remote.address
        for _name, same in sorted(folders.items()):
            if len(same) > 1:
                self.warnings.append(Problem(
                    same[0].path, f"{len(same)} remote folders share this name; their files "
                    f"were pulled into one local folder (`drivesync dedupe {where}` merges "
                    "them on the remote too)"))
        return folders

    def _names(self, folder: str, named: list[Entry], files: list[Entry]) -> dict[str, str]:
        """Local names (safe, distinct); shortened and shared names said."""
        local_names = assign_names(named, folder=folder)
        for e in named:  # said, so nobody looks for the full name on disk in vain
            if is_shortened(raw_name(e, folder)):
                self.warnings.append(Problem(e.path, "name longer than the file system's 255 "
                                             f"bytes; stored as {local_names[e.id or e.path]}"))
        by_raw: dict[str, list[Entry]] = defaultdict(list)
        for e in files:
            by_raw[safe_part(raw_name(e, folder)).lower()].append(e)
        for same in by_raw.values():
            if len(same) > 1:
                self.warnings.append(Problem(
                    same[0].path, f"{len(same)} remote files share this name; kept as "
                    + ", ".join(local_names[e.id or e.path] for e in same)))
        return local_names


def _drop_identical_copies(files: list[Entry], folder: str,
                           warnings: list[Problem]) -> list[Entry]:
    """One file per (name, size, md5): identical same-named copies (a retried upload,
    or merged same-named folders) are pulled once, the oldest; different ones all are."""
    def same(e: Entry) -> tuple:
        return (raw_name(e, folder), e.size, e.md5) if e.md5 else (e.id or e.path,)

    kept: dict[tuple, Entry] = {}
    copies: dict[tuple, int] = defaultdict(int)
    for e in sorted(files, key=lambda e: (e.modified, e.id or "")):
        copies[same(e)] += 1
        kept.setdefault(same(e), e)
    for key, n in copies.items():
        if n > 1:
            warnings.append(Problem(kept[key].path, f"{n} identical remote copies; pulled once"))
    return [e for e in files if kept.get(same(e)) is e]


def _find_shards(remote: Remote, folder: str, files: list[Entry],
                 warnings: list[Problem]) -> tuple[dict, list[Entry]]:
    """Split a folder's files into packed shards {name: (manifest entry, tar, Manifest)} and
    the other files. A shard is a ``N.tar`` whose ``N.tar.json`` is a valid manifest."""
    by_name: dict[str, list[Entry]] = defaultdict(list)
    for e in files:
        by_name[raw_name(e, folder)].append(e)
    shards: dict[str, tuple[Entry, Entry, Manifest]] = {}
    used: set[str] = set()
    for name, mans in sorted(by_name.items()):
        if not name.endswith(MANIFEST_SUFFIX):
            continue
        tar_name = name[: -len(".json")]
        tars = by_name.get(tar_name)
        if not tars:
            continue
        for m_entry in sorted(mans, key=lambda e: (-e.modified, e.id)):  # newest first
            man = _read_manifest(remote, m_entry, warnings)
            if man is None:
                continue
            tar = next((t for t in tars if t.md5 == man.tar_md5 and t.size == man.tar_size), None)
            if tar is None:
                warnings.append(Problem(m_entry.path,
                                        "no tar matching this manifest; pulled as files"))
                continue
            shard_entry = Entry(posixpath.join(folder, tar_name[: -len(TAR_SUFFIX)])
                                if folder else tar_name[: -len(TAR_SUFFIX)],
                                kind="folder", modified=m_entry.modified, id=m_entry.id)
            shards[tar_name] = (shard_entry, tar, man)
            used.update(e.id for e in mans + tars)
            break
    return shards, [e for e in files if e.id not in used]


def _read_manifest(remote: Remote, entry: Entry,
                   warnings: list[Problem]) -> Optional[Manifest]:
    if entry.size > 64 * 1024 * 1024:
        return None
    with tempfile.TemporaryDirectory(prefix=".drivesync-") as tmp:
        dest = os.path.join(tmp, "m.json")
        try:
            remote.download(entry, dest)
            with open(dest, "rb") as f:
                data = f.read()
        except DriveSyncError as exc:
            warnings.append(Problem(entry.path, f"cannot read manifest: {exc}"))
            return None
    if FORMAT.encode() not in data:
        return None
    try:
        return parse_manifest(data, where=entry.path)
    except DatasetError as exc:
        warnings.append(Problem(entry.path, str(exc)))
        return None


def _shard_present(cache: HashCache, root: str, dest: str, man: Manifest) -> bool:
    """True when every member is already in ``dest`` with the same size and md5."""
    if not os.path.isdir(dest) or not inside(root, dest):
        return False
    for m in man.members:
        size, md5 = _local_md5(cache, os.path.join(dest, *[safe_part(p)
                                                          for p in m.name.split("/")]), m.size)
        if size != m.size or md5 != m.md5:
            return False
    return True


class _PullRunner:
    def __init__(self, *, remote: Remote, root: str, progress: Progress, cache: HashCache):
        self.remote = remote
        self.cache = cache
        self.root = root
        self.progress = progress
        self.member_problems: list[Problem] = []

    def _dest(self, parts: tuple[str, ...]) -> str:
        folder = ensure_dir(self.root, parts[:-1])
        final = os.path.join(folder, parts[-1])
        if not inside(self.root, os.path.dirname(final)):
            raise DatasetError(f"{final}: outside {self.root}")
        tmp = os.path.join(folder, temp_name(parts[-1]))
        if os.path.islink(tmp):
            os.unlink(tmp)  # never write through a planted link
        if os.path.isdir(final) and not os.path.islink(final):
            raise DatasetError(f"{final}: a folder is in the way")
        return final

    def run(self, a: Action) -> int:
        if a.kind == MKDIR:
            ensure_dir(self.root, a.data)
            return 0
        if a.kind == DOWNLOAD:
            dest = self._dest(a.data)
            got = self.remote.download(a.targets[0], dest, progress=self.progress)
            self._learn(dest, got.md5)
            return a.size
        if a.kind == UNPACK:
            return self._unpack(a)
        raise ValueError(f"pull cannot run a {a.kind!r} action")

    def _learn(self, path: str, md5: Optional[str]) -> None:
        """The bytes were verified against this md5: a re-pull need not read them."""
        if md5:
            self.cache.remember(path, md5, st=os.stat(path))

    def _unpack(self, a: Action) -> int:
        """Stream the tar from the remote straight into extraction (never stored
        whole); members land only once the archive's md5 matched."""
        sub, man = a.data
        dest = ensure_dir(self.root, sub)
        _entry, reader = self.remote.open_read(a.targets[0])
        try:
            # a second thread receives while this one writes and hashes the members
            with ReadAhead(_Counted(reader, self.progress), block=BLOCK) as ahead:
                problems = unpack_stream(ahead, man, dest, on_member=self._learn,  # type: ignore[arg-type]
                                         disk=self.remote.disk)
        finally:
            reader.close()
        if problems:
            self.member_problems.extend(Problem(posixpath.join(a.path, n) if n else a.path, r)
                                        for n, r in problems)
            raise DatasetError(f"{len(problems)} problem(s) unpacking the archive; "
                               "nothing wrong was kept")
        return a.size


class _Counted:
    """A reader that reports the bytes it hands out to the progress subscriber."""

    def __init__(self, inner: BinaryIO, progress: Progress):
        self._inner = inner
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._progress.on_progress(bytes=len(data))
        return data
