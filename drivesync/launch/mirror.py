"""Mirror the trainer's checkpoints to a Remote while it trains.

A file is mirrored only when it is complete: its size, mtime and inode stayed
the same for ``settle_polls`` polls (or untouched for ``settle_seconds`` where
/proc shows open files), no process of the trainer has it open
(Linux ``/proc``), and its header passes the checks in :mod:`.weights`. The
file is then copied to a private snapshot (the trainer may start rewriting it
at any moment), re-stat'ed to prove the copy saw one version, and the snapshot
is uploaded under one temporary name per folder (:data:`UPLOAD_TEMP`, hidden
from listings, so never taken for a checkpoint, and removed when the next
launch starts: a kill between upload and rename leaves no lasting garbage),
md5-verified by the Remote, and renamed to ``NAME``; only then is the copy it
replaces deleted (by its Entry, so a racing newer copy is never hit). The
Remote therefore always holds at least one complete checkpoint, and content is
never updated in place (Drive would keep the old bytes as a revision counting
against the quota).

A darknet file smaller than a checkpoint of the same family mirrored earlier
in this run is refused as truncated: every checkpoint of one network has the
same size, and darknet killed while writing leaves a shorter file whose header
still parses. Before the first one, ``expected_size`` (the size the cfg fixes,
:mod:`.darknet_cfg`) stands in; since that is a computation, not an
observation, two files of one smaller size overrule it (a kill truncates one
file per run, and the trainer's own files are the better witness).

A ``_best`` file replaces the remote one only when the metric it was saved
for (darknet's mAP, Ultralytics' best_fitness) beats the one recorded beside
the remote copy (:mod:`.best`). The trainer's log and darknet's charts are
uploaded beside the checkpoints when they change (:meth:`Mirror.mirror_extras`).

Weights holding NaN or infinite floats (a run whose loss went ``nan``) are
refused like a truncated file (:class:`.weights.NonFiniteWeights`): the good
copy on the remote stays.

A full Drive (QuotaExceeded) never stops training: a warning says what to do,
uploads pause for ``quota_retry`` seconds, and mirroring resumes by itself once
space is freed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..errors import DriveSyncError, NetworkDown, NotFound, QuotaExceeded
from ..hashing import md5_file
from ..progress import NULL_PROGRESS, Progress
from ..remotes.base import Remote
from ..types import TEMP_PREFIX, Entry, is_internal, join
from .best import BestRecord, current_record, is_best_name, write_record
from .process import open_by
from .weights import CheckpointError, WeightsInfo

log = logging.getLogger(__name__)

Key = tuple  # (size, mtime_ns, inode)

# The one in-flight name the mirror uploads to (one upload at a time per folder).
UPLOAD_TEMP = TEMP_PREFIX + "mirror-upload"  # a fixed short name (README), not a user's
_DARKNET_ROLE = re.compile(r"_(\d+|last|final|best)$", re.IGNORECASE)


def darknet_family(name: str) -> str:
    """``yolo-obj_1000.weights`` / ``yolo-obj_last.weights`` -> ``yolo-obj``."""
    return _DARKNET_ROLE.sub("", os.path.splitext(name)[0])


@dataclass(frozen=True)
class Mirrored:
    name: str
    size: int
    md5: str
    info: Optional[WeightsInfo]
    seconds: float
    copied_from: Optional[str] = None  # a server-side copy of this remote file: no upload


@dataclass
class MirrorStats:
    mirrored: list = field(default_factory=list)
    bytes: int = 0
    skipped_same: int = 0
    rejected: int = 0
    pruned: int = 0
    quota_blocked: int = 0   # times an upload was refused for lack of space
    kept_best: int = 0       # _best files not mirrored: the remote one scored higher


def _key(st: os.stat_result) -> Key:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class Mirror:
    """Polls ``watch_dir``: :meth:`start` once, :meth:`poll` often, :meth:`finish` at the end."""

    def __init__(self, remote: Remote, *, watch_dir: Path, path: str = "",
                 suffixes: tuple = (".weights", ".backup", ".pt"),
                 check: Callable[[Path], WeightsInfo],
                 snapshot_dir: Path,
                 pids: Callable[[], Iterable[int]] = lambda: (),
                 settle_polls: int = 2,
                 settle_seconds: float = 2.0,
                 policy: object = None,
                 progress: Progress = NULL_PROGRESS,
                 quota_retry: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 expected_size: Optional[int] = None,
                 best_metric: Callable[[Path, str], Optional[tuple]] = lambda p, n: None,
                 extras: Callable[[], list] = list,
                 extras_every: float = 60.0,
                 lock_dir: Optional[Path] = None):
        self.remote = remote
        self.watch_dir = Path(watch_dir)
        self.path = path
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.check = check
        self.snapshot_dir = Path(snapshot_dir)
        self.pids = pids
        self.settle_polls = max(1, settle_polls)
        # With /proc we can see that the trainer has closed a file; then a file
        # untouched for settle_seconds is done even if it was first seen on this
        # poll (a last.pt rewritten every few seconds would otherwise never be
        # stable over two polls). Without /proc only the polls count.
        self.settle_seconds = settle_seconds if os.path.isdir("/proc/self/fd") else None
        self.policy = policy
        # where prune takes the folder's lock: the state dir, as `drivesync prune` does,
        # so a cron prune and this launch exclude each other
        self.lock_dir = Path(lock_dir) if lock_dir is not None else self.snapshot_dir
        self.progress = progress  # bars, events and warnings: the one channel to the user
        self.expected_size = expected_size         # darknet: what the cfg says (see module doc)
        self._track()
        self.quota_retry = quota_retry
        self.clock = clock
        self._blocked_at: Optional[float] = None   # when Drive last said it is full
        self.stopped: Optional[str] = None         # why nothing more is written (lease lost)
        self.uploading = False                     # an upload is in flight (for Ctrl-C)
        # _best files: (what, metric) of a snapshot, e.g. ("mAP@0.50", 0.52); see .best
        self.best_metric = best_metric
        # files that are not checkpoints (the trainer's log, darknet's charts):
        # [(local path, remote name)], uploaded when changed, at most every extras_every s
        self.extras = extras
        self.extras_every = extras_every
        self._extras_done: dict[str, Key] = {}
        self._extras_at = float("-inf")

    def _track(self) -> None:
        """What this run has seen, handled and learnt about its files (one Mirror, one run)."""
        self.stats = MirrorStats()
        self.known: set[tuple[str, str]] = set()   # (name, md5) on the Remote or uploaded
        self._twins: dict[str, Entry] = {}          # md5 -> a remote file holding those bytes
        self._baseline: dict[str, Key] = {}        # files that predate this launch
        self._done: dict[str, Key] = {}            # versions already handled
        self._seen: dict[str, tuple[Key, int]] = {}
        self._sizes: dict[str, int] = {}           # darknet family -> size mirrored this run
        self._short: dict[int, tuple[str, Key]] = {}  # size below expected -> first such file

    # ---- start ------------------------------------------------------------
    def start(self) -> list[Entry]:
        """Learn what the Remote holds, tidy duplicate names, and note stale local files.

        Local files present before the trainer starts may be half-written
        leftovers of a killed run: they are never uploaded unless they change.
        """
        entries = self._list()
        self._clear()
        entries = self._dedupe(entries)
        self.known = {(e.name, e.md5) for e in entries if e.md5}
        self._twins = {e.md5: e for e in entries if e.md5}
        self._baseline = {p.name: _key(p.stat()) for p in self._candidates()}
        if self._baseline:
            log.info("ignoring %d checkpoint files already in %s until they change",
                     len(self._baseline), self.watch_dir)
        return entries

    def _list(self) -> list[Entry]:
        try:
            return [e for e in self.remote.list(self.path) if not e.is_dir]
        except NotFound:
            return []

    def _dedupe(self, entries: list[Entry]) -> list[Entry]:
        """A kill between rename and delete leaves two complete copies of one name on
        Drive; keep the newest and delete the others (both are whole, so either order is safe)."""
        by_name: dict[str, list[Entry]] = {}
        for e in entries:
            by_name.setdefault(e.name, []).append(e)
        keep = []
        for name, group in by_name.items():
            group.sort(key=lambda e: (e.modified, e.id), reverse=True)
            keep.append(group[0])
            for old in group[1:]:
                log.info("removing older duplicate of %s (id %s)", name, old.id)
                self._delete(old)
        return keep

    def _delete(self, entry: Entry) -> None:
        if entry.md5 and getattr(self._twins.get(entry.md5), "id", None) == entry.id:
            del self._twins[entry.md5]
        try:
            self.remote.delete(entry, permanent=True)
        except NotFound:
            pass  # already gone, or replaced in place by the rename (local remote)

    def _candidates(self) -> list[Path]:
        try:
            items = list(os.scandir(self.watch_dir))
        except FileNotFoundError:
            return []
        out = []
        for d in items:
            if is_internal(d.name) or not d.name.lower().endswith(self.suffixes):
                continue
            try:
                if d.is_file(follow_symlinks=False):
                    out.append(Path(d.path))
            except OSError:
                continue
        return out

    # ---- polling ----------------------------------------------------------
    def blocked(self) -> bool:
        """True while uploads wait for Drive space (``quota_retry`` after a refusal)."""
        return self._blocked_at is not None and \
            self.clock() - self._blocked_at < self.quota_retry

    def poll(self, *, force: bool = False, settled: bool = False) -> list[Mirrored]:
        """One look at the folder; mirrors every file that became complete.

        While Drive is full (see :meth:`blocked`) files are only watched, not
        uploaded, unless ``force`` (the last tries after the trainer stopped).
        ``settled``: the trainer has exited, so every changed file is final.
        """
        if self.stopped:
            return []
        ready: list[tuple[int, Path, Key]] = []
        for p in self._candidates():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            if st.st_size == 0:  # being (re)written: trainers create before they fill
                continue
            key = _key(st)
            name = p.name
            if self._baseline.get(name) == key or self._done.get(name) == key:
                continue
            prev = self._seen.get(name)
            count = prev[1] + 1 if prev and prev[0] == key else 1
            self._seen[name] = (key, count)
            quiet_for = time.time() - st.st_mtime
            if settled or count >= self.settle_polls or (self.settle_seconds is not None
                                              and quiet_for >= self.settle_seconds):
                ready.append((st.st_mtime_ns, p, key))
        out: list[Mirrored] = []
        if self.blocked() and not force:
            return out
        for _mtime, p, key in sorted(ready, key=lambda t: (t[0], t[1].name)):
            if open_by(self.pids(), p):
                log.debug("%s is still open by the trainer", p.name)
                continue
            try:
                result = self._mirror_one(p, key)
            except (QuotaExceeded, NetworkDown) as exc:  # the trainer goes on either way
                self._on_full(p.name, exc)
                break
            if result is not None:
                out.append(result)
        if not self.blocked():
            self._extras(force=settled)
        return out

    def _extras(self, *, force: bool) -> None:
        try:
            self.mirror_extras(force=force)
        except (QuotaExceeded, NetworkDown) as exc:
            self._on_full("the trainer's log", exc)
        except DriveSyncError as exc:  # a log is not worth stopping for
            self.progress.on_warning(f"mirroring the log/charts: {exc} (will retry)")

    def _on_full(self, name: str, exc: DriveSyncError) -> None:
        """Warn once per full (or offline) spell; uploads pause for ``quota_retry`` seconds."""
        self.stats.quota_blocked += 1
        first = self._blocked_at is None
        self._blocked_at = self.clock()
        if first and isinstance(exc, NetworkDown):
            self.progress.on_warning(f"{name} not mirrored: {exc}; training continues, mirroring "
                            f"pauses and resumes by itself (next try in {self.quota_retry:g}s)")
        elif first:
            self.progress.on_warning(
                f"Drive is full, {name} not mirrored ({exc}); training continues and the "
                "checkpoints already on Drive are kept. Free space (empty Drive's trash, "
                "`drivesync prune ... --max-bytes`) and mirroring resumes by itself "
                f"(next try in {self.quota_retry:g}s)")

    def pending(self) -> list[str]:
        """Files seen changing that have not been handled yet."""
        return sorted(n for n, (key, _c) in self._seen.items()
                      if self._done.get(n) != key and self._baseline.get(n) != key)

    def finish(self, *, interval: float, timeout: float = 600.0,
               sleep: Callable[[float], None] = time.sleep) -> list[Mirrored]:
        """After the trainer stopped: mirror what it left, at once (its files are final:
        nothing writes them any more), retrying what is still pending."""
        if self.stopped:
            return []
        deadline = time.monotonic() + timeout
        refusals = self.stats.quota_blocked
        out = self.poll(force=True, settled=True)
        while self.pending() and time.monotonic() < deadline \
                and self.stats.quota_blocked == refusals:
            sleep(interval)
            out += self.poll(force=True, settled=True)
        why = "Drive is full" if self.stats.quota_blocked > refusals else \
            "it never became complete"
        for name in self.pending():
            self.progress.on_warning(f"{name}: not mirrored ({why})")
        return out

    # ---- one file ---------------------------------------------------------
    def _mirror_one(self, p: Path, key: Key) -> Optional[Mirrored]:
        """Snapshot, check, upload one file; None when it is not (yet) to be mirrored."""
        name = p.name
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        snap = self.snapshot_dir / f".drivesync-snapshot-{name}"
        t0 = time.monotonic()
        try:
            shutil.copyfile(p, snap)
            if _key(p.stat()) != key:  # the trainer rewrote it while we copied
                self._seen.pop(name, None)
                return None
            accepted = self._accept(snap, name, key)
            if accepted is None:
                return None
            info, md5, best = accepted
            twin = self._upload(snap, name, md5)
            if best is not None:
                self._record_best(name, md5, best)
        except FileNotFoundError:
            self._seen.pop(name, None)
            return None
        finally:
            snap.unlink(missing_ok=True)
        return self._uploaded(name, key, info, md5, twin, time.monotonic() - t0)

    def _accept(self, snap: Path, name: str,
                key: Key) -> Optional[tuple[WeightsInfo, str, Optional[tuple]]]:
        """(info, md5, best metric) of a snapshot worth uploading; None, with the file
        marked handled, for one that fails its checks, is already there, or is a worse best."""
        try:
            info = self.check(snap)
            self._check_size(name, key, info)
        except CheckpointError as exc:
            self._done[name] = key
            self.stats.rejected += 1
            kept = "; the copy already on the remote is kept" \
                if any(n == name for n, _md5 in self.known) else ""
            why = str(exc).replace(f"{snap}: ", "")  # the snapshot's path says nothing
            self.progress.on_warning(f"not mirroring {name}: {why}{kept}")
            return None
        md5 = md5_file(snap)
        if (name, md5) in self.known:
            self._done[name] = key
            self.stats.skipped_same += 1
            log.info("%s: same content already on the remote", name)
            return None
        best = None
        if is_best_name(name):
            best = self.best_metric(snap, name)
            if not self._better_than_remote(name, best):
                self._done[name] = key
                self.stats.kept_best += 1
                return None
        return info, md5, best

    def _uploaded(self, name: str, key: Key, info: Optional[WeightsInfo], md5: str,
                  twin: Optional[str], seconds: float) -> Mirrored:
        """Bookkeeping once a file is on the remote: sizes, stats, the event, the prune."""
        self.known.add((name, md5))
        self._done[name] = key
        if info is not None and info.fixed_size:
            family = darknet_family(name)
            self._sizes[family] = max(self._sizes.get(family, 0), key[0])
        if self._blocked_at is not None:
            self._blocked_at = None
            self.progress.on_event("mirroring resumed")
        result = Mirrored(name=name, size=key[0], md5=md5, info=info, seconds=seconds,
                          copied_from=twin)
        self.stats.mirrored.append(result)
        if twin is None:  # bytes that travelled; a copy made on the remote sends none
            self.stats.bytes += key[0]
        what = f" ({info.describe()})" if info is not None else ""
        how = f" (a copy of {twin} made on the remote: nothing uploaded)" if twin else ""
        self.progress.on_event(f"mirrored {name}{what} md5={md5} {key[0]} bytes "
                               f"in {result.seconds:.1f}s{how}")
        self._prune()
        return result

    def _better_than_remote(self, name: str, best: Optional[tuple]) -> bool:
        """A new ``_best`` replaces the remote one only with a higher recorded metric."""
        on_remote = next((e for e in self._list() if e.name == name), None)
        rec = current_record(self.remote, self.path, name, on_remote)
        if rec is None:
            return True
        if best is not None and best[1] > rec.metric:
            return True
        mine = f"its {best[0]} {best[1]:.6g}" if best is not None else "its metric (unknown)"
        self.progress.on_warning(
            f"not mirroring {name}: {mine} is not above the {rec.describe()} of the copy on "
            "the remote (the trainer forgets its best when it restarts); the remote one is kept")
        return False

    def _record_best(self, name: str, md5: str, best: tuple) -> None:
        try:
            write_record(self.remote, self.path,
                         BestRecord(name=name, md5=md5, metric=float(best[1]), what=best[0]))
        except DriveSyncError as exc:
            self.progress.on_warning(
                f"{name}: mirrored, but its {best[0]} could not be recorded: {exc}")

    # ---- files beside the checkpoints ----------------------------------------
    def mirror_extras(self, *, force: bool = False) -> int:
        """Upload the log/charts that changed (every ``extras_every`` s, or now with force)."""
        now = self.clock()
        if self.stopped or (not force and now - self._extras_at < self.extras_every):
            return 0
        self._extras_at = now
        done = 0
        for local, remote_name in self.extras():
            try:
                st = os.stat(local)
            except OSError:
                continue
            key = _key(st)
            if st.st_size == 0 or self._extras_done.get(remote_name) == key:
                continue
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            snap = self.snapshot_dir / f".drivesync-extra-{remote_name.replace('/', '_')}"
            try:
                shutil.copyfile(local, snap)
                self.remote.replace(snap, join(self.path, remote_name))
            except OSError as exc:
                self.progress.on_warning(f"{remote_name}: not mirrored ({exc})")
                continue
            finally:
                snap.unlink(missing_ok=True)
            self._extras_done[remote_name] = key
            done += 1
        return done

    def _check_size(self, name: str, key: Key, info: Optional[WeightsInfo]) -> None:
        if info is None or not info.fixed_size:
            return
        size = key[0]
        family = darknet_family(name)
        want = self._sizes.get(family)
        if want is not None and size < want:
            raise CheckpointError(
                f"{size} bytes, but the {family} checkpoints mirrored in this run have {want}: "
                "truncated (the trainer stopped while writing it?)")
        if want is not None or self.expected_size is None or size >= self.expected_size:
            return
        first = self._short.get(size)
        if first is None or first == (name, key):
            self._short[size] = (name, key)
            raise CheckpointError(
                f"{size} bytes, but the cfg makes every checkpoint {self.expected_size} bytes: "
                "truncated (the trainer stopped while writing it?)")
        # A second file of the very same size: the cfg computation is what is wrong.
        self.progress.on_warning(f"{name} and {first[0]} both have {size} bytes where the cfg "
                                 f"predicts {self.expected_size}: trusting the trainer's files")
        self.expected_size = None
        if self._done.get(first[0]) == first[1]:
            del self._done[first[0]]  # look at the refused one again on the next poll

    def _upload(self, snap: Path, name: str, want: str) -> Optional[str]:
        """Temp name -> verify -> rename -> delete the replaced copies.

        When the remote already holds these bytes under another name (Ultralytics
        writes ``best.pt`` as the very bytes of the ``last.pt`` just mirrored), the
        temp file is a copy made on the remote, so nothing is uploaded again.
        Returns the name copied from, or None after an upload.
        """
        final_path = join(self.path, name)
        # an object store shows an upload only once complete: no temporary name needed
        atomic = self.remote.features.atomic_upload
        tmp_path = final_path if atomic else join(self.path, UPLOAD_TEMP)
        old = [e for e in self._list() if e.name == name]
        self._clear()
        twin = self._twins.get(want)
        new: Optional[Entry] = None
        if twin is not None and twin.name != name and self.remote.features.server_side_copy:
            try:
                new = self.remote.copy(twin, tmp_path)
            except NotFound:  # pruned or replaced since: upload the bytes instead
                self._twins.pop(want, None)
        if new is None:
            twin = None
            self.progress.on_start(files=1, bytes=snap.stat().st_size, desc=f"mirror {name}")
            self.uploading = True
            try:
                new = self.remote.upload(snap, tmp_path, progress=self.progress)
            finally:
                self.uploading = False
                self.progress.on_done()
        if new.md5 and new.md5 != want:
            self._delete(new)
            raise DriveSyncError(f"{name}: remote md5 {new.md5} differs from local {want}")
        final = new if atomic else self.remote.move(new, final_path)
        for e in old:
            if e.id != final.id:
                self._delete(e)
        self._twins[want] = final
        return twin.name if twin is not None else None

    def _clear(self) -> None:
        """Remove in-flight copies a killed run left under the temp name."""
        tmp_path = join(self.path, UPLOAD_TEMP)
        for _ in range(10):
            try:
                entry = self.remote.stat(tmp_path)
            except NotFound:
                return
            log.info("removing leftover partial upload %s", tmp_path)
            self._delete(entry)

    def _prune(self) -> None:
        if self.policy is None:
            return
        from ..checkpoints.prune import prune

        try:
            # this launch holds the folder's lease: its own budget applies, not the
            # rule that protects a leased folder from other pruners
            result = prune(self.remote, self.path, policy=self.policy, permanent=True,
                           spare_leased=False, lock_dir=self.lock_dir)
        except DriveSyncError as exc:
            self.progress.on_warning(f"prune after mirroring failed: {exc}")
            return
        deleted = getattr(result, "deleted", None)
        if deleted:
            self.stats.pruned += len(deleted)
            self.progress.on_event(f"pruned {len(deleted)} old checkpoint(s)")
