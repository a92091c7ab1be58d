"""One launch: environment -> stage -> resume -> trainer -> mirror -> stop.

The runner prints nothing itself: it reports through the one channel,
:class:`..progress.Progress` (events, warnings; the CLI's prints), and the
trainer's output is passed to ``on_output`` as soon as it arrives, so the
notebook shows it live.
"""

from __future__ import annotations

import codecs
import logging
import os
import posixpath
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..config import Settings
from ..errors import ChecksumMismatch, ConfigError, DriveSyncError, NotFound, UsageError
from ..progress import NULL_PROGRESS, Progress
from ..remotes import is_drive_address, open_remote, parse_address
from ..remotes.base import Remote
from . import colab, preflight, trainers
from .best import pt_best_fitness
from .darknet_cfg import expected_weights_size
from .mirror import Mirror, Mirrored, process_tree
from .trainer_log import TrainerLog
from .weights import (
    DARKNET_SUFFIXES,
    PT_SUFFIXES,
    CheckpointError,
    WeightsInfo,
    check_darknet,
    check_pt,
)

log = logging.getLogger(__name__)

DARKNET, ULTRALYTICS = "darknet", "ultralytics"


@dataclass
class LaunchOptions:
    """Everything ``drivesync launch`` accepts; paths are local unless named remote."""

    trainer: str
    data: str
    cfg: Optional[str] = None               # darknet
    pretrained: Optional[str] = None        # darknet
    darknet: str = "./darknet"
    map: bool = False
    model: Optional[str] = None             # ultralytics
    yolo: str = "yolo"
    epochs: Optional[int] = None
    project: Optional[str] = None
    name: Optional[str] = None
    save_period: Optional[int] = None
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
class Resume:
    name: str
    local: Path
    info: WeightsInfo
    reason: str


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
        if info is None:
            return "no checkpoint yet"
        if info.kind == "darknet":
            return f"iteration {info.iteration}" if info.iteration is not None else \
                f"{info.seen} images seen"
        if info.finished:
            return "the end of training (final weights, optimizer stripped)"
        return info.describe()


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
def _short_of_cfg(c, candidates: list, expected_size: Optional[int]) -> Optional[str]:
    """Why ``c`` is truncated by the size the cfg fixes, or None.

    Every darknet checkpoint of one cfg has exactly the size the cfg computes, so
    a smaller file is a rewrite cut short by a kill. Only when two files of the
    family share that smaller size is the computation what is wrong (a kill
    truncates one file, at a random length).
    """
    from ..checkpoints.families import FIXED_SIZE_EXTS

    size = c.entry.size
    if expected_size is None or size >= expected_size or c.ext not in FIXED_SIZE_EXTS:
        return None
    twins = [o for o in candidates if o is not c and o.family == c.family
             and o.entry.size == size]
    if twins:
        return None
    return (f"{size} bytes, but the cfg makes every checkpoint {expected_size} bytes: "
            "truncated (darknet killed while rewriting it)")


def choose_resume(remote: Remote, *, trainer: str, dest_dir: Path,
                  batch: Optional[int] = None, expected_size: Optional[int] = None,
                  progress: Progress = NULL_PROGRESS) -> tuple[Optional[Resume], list]:
    """Newest complete checkpoint that downloads (md5-verified) and passes its checks.

    One that fails (truncated against the size the cfg fixes, a header that
    disagrees, NaN weights) is skipped, with a warning, for the one before it.
    """
    from ..checkpoints.latest import complete_checkpoints, safe_local_name

    try:
        entries = remote.list("")
    except NotFound:
        return None, []
    suffixes = DARKNET_SUFFIXES if trainer == DARKNET else PT_SUFFIXES
    candidates = [c for c in complete_checkpoints(entries)
                  if c.entry.name.lower().endswith(suffixes)
                  and (trainer == DARKNET or c.role in ("last", "numbered"))]
    skipped: list = []
    dest_dir.mkdir(parents=True, exist_ok=True)
    for c in candidates:
        local = dest_dir / safe_local_name(c.entry.name)
        short = _short_of_cfg(c, candidates, expected_size) if trainer == DARKNET else None
        if short:
            skipped.append((c.entry.name, short))
            progress.on_warning(f"skipping checkpoint {c.entry.name}: {short}")
            continue
        try:
            progress.on_start(files=1, bytes=c.entry.size, desc=c.entry.name)
            try:
                remote.download(c.entry, local, progress=progress)
            finally:
                progress.on_done()
            info = check_darknet(local, batch=batch) if trainer == DARKNET else check_pt(local)
            if trainer == DARKNET and expected_size not in (None, c.entry.size):
                progress.on_warning(f"{c.entry.name} has {c.entry.size} bytes where the cfg "
                                    f"predicts {expected_size} (another file of that size "
                                    "agrees): trusting the files")
        except (CheckpointError, ChecksumMismatch, NotFound) as exc:
            skipped.append((c.entry.name, str(exc)))
            progress.on_warning(f"skipping checkpoint {c.entry.name}: {exc}")
            local.unlink(missing_ok=True)
            continue
        why = "newest complete checkpoint on the remote" if not skipped else \
            f"falling back to the newest one that passed its checks ({len(skipped)} newer skipped)"
        return Resume(name=c.entry.name, local=local, info=info,
                      reason=f"{why}, {c.role}, {info.describe()}"), skipped
    return None, skipped


# ---- the trainer process ---------------------------------------------------------
def _stream(proc: subprocess.Popen, progress: Progress,
            view: Optional[TrainerLog] = None) -> threading.Thread:
    """Pass the trainer's output on as it arrives: whole to the log, condensed to the
    channel (everything with ``view=None`` or a verbose view)."""

    def show(text: str) -> None:
        shown = view.feed(text) if view is not None else text
        if shown:
            progress.on_output(shown)

    def pump() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        while True:
            try:
                block = os.read(fd, 65536)
            except OSError:
                break
            if not block:
                break
            show(decoder.decode(block))
        tail = decoder.decode(b"", final=True)
        if tail:
            show(tail)

    t = threading.Thread(target=pump, name="trainer-output", daemon=True)
    t.start()
    return t


def _trainer_env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SignalForwarder:
    """SIGINT/SIGTERM handling for one launch, from the trainer's start to our exit.

    While the trainer runs, a signal is passed on to it (darknet dies, Ultralytics
    stops) and the launch goes on to mirror the newest checkpoint. Once the
    trainer is gone, a signal stops at once (KeyboardInterrupt, exit 130) unless
    an upload is in flight: then the first only warns that it is being finished
    and a second one stops: the checkpoints already on the remote are complete
    either way.
    """

    def __init__(self, *, progress: Progress = NULL_PROGRESS):
        self.progress = progress
        self.proc: Optional[subprocess.Popen] = None
        self.got: list[int] = []
        self.wake = threading.Event()
        self.finishing = False
        self.uploading: Callable[[], bool] = lambda: False  # the mirror's upload in flight
        self._late = 0
        self._previous: dict = {}

    def __call__(self, signum: int, _frame: object) -> None:
        self.got.append(signum)
        self.wake.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
            return
        if self.finishing:
            self._late += 1
            if self._late >= 2 or not self.uploading():
                raise KeyboardInterrupt
            self.progress.on_warning("finishing the upload of the newest checkpoint; "
                               "signal again to stop now (Drive keeps the complete ones)")

    def __enter__(self) -> SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def first(self) -> Optional[int]:
        return self.got[0] if self.got else None


def run_trainer(argv: list, *, mirror: Optional[Mirror], interval: float, progress: Progress,
                on_start: Callable[[int], None] = lambda pid: None,
                signals: Optional[SignalForwarder] = None,
                view: Optional[TrainerLog] = None) -> tuple[int, Optional[int]]:
    """Start the trainer, mirror while it runs, forward SIGINT/SIGTERM; (code, signal)."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=_trainer_env(), bufsize=0)
    except FileNotFoundError:
        raise ConfigError(f"trainer command not found: {argv[0]}") from None
    except PermissionError:
        raise ConfigError(f"trainer command not executable: {argv[0]}") from None
    on_start(proc.pid)
    pump = _stream(proc, progress, view)
    own = signals is None
    fwd = signals if signals is not None else SignalForwarder(progress=progress)
    fwd.proc = proc
    if own:
        fwd.__enter__()
    try:
        while proc.poll() is None:
            if mirror is not None:
                try:
                    mirror.poll()
                except DriveSyncError as exc:  # a network hiccup must not stop training
                    progress.on_warning(f"mirroring: {exc} (will retry)")
            # wake on a signal, or as soon as the trainer exits (it may die at once)
            until = time.monotonic() + interval
            while proc.poll() is None and not fwd.wake.is_set():
                left = until - time.monotonic()
                if left <= 0:
                    break
                fwd.wake.wait(min(left, 0.1))
            fwd.wake.clear()
        code = proc.wait()
    finally:
        if own:
            fwd.__exit__()
    pump.join(timeout=5)
    if view is not None:
        tail = view.final()
        if tail:
            progress.on_output(tail)
    if code < 0:
        code = 128 - code
    return code, fwd.first


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
def _best_metric(trainer: str, view: TrainerLog) -> Callable[[Path, str], Optional[tuple]]:
    """What a ``_best`` file scored: darknet's mAP from its "New best mAP!" line,
    Ultralytics' best_fitness from the checkpoint itself."""

    def metric(snap: Path, name: str) -> Optional[tuple]:
        if trainer == DARKNET:
            p = view.progress
            return (f"mAP@{p.map_iou}", p.best_map) if p.best_map is not None else None
        value = pt_best_fitness(snap)
        return ("best_fitness", value) if value is not None else None

    return metric


def _extras(opts: LaunchOptions, view: TrainerLog, log_path: Path) -> Callable[[], list]:
    """The log (into ``logs/`` of the checkpoint folder) and darknet's charts
    (``chart.png``, ``chart_<cfg>.png``: written into its cwd, mirrored beside the checkpoints)."""
    cwd = Path.cwd()
    charts = []
    if opts.trainer == DARKNET:
        charts = [(cwd / "chart.png", "chart.png")]
        if opts.cfg:
            stem = Path(opts.cfg).stem
            charts.append((cwd / f"chart_{stem}.png", f"chart_{stem}.png"))

    def files() -> list:
        view.flush()
        return [(log_path, f"logs/{log_path.name}"), *charts]

    return files



def _inside(path: Path, folders: list) -> bool:
    real = os.path.realpath(path)
    for f in folders:
        if f is None:
            continue
        top = os.path.realpath(f)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False


def _local_backup(opts: LaunchOptions, *, progress: Progress) -> LaunchOptions:
    """Point darknet's ``backup =`` at local disk when it would write onto Drive.

    With a checkpoint remote the mirror is what writes to Drive (whole files,
    verified, renamed into place); darknet itself writing into the mount leaves
    a truncated ``_last`` when killed mid-write, and with ``--no-stage`` it
    wrote into the dataset folder, which the next staged launch pulled as data.
    A copy of the .data file with a local ``backup =`` is given to darknet.
    """
    if not opts.weights:
        return opts
    backup = trainers.backup_dir(opts.data)
    on_drive = [opts.mount_point, opts.drive_dir]
    if opts.root and not opts.stage:
        on_drive.append(opts.root)  # the root link points at the Drive folder then
    if opts.stage and not _inside(backup, on_drive):
        return opts
    local = Path(opts.work_dir).absolute() / "backup"
    local.mkdir(parents=True, exist_ok=True)
    text = Path(opts.data).read_text(encoding="utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.split("=", 1)[0].strip() != "backup"]
    data = Path(opts.work_dir).absolute() / Path(opts.data).name
    data.write_text("\n".join(lines + [f"backup = {local}"]) + "\n", encoding="utf-8")
    why = "on the Drive mount" if _inside(backup, on_drive) else "not on local disk (--no-stage)"
    progress.on_event(f"darknet's backup = {backup} is {why}: it writes to {local} instead "
                 f"(via {data}); the mirror copies each whole checkpoint to {opts.weights}")
    return replace(opts, data=str(data))



def _darknet_plan(opts: LaunchOptions, *, resume: Optional[Resume]) -> list:
    weights = str(resume.local) if resume else opts.pretrained
    return trainers.darknet_command(darknet=opts.darknet, data=opts.data, cfg=opts.cfg or "",
                                    weights=weights, map=opts.map, extra=opts.extra)


def _ultralytics_dirs(opts: LaunchOptions) -> tuple[str, str]:
    project = os.path.abspath(opts.project or "runs/detect")
    return project, opts.name or "train"


def launch(opts: LaunchOptions, *, settings: Settings,
           progress: Progress = NULL_PROGRESS) -> LaunchResult:
    """Run one launch to the end; returns the trainer's exit code and a summary."""
    if opts.trainer not in (DARKNET, ULTRALYTICS):
        raise UsageError(f"unknown trainer {opts.trainer!r}")
    if opts.trainer == DARKNET and not opts.cfg:
        raise UsageError("launch darknet needs --cfg")
    remote = open_remote(opts.weights, settings=settings) if opts.weights else None
    lease = None
    mirror: Optional[Mirror] = None
    try:
        if remote is not None:  # first: a held folder stops us before we stage anything
            lease = take_lease(remote, opts, progress=progress)
            lease.start_heartbeat(on_lost=lambda why: _lease_lost(mirror, why, progress))
        staged = prepare_environment(opts, settings=settings, progress=progress)
        batch = expected = None
        if opts.trainer == DARKNET:
            binary = colab.prepare_darknet(opts.darknet)
            if binary.gpu is False:
                progress.on_warning(f"{binary.path}: {binary.detail}")
            opts = replace(opts, darknet=str(binary.path))
            preflight.check_darknet_cfg(Path(opts.cfg or ""))
            checked = preflight.check_darknet_data(Path(opts.data))
            opts = _local_backup(opts, progress=progress)
            watch = trainers.backup_dir(opts.data)
            batch = trainers.cfg_int(opts.cfg or "", "batch")
            expected = expected_weights_size(opts.cfg or "")
            if expected is not None:
                log.info("the cfg makes every checkpoint %d bytes", expected)
            watch.mkdir(parents=True, exist_ok=True)
        else:
            checked = preflight.check_ultralytics_data(Path(opts.data))
        if checked:
            log.info("%d listed dataset files checked: present", checked)
        work = Path(opts.work_dir)
        resume: Optional[Resume] = None
        skipped: list = []
        if remote is not None:
            resume, skipped = choose_resume(remote, trainer=opts.trainer,
                                            dest_dir=work / "resume", batch=batch,
                                            expected_size=expected, progress=progress)
        if resume:
            progress.on_event(f"resuming from {resume.name}: {resume.reason}")
        elif opts.trainer == DARKNET:
            none = (f"no whole checkpoint on the remote ({len(skipped)} skipped)" if skipped
                    else "no usable checkpoint on the remote")
            progress.on_event(f"{none}; starting from "
                         + (f"--pretrained {opts.pretrained}" if opts.pretrained
                            else "scratch (random weights)"))
        else:
            progress.on_event(f"no usable last.pt on the remote; starting from {opts.model}")
        if opts.trainer == DARKNET:
            argv = _darknet_plan(opts, resume=resume)
            check = lambda p: check_darknet(p, batch=batch)  # noqa: E731
            suffixes: tuple = DARKNET_SUFFIXES
        else:
            if resume and resume.info.finished:
                progress.on_event(f"{resume.name} is from a finished run (optimizer stripped): "
                             "nothing to resume")
                return LaunchResult(exit_code=0, command=[], resume=resume, skipped=skipped)
            project, name = _ultralytics_dirs(opts)
            watch = trainers.ultralytics_weights_dir(project=project, name=name)
            if resume and resume.info.save_dir:
                watch = Path(resume.info.save_dir) / "weights"
            argv = trainers.ultralytics_command(
                yolo=opts.yolo, data=opts.data, model=opts.model, epochs=opts.epochs,
                project=project, name=name, save_period=opts.save_period,
                resume_from=resume.local if resume else None, extra=opts.extra)
            check = lambda p: check_pt(p, load=False)  # noqa: E731
            suffixes = PT_SUFFIXES
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        log_path = work / "logs" / f"train-{stamp}.log"
        view = TrainerLog(log_path, kind=opts.trainer, verbose=opts.verbose)
        progress.on_event(f"the trainer's whole output goes to {log_path}"
                     + (f" (mirrored to {opts.weights})" if remote is not None else "")
                     + ("" if opts.verbose else "; here: a summary every 10 s (-v: all of it)"))
        if remote is not None:
            mirror = Mirror(remote, watch_dir=watch, suffixes=suffixes, check=check,
                            snapshot_dir=work / "snapshots", settle_polls=opts.settle_polls,
                            policy=opts.policy, progress=progress, expected_size=expected,
                            best_metric=_best_metric(opts.trainer, view),
                            extras=_extras(opts, view, log_path))
            mirror.stopped = lease.lost if lease is not None else None
            mirror.start()
        progress.on_event("running: " + " ".join(argv))
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
            if mirror is not None:
                finish_mirror(mirror, interval=opts.interval, progress=progress)
        stats = mirror.stats if mirror is not None else None
        return LaunchResult(
            exit_code=code, command=argv, resume=resume, staged=staged, signal=sig,
            skipped=skipped,
            mirrored=list(stats.mirrored) if stats else [],
            bytes=stats.bytes if stats else 0,
            newest=(stats.mirrored[-1] if stats and stats.mirrored else None))
    finally:
        if lease is not None:
            lease.release()
        if remote is not None:
            remote.close()


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
