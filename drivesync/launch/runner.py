"""One launch: environment -> stage -> resume -> trainer -> mirror -> stop.

The runner prints nothing itself: it reports through the one channel,
:class:`..progress.Progress` (events, warnings; the CLI's prints), and the
trainer's output is passed to ``on_output`` as soon as it arrives, so the
notebook shows it live.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..config import Settings
from ..errors import ChecksumMismatch, DriveSyncError, NotFound
from ..progress import NULL_PROGRESS, Progress
from ..remotes import is_drive_address, open_remote, parse_address
from ..remotes.base import Remote
from . import colab
from .mirror import Mirror, Mirrored
from .process import SignalForwarder, process_tree, run_trainer
from .registry import trainer_named
from .trainer import Resume, Trainer
from .trainer_log import TrainerLog
from .weights import CheckpointError

log = logging.getLogger(__name__)

__all__ = ["LaunchOptions", "LaunchResult", "Resume", "launch", "choose_resume"]


@dataclass
class LaunchOptions:
    """Everything ``drivesync launch`` accepts; paths are local unless named remote.

    ``own`` holds the trainer's own options by name (``cfg``, ``model``, ...:
    its :attr:`.trainer.Trainer.options`), read by the trainer alone.
    """

    trainer: str
    data: str
    own: dict = field(default_factory=dict)
    weights: Optional[str] = None           # remote address of the checkpoint folder
    dataset: Optional[str] = None           # remote address of the dataset
    root: Optional[str] = None              # the root link, e.g. /WORK1
    drive_dir: Optional[str] = None         # local folder the root link points at without staging
    mount: Optional[bool] = None            # None: mount on Colab only
    mount_point: str = colab.DEFAULT_MOUNT
    force_link: bool = False
    stage: bool = True
    stage_dir: str = "/content/data"
    work_dir: str = "/content/drivesync"    # resume downloads and mirror snapshots
    policy: object = None                   # checkpoints.policy.PrunePolicy or None
    interval: float = 5.0                   # seconds between polls of the output folder
    settle_polls: int = 2
    verbose: bool = False                   # show the trainer's output whole (-v)
    extra: Sequence[str] = ()
    take_over: bool = False                 # claim a stale lease on --weights
    force_take_over: bool = False           # claim even a live one
    lease_timing: object = None             # checkpoints.lease.LeaseTiming or None (defaults)


@dataclass
class LaunchResult:
    exit_code: int
    command: list
    resume: Optional[Resume] = None
    mirrored: list = field(default_factory=list)
    bytes: int = 0
    newest: Optional[Mirrored] = None
    staged: object = None
    signal: Optional[int] = None
    skipped: list = field(default_factory=list)  # (name, why) of checkpoints passed over

    @property
    def reached(self) -> str:
        info = self.newest.info if self.newest else (self.resume.info if self.resume else None)
        return "no checkpoint yet" if info is None else info.reached


def address_basename(address: str, *, settings: Settings) -> str:
    raw = parse_address(address).path
    base = posixpath.basename(raw.rstrip("/"))
    return base or settings.folder


def _top_folder(address: str, settings: Settings) -> str:
    """The mount folder an address lives in, relative to ``MOUNT/MyDrive``: its top
    folder, or for a shared drive (``drive:@Team/x``) ``../Shareddrives/Team/x``,
    where Colab's mount shows shared drives."""
    addr = parse_address(address)
    top = addr.drive_folder.strip("/").split("/", 1)[0]
    if addr.shared_drive is not None:
        return posixpath.join("..", "Shareddrives", addr.shared_drive, top)
    return top or settings.folder


# ---- environment -------------------------------------------------------------
def prepare_environment(opts: LaunchOptions, *, settings: Settings,
                        progress: Progress = NULL_PROGRESS) -> object:
    """Mount, stage, link; returns the StageResult (or None)."""
    on_colab = colab.in_colab()
    mount = on_colab if opts.mount is None else opts.mount
    drive_dir = Path(opts.drive_dir) if opts.drive_dir else None
    if mount:
        my_drive = colab.ensure_drive_mounted(opts.mount_point)
        if drive_dir is None:
            source = opts.dataset or opts.weights
            top = _top_folder(source, settings) if source and is_drive_address(source) \
                else settings.folder
            drive_dir = Path(os.path.normpath(my_drive / top))
    staged = None
    if opts.dataset and opts.stage:
        staged = stage(opts, settings=settings, progress=progress)
    if opts.root:
        target = Path(opts.stage_dir) if staged is not None else drive_dir
        if target is None:
            progress.on_warning(f"no target for the root link {opts.root}: pass --drive-dir "
                          "(or --dataset to stage one)")
        else:
            res = colab.ensure_link(opts.root, target, force=opts.force_link)
            progress.on_event(f"root link {res.link} -> {res.target} ({res.action})")
    return staged


def stage(opts: LaunchOptions, *, settings: Settings,
          progress: Progress = NULL_PROGRESS):
    from .stage import stage_dataset

    assert opts.dataset
    dest = Path(opts.stage_dir) / address_basename(opts.dataset, settings=settings)
    with open_remote(opts.dataset, settings=settings) as remote:
        result = stage_dataset(remote, dest, jobs=settings.jobs, progress=progress)
    if result.skipped:
        progress.on_event(f"dataset already staged in {dest} (unchanged on the remote)")
    else:
        shards = f", {result.shards} packed shard(s) unpacked" if result.shards else ""
        progress.on_event(f"staged {opts.dataset} into {dest} ({result.files} files{shards})")
    return result


# ---- resume ------------------------------------------------------------------
def choose_resume(remote: Remote, *, trainer: Trainer, dest_dir: Path,
                  progress: Progress = NULL_PROGRESS) -> tuple[Optional[Resume], list]:
    """Newest complete checkpoint that downloads (md5-verified) and passes its checks.

    Which checkpoints count, and the checks, are the trainer's (:class:`.trainer.Trainer`).
    One that fails (truncated against the size the cfg fixes, a header that
    disagrees, NaN weights) is skipped, with a warning, for the one before it.
    """
    from ..checkpoints.latest import complete_checkpoints, safe_local_name

    try:
        entries = remote.list("")
    except NotFound:
        return None, []
    candidates = [c for c in complete_checkpoints(entries)
                  if c.entry.name.lower().endswith(trainer.suffixes) and trainer.resumable(c)]
    skipped: list = []
    dest_dir.mkdir(parents=True, exist_ok=True)
    for c in candidates:
        local = dest_dir / safe_local_name(c.entry.name)
        why_not = trainer.refuse(c, candidates)
        if why_not is None:
            try:
                info = _fetch(remote, c, local, trainer=trainer, progress=progress)
            except (CheckpointError, ChecksumMismatch, NotFound) as exc:
                local.unlink(missing_ok=True)
                why_not = str(exc)
        if why_not is not None:
            skipped.append((c.entry.name, why_not))
            progress.on_warning(f"skipping checkpoint {c.entry.name}: {why_not}")
            continue
        why = "newest complete checkpoint on the remote" if not skipped else \
            f"falling back to the newest one that passed its checks ({len(skipped)} newer skipped)"
        return Resume(name=c.entry.name, local=local, info=info,
                      reason=f"{why}, {c.role}, {info.describe()}"), skipped
    return None, skipped


def _fetch(remote: Remote, c, local: Path, *, trainer: Trainer, progress: Progress):
    """Download one candidate (md5-verified by the Remote) and check it as the trainer says."""
    progress.on_start(files=1, bytes=c.entry.size, desc=c.entry.name)
    try:
        remote.download(c.entry, local, progress=progress)
    finally:
        progress.on_done()
    return trainer.check_resume(local, c)


def finish_mirror(mirror: Mirror, *, interval: float, progress: Progress) -> None:
    """Mirror what the trainer left; errors are warnings (the exit code stays the trainer's)."""
    progress.on_event("trainer stopped; mirroring the newest checkpoints")
    try:
        mirror.finish(interval=interval)
    except DriveSyncError as exc:
        progress.on_warning(f"mirroring after the trainer stopped failed: {exc}; the checkpoints "
                      "already on the remote are complete, and the newer local ones stay in "
                      f"{mirror.watch_dir}")


# ---- the whole launch ----------------------------------------------------------
class _Session:
    """What one launch holds while it runs: the checkpoint remote, its lease, the mirror.

    The lease comes first: a folder another launch holds stops this one before
    anything is staged or started.
    """

    def __init__(self, opts: LaunchOptions, *, settings: Settings, progress: Progress):
        self.opts, self.settings, self.progress = opts, settings, progress
        self.remote: Optional[Remote] = None
        self.lease = None
        self.mirror: Optional[Mirror] = None

    def acquire(self) -> None:
        if not self.opts.weights:
            return
        self.remote = open_remote(self.opts.weights, settings=self.settings)
        self.lease = take_lease(self.remote, self.opts, progress=self.progress)
        self.lease.start_heartbeat(
            on_lost=lambda why: _lease_lost(self.mirror, why, self.progress))

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()
        if self.remote is not None:
            self.remote.close()


@dataclass
class _Plan:
    """What was decided before the trainer starts; ``done`` ends the launch there."""

    staged: object
    resume: Optional[Resume]
    skipped: list
    argv: list = field(default_factory=list)
    done: Optional[LaunchResult] = None


def launch(opts: LaunchOptions, *, settings: Settings,
           progress: Progress = NULL_PROGRESS) -> LaunchResult:
    """Run one launch to the end; returns the trainer's exit code and a summary.

    Three steps: plan (environment, the trainer's checks, the checkpoint to
    resume from, the command), run (mirror while the trainer trains), finish
    (mirror what it left). The trainer's specifics come from the registry.
    """
    trainer = trainer_named(opts.trainer)(opts, progress=progress)
    trainer.validate()
    session = _Session(opts, settings=settings, progress=progress)
    try:
        session.acquire()
        plan = _plan(session, trainer)
        return plan.done if plan.done is not None else _run(session, trainer, plan)
    finally:
        session.close()


def _plan(session: _Session, trainer: Trainer) -> _Plan:
    """Mount, stage, link; the trainer's checks; the checkpoint to resume from; the command."""
    opts, progress = session.opts, session.progress
    staged = prepare_environment(opts, settings=session.settings, progress=progress)
    trainer.prepare()
    resume: Optional[Resume] = None
    skipped: list = []
    if session.remote is not None:
        resume, skipped = choose_resume(session.remote, trainer=trainer,
                                        dest_dir=Path(opts.work_dir) / "resume",
                                        progress=progress)
    if resume:
        progress.on_event(f"resuming from {resume.name}: {resume.reason}")
    else:
        progress.on_event(trainer.fresh_start(skipped))
    finished = trainer.nothing_to_resume(resume) if resume else None
    if finished:
        progress.on_event(finished)
        return _Plan(staged, resume, skipped,
                     done=LaunchResult(exit_code=0, command=[], resume=resume, skipped=skipped))
    return _Plan(staged, resume, skipped, argv=trainer.command(resume))


def _run(session: _Session, trainer: Trainer, plan: _Plan) -> LaunchResult:
    """Start the mirror, run the trainer, mirror what it left; the summary."""
    opts, progress = session.opts, session.progress
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    log_path = Path(opts.work_dir) / "logs" / f"train-{stamp}.log"
    watch = trainer.watch_dir(plan.resume)
    view = TrainerLog(log_path, kind=trainer.log_dialect, verbose=opts.verbose)
    progress.on_event(f"the trainer's whole output goes to {log_path}"
                      + (f" (mirrored to {opts.weights})" if session.remote is not None else "")
                      + ("" if opts.verbose else "; here: a summary every 10 s (-v: all of it)"))
    if session.remote is not None:
        session.mirror = _start_mirror(session, trainer, watch, view, log_path)
    progress.on_event("running: " + " ".join(plan.argv))
    code, sig = _train(session, plan.argv, view)
    stats = session.mirror.stats if session.mirror is not None else None
    return LaunchResult(
        exit_code=code, command=plan.argv, resume=plan.resume, staged=plan.staged, signal=sig,
        skipped=plan.skipped,
        mirrored=list(stats.mirrored) if stats else [],
        bytes=stats.bytes if stats else 0,
        newest=(stats.mirrored[-1] if stats and stats.mirrored else None))


def _start_mirror(session: _Session, trainer: Trainer, watch: Path, view: TrainerLog,
                  log_path: Path) -> Mirror:
    """The mirror of ``watch``, with the trainer's checks, guard sizes and best metric,
    plus the log (into ``logs/``) and the trainer's extra files beside the checkpoints."""
    opts, remote = session.opts, session.remote
    assert remote is not None

    def extras() -> list:
        view.flush()
        return [(log_path, f"logs/{log_path.name}"), *trainer.extras()]

    mirror = Mirror(remote, watch_dir=watch, suffixes=trainer.suffixes,
                    check=trainer.check_mirror, snapshot_dir=Path(opts.work_dir) / "snapshots",
                    settle_polls=opts.settle_polls, policy=opts.policy,
                    progress=session.progress, expected_size=trainer.expected_size,
                    best_metric=trainer.best_metric(view), extras=extras,
                    lock_dir=session.settings.resolved_state_dir())
    mirror.stopped = session.lease.lost if session.lease is not None else None
    mirror.start()
    return mirror


def _train(session: _Session, argv: list, view: TrainerLog) -> tuple[int, Optional[int]]:
    """Run the trainer with signals forwarded; then mirror the newest checkpoints."""
    opts, progress, mirror = session.opts, session.progress, session.mirror
    pids: list[int] = []
    if mirror is not None:
        mirror.pids = lambda: [p for root in pids for p in process_tree(root)]
    with SignalForwarder(progress=progress) as signals:
        try:
            code, sig = run_trainer(argv, mirror=mirror, interval=opts.interval,
                                    progress=progress, on_start=pids.append,
                                    signals=signals, view=view)
        finally:
            view.close()
        signals.finishing = True
        if mirror is not None:
            signals.uploading = lambda: mirror.uploading
            finish_mirror(mirror, interval=opts.interval, progress=progress)
    return code, sig


def take_lease(remote: Remote, opts: LaunchOptions, *, progress: Progress):
    """One writer per checkpoint folder (:mod:`..checkpoints.lease`); LockedError (exit 8)
    names the holder when another launch holds ``--weights``."""
    from ..checkpoints.lease import FolderLease, LeaseTiming

    lease = FolderLease(remote, timing=opts.lease_timing or LeaseTiming(),
                        on_note=progress.on_event)
    lease.acquire(take_over=opts.take_over or opts.force_take_over,
                  force=opts.force_take_over)
    progress.on_event(f"leased {remote.address} for this launch (owner {lease.me.owner} on "
                 f"{lease.me.host}); another launch on it stops until this one ends")
    return lease


def _lease_lost(mirror: Optional[Mirror], why: str, progress: Progress) -> None:
    """Another launch took the folder over: stop writing into it (training goes on)."""
    if mirror is not None:
        mirror.stopped = why
    progress.on_warning(f"lease on the checkpoint folder lost: {why}; this launch no longer mirrors"
                  + (f" (its checkpoints stay in {mirror.watch_dir})" if mirror else ""))
