"""push: a local folder -> a Remote, incremental, resumable, paced, optionally packed.

Order of work: scan the local tree (stat only, scan.py), list the remote (one request
per folder), read md5s only where a same-sized remote copy exists (from the
HashCache, so an unchanged re-push reads nothing), plan, then apply.

Resumability comes from the remote's guarantees: a file appears on Drive only
when its upload completed, and creates are idempotent. A re-run after a crash
plans again from what is there, and removes same-named duplicates that match.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..errors import DriveSyncError, NetworkDown, NotFound, QuotaExceeded, Stopped
from ..hashing import HashCache, cache_path
from ..outcome import Problem
from ..progress import NULL_PROGRESS, Progress, human_bytes, status_listener
from ..remotes.base import Remote
from ..types import Entry
from .apply import ApplyReport, Ask, apply_plan
from .options import SyncOptions
from .pack import (
    MANIFEST_SUFFIX,
    TAR_SUFFIX,
    Manifest,
    Member,
    members_key,
    parse_manifest,
    tar_size,
    write_tar,
)
from .plan import (
    ABSENT,
    DELETE,
    MKDIR,
    PACK,
    REPLACE,
    SKIP,
    UPLOAD,
    Action,
    LocalFile,
    Plan,
    index_remote,
    plan_push,
    rel_to,
)
from .result import SyncResult
from .scan import LocalTree, check_folder_sizes, scan
from .state import PackState

log = logging.getLogger(__name__)


def list_remote(remote: Remote, path: str,
                unreadable: Optional[list[tuple[str, DriveSyncError]]] = None
                ) -> tuple[list[Entry], bool]:
    """Every entry below ``path`` and whether ``path`` exists.

    With ``unreadable``, a folder below ``path`` whose listing fails is recorded
    there and skipped (never taken for empty); without it the error is raised.
    """
    out: list[Entry] = []
    try:
        for e in remote.walk(path, unreadable=unreadable):
            out.append(e)
    except NotFound:
        if out:
            raise  # a folder vanished mid-walk: someone else is changing the remote
        return [], False
    return out, True


def push(local_dir: Union[str, Path], *, remote: Remote, path: str = "",
         options: Optional[SyncOptions] = None, progress: Progress = NULL_PROGRESS,
         hash_cache: Optional[HashCache] = None, **overrides: Any) -> SyncResult:
    """Make ``remote:path`` hold the files of ``local_dir``; see README, "push, pull, dedupe".

    ``options`` (a :class:`SyncOptions`; its fields may also be given as keywords)
    say how. Raises QuotaExceeded (after finishing running transfers) when Drive's
    quota or daily upload limit is reached, NetworkDown when the network is gone
    (both a Stopped carrying the outcome); UsageError for a folder over the file
    limit. Per-file failures are in ``result.problems``. Whatever could not be
    listed or read, locally or on the remote, is left alone by every action
    (nothing below it is deleted, replaced or uploaded) and is listed in
    ``result.problems``. Before trashing what ``delete`` found absent locally,
    ``progress.confirm`` is asked; a no changes nothing (``result.confirmed`` False).
    """
    opts = SyncOptions.of(options, **overrides)
    t0 = time.monotonic()
    req0, retry0 = remote.stats.requests, remote.stats.retries
    base = path.strip("/")
    state_path = opts.state_path()
    own_cache = hash_cache is None
    cache = hash_cache if hash_cache is not None else HashCache(cache_path(state_path))
    packs_db = PackState(state_path / "packs.sqlite")
    remote.set_status_listener(status_listener(progress))
    try:
        plan, result, base_exists = _plan_push(local_dir, remote, base, opts, cache, packs_db)
        runner = _Runner(remote=remote, progress=progress,
                         tmp_dir=state_path, packs_db=packs_db, cache=cache)
        report = apply_plan(plan, runner.run, remote=remote, jobs=opts.jobs,
                            dry_run=opts.dry_run, progress=progress, desc="push",
                            ask=_ask_delete(plan),
                            prepare=(lambda: None) if base_exists else lambda: remote.mkdir(base))
        cache.flush()
        _tally(result, report, runner)
        result.requests = remote.stats.requests - req0
        result.retries = remote.stats.retries - retry0
        result.seconds = time.monotonic() - t0
        if report.fatal is not None:
            raise _stopped(report.fatal, result)
        return result
    finally:
        remote.set_status_listener(None)
        packs_db.close()
        if own_cache:
            cache.close()


def _plan_push(local_dir: Union[str, Path], remote: Remote, base: str, opts: SyncOptions,
               cache: HashCache, packs_db: PackState) -> tuple[Plan, SyncResult, bool]:
    """Scan, list, plan: the same for a dry and a real run. (plan, result so far,
    whether the target folder exists)."""
    tree = scan(local_dir, excludes=opts.excludes)
    shards = tree.shards() if opts.pack else []
    if not opts.allow_big_folders:
        check_folder_sizes(tree, shards, limit=opts.max_files_per_folder)
    remote_unreadable: list[tuple[str, DriveSyncError]] = []
    entries, base_exists = list_remote(remote, base, remote_unreadable)
    plan = _make_plan(tree, shards, entries, base=base, base_exists=base_exists, opts=opts,
                      cache=cache, packs_db=packs_db, remote=remote,
                      blocked_remote=[rel_to(base, p) or p for p, _ in remote_unreadable])
    unreadable = [Problem(rel, f"{why}; not pushed (any remote copy is kept)")
                  for rel, why in sorted(tree.unreadable.items())]
    unreadable += [Problem(p, f"cannot list this remote folder ({exc}); nothing below it was "
                              "pushed or deleted") for p, exc in remote_unreadable]
    result = SyncResult(plan=plan.summary(), dry_run=opts.dry_run,
                        problems=unreadable + list(plan.problems),
                        warnings=list(tree.warnings) + plan.notes,
                        actions=[a for a in plan.actions if a.kind != SKIP])
    return plan, result, base_exists


def _ask_delete(plan: Plan) -> Optional[Ask]:
    """--delete's question: the remote items absent locally that it would trash."""
    gone = [a for a in plan.of(DELETE) if a.reason == ABSENT]
    if not gone:
        return None
    return Ask(f"trash {sum(len(a.targets) for a in gone)} remote item(s) absent locally?",
               [f"  delete   {a.path}" for a in gone])


def _tally(result: SyncResult, report: ApplyReport, runner: _Runner) -> None:
    """The engine's counts into the push's outcome."""
    result.confirmed = report.confirmed
    result.uploaded = report.done[UPLOAD] + report.done[REPLACE]
    result.packed = report.done[PACK]
    result.skipped = report.done[SKIP]
    duplicates = sum(1 for a, _ in report.removed if a.reason != ABSENT)
    result.deleted = runner.deleted + len(report.removed) - duplicates
    result.duplicates_removed = duplicates
    result.failed = report.failed
    result.bytes = report.bytes
    result.left_files, result.left_bytes = report.left_files, report.left_bytes
    result.problems.extend(report.problems)


def _stopped(exc: DriveSyncError, result: SyncResult) -> Stopped:
    when = ("once the network is back" if isinstance(exc, NetworkDown) else
            "(after freeing space, or tomorrow for the daily upload limit)")
    msg = (f"{str(exc).rstrip('.')}. Stopped with {result.left_files} file(s) "
           f"({human_bytes(result.left_bytes)}) left to upload; {result.uploaded + result.packed} "
           f"done are kept. Re-run the same command {when}: it continues where this one "
           "stopped.")
    return Stopped.of(exc, result, msg if isinstance(exc, (QuotaExceeded, NetworkDown)) else None)


def _make_plan(tree: LocalTree, shards: Sequence[str], entries: list[Entry], *, base: str,
               base_exists: bool, opts: SyncOptions, cache: HashCache, packs_db: PackState,
               remote: Remote, blocked_remote: Sequence[str] = ()) -> Plan:
    """Gather the md5s the decision needs (cache first), then plan (pure).

    A file whose md5 cannot be read joins ``tree.unreadable`` (and its shard,
    if any, is not packed this time).
    """
    rfiles, _ = index_remote(base, entries)
    in_shard = {f for s in shards for f in tree.children.get(s, [])}
    plain = [rel for rel in tree.files if rel not in in_shard]
    # md5 only where a same-sized remote copy exists; everything in a shard needs one.
    need = [rel for rel in plain
            if any(e.size == tree.files[rel].st_size for e in rfiles.get(rel, []))]
    need += sorted(in_shard)
    md5s, failed = _md5_many(cache, [(rel, tree.sources[rel], tree.files[rel])
                                     for rel in need], opts.jobs)
    tree.unreadable.update(failed)
    bad_shards = {s for s in shards if any(f in failed for f in tree.children.get(s, []))}
    tree.unreadable.update((s, "a file in this shard cannot be read; not packed")
                           for s in bad_shards)
    shards = [s for s in shards if s not in bad_shards]
    files = [LocalFile(rel, tree.files[rel].st_size, md5s.get(rel), tree.sources[rel])
             for rel in plain if rel not in failed]
    packs = _shard_actions(tree, shards, md5s, rfiles, files, base=base, remote=remote,
                           packs_db=packs_db)
    dirs = [d for d in tree.dirs if d not in set(shards)]
    blocked = set(tree.kept()) | set(blocked_remote)
    for s in bad_shards:  # its old tar and manifest on the remote stay too
        blocked.update((s + TAR_SUFFIX, s + TAR_SUFFIX + ".json"))
    return plan_push(files, dirs, entries, base=base, base_exists=base_exists,
                     delete=opts.delete, packs=packs, excludes=opts.excludes,
                     blocked=sorted(blocked))


def _shard_actions(tree: LocalTree, shards: Sequence[str], md5s: dict[str, str],
                   rfiles: dict[str, list[Entry]], files: list[LocalFile], *, base: str,
                   remote: Remote, packs_db: PackState) -> list[Action]:
    """A PACK action per shard whose tar is not on the remote; a shard already
    there (same tar and manifest) joins ``files`` as two files to skip."""
    packs: list[Action] = []
    for s in shards:
        members = [Member(posixpath.relpath(rel, s), tree.files[rel].st_size, md5s[rel],
                          tree.sources[rel]) for rel in tree.children[s]]
        tar_rel = s + TAR_SUFFIX
        known = packs_db.get(members_key(members)) or _remote_manifest(
            remote, rfiles, tar_rel, members, packs_db)
        if known is not None:
            man = Manifest(posixpath.basename(s), known[0], known[1], tuple(members))
            tars = [e for e in rfiles.get(tar_rel, []) if e.md5 == known[1]]
            mans = [e for e in rfiles.get(tar_rel + ".json", []) if e.md5 == man.md5]
            if tars and mans:
                files.append(LocalFile(tar_rel, known[0], known[1]))
                files.append(LocalFile(tar_rel + ".json", len(man.to_bytes()), man.md5))
                continue
        size = tar_size(members)  # what goes up, so the progress bar ends at 100%
        packs.append(Action(PACK, posixpath.join(base, tar_rel) if base else tar_rel,
                            local=os.path.join(tree.root, s), size=size,
                            data=(posixpath.basename(s), members),
                            reason=f"shard of {len(members)} files"))
    return packs


def _md5_many(cache: HashCache, items: list[tuple[str, str, os.stat_result]],
              jobs: int) -> tuple[dict[str, str], dict[str, str]]:
    """({rel: md5}, {rel: why it could not be read})."""
    if not items:
        return {}, {}

    def one(it: tuple[str, str, os.stat_result]) -> Union[str, OSError]:
        try:
            return cache.md5(it[1], st=it[2])
        except OSError as exc:
            return exc

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        digests = list(pool.map(one, items))
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: don't hash the rest first
        raise
    pool.shutdown()
    md5s = {rel: d for (rel, _, _), d in zip(items, digests) if isinstance(d, str)}
    failed = {rel: f"cannot read: {d.strerror or d}" for (rel, _, _), d in zip(items, digests)
              if not isinstance(d, str)}
    return md5s, failed


def _remote_manifest(remote: Remote, rfiles: dict[str, list[Entry]], tar_rel: str,
                     members: list[Member], packs_db: PackState) -> Optional[tuple[int, str]]:
    """Read the shard's manifest on the remote (small) when our state does not know the tar.

    Returns (tar_size, tar_md5) when it lists exactly our members and a tar with
    that md5 is there; remembers it so the next run needs no download.
    """
    mans = rfiles.get(tar_rel + ".json", [])
    if not mans or not rfiles.get(tar_rel):
        return None
    want = sorted((m.name, m.size, m.md5) for m in members)
    for e in mans:
        if e.size > 64 * 1024 * 1024:
            continue
        with tempfile.TemporaryDirectory(prefix=".drivesync-") as tmp:
            dest = os.path.join(tmp, "manifest.json")
            try:
                remote.download(e, dest)
                with open(dest, "rb") as f:
                    man = parse_manifest(f.read(), where=e.path)
            except DriveSyncError as exc:
                log.warning("cannot read %s: %s", e.path, exc)
                continue
        got = sorted((m.name, m.size, m.md5) for m in man.members)
        if got == want and any(t.md5 == man.tar_md5 and t.size == man.tar_size
                               for t in rfiles[tar_rel]):
            packs_db.put(members_key(members), man.tar_size, man.tar_md5)
            return man.tar_size, man.tar_md5
    return None


class _Runner:
    """Executes one action of a push plan (called from apply's threads)."""

    def __init__(self, *, remote: Remote, progress: Progress,
                 tmp_dir: Path, packs_db: PackState, cache: HashCache):
        self.remote = remote
        self.cache = cache
        self.progress = progress
        self.tmp_dir = tmp_dir
        self.packs_db = packs_db
        self.deleted = 0
        self._lock = threading.Lock()

    def run(self, a: Action) -> int:
        if a.kind == MKDIR:
            self.remote.mkdir(a.path)
            return 0
        if a.kind in (UPLOAD, REPLACE):
            before = os.stat(a.local)
            new = self.remote.upload(a.local, a.path, progress=self.progress)
            self._learn(a.local, before, new)
            if a.kind == REPLACE:
                self._remove([t for t in a.targets if t.id != new.id], permanent=True)
            return a.size
        if a.kind == PACK:
            return self._pack(a)
        raise ValueError(f"push cannot run a {a.kind!r} action")

    def _learn(self, source: str, before: os.stat_result, new: Entry) -> None:
        """The remote verified the upload's md5: remember it so a re-push reads nothing."""
        after = os.stat(source)
        if new.md5 and (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns) \
                and new.size == before.st_size:
            self.cache.remember(source, new.md5, st=before)

    @staticmethod
    def _failures(failed: dict[str, DriveSyncError]) -> dict[str, DriveSyncError]:
        """Items already gone (a previous run, or someone else) are not failures."""
        return {p: e for p, e in failed.items() if not isinstance(e, NotFound)}

    def _remove(self, targets: list[Entry], *, permanent: bool) -> None:
        """Remove old versions of a file just replaced; the first real failure is raised."""
        if not targets:
            return
        failed = self._failures(self.remote.delete_many(targets, permanent=permanent))
        with self._lock:
            self.deleted += len(targets) - len(failed)
        if failed:
            path, exc = next(iter(failed.items()))
            raise type(exc)(f"uploaded, but the old copy {path} could not be removed: {exc}")

    def _pack(self, a: Action) -> int:
        shard, members = a.data
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tar_tmp = tempfile.mkstemp(prefix=".drivesync-pack-", suffix=".tar",
                                       dir=str(self.tmp_dir))
        os.close(fd)
        man_tmp = tar_tmp + ".json"
        try:
            man = write_tar(shard, members, tar_tmp)
            with open(man_tmp, "wb") as f:
                f.write(man.to_bytes())
            keep: list[Entry] = []
            tar_path = a.path
            have_tar = [t for t in a.targets if t.path == tar_path and t.md5 == man.tar_md5]
            if have_tar:
                keep.append(have_tar[0])
            else:
                keep.append(self.remote.upload(tar_tmp, tar_path, progress=self.progress))
            man_path = tar_path[: -len(TAR_SUFFIX)] + MANIFEST_SUFFIX
            have_man = [t for t in a.targets if t.path == man_path and t.md5 == man.md5]
            if have_man:
                keep.append(have_man[0])
            else:
                keep.append(self.remote.upload(man_tmp, man_path))
            keep_ids = {k.id for k in keep}
            self._remove([t for t in a.targets if t.id not in keep_ids], permanent=True)
            self.packs_db.put(members_key(list(man.members)), man.tar_size, man.tar_md5)
            return man.tar_size
        finally:
            for p in (tar_tmp, man_tmp):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass

