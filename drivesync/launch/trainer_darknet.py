"""AlexeyAB/pjreddie darknet as a :class:`.trainer.Trainer`.

darknet writes ``NAME_<N>/_last/_best/_final.weights`` into the ``backup =``
folder of its ``.data`` file, every one of one cfg exactly the size the cfg
fixes (:mod:`.darknet_cfg`); a resume passes the checkpoint as the WEIGHTS
argument, and its header's ``seen / batch`` is the iteration it goes on from.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import UsageError
from . import colab, preflight, trainers
from .darknet_cfg import expected_weights_size
from .trainer import Option, Resume, Trainer, given, option
from .weights import DARKNET_SUFFIXES, WeightsInfo, check_darknet

log = logging.getLogger(__name__)

DARKNET_BIN = "/content/darknet/darknet"  # where the notebook's darknet cell puts the build

_CFG = option("--cfg", required=True, help="darknet .cfg file")
_PRETRAINED = option("--pretrained", help="starting weights when the remote has no checkpoint")
_MAP = option("--map", action="store_true", help="pass -map (mAP on the validation set)")


class Darknet(Trainer):
    name = "darknet"
    help = "AlexeyAB/pjreddie darknet"
    example = ("drivesync launch darknet --data obj.data --cfg yolov4.cfg "
               "--pretrained yolov4.conv.137 --weights drive:space_Colab/backup --map -- -gpus 0")
    data_help = "darknet .data file (its backup= is watched)"
    suffixes = DARKNET_SUFFIXES
    log_dialect = "darknet"
    options = (
        _CFG, _PRETRAINED,
        option("--darknet", default="./darknet", metavar="PATH",
               help="the darknet binary (made executable; default ./darknet)"),
        _MAP,
    )
    cell_options = (
        Option("--cfg", {"help": "darknet cfg (a placeholder when missing: a warning)"}),
        option("--pretrained", metavar="WEIGHTS",
               help="darknet: starting weights when no checkpoint exists yet "
                    "(e.g. yolov4-tiny.conv.29)"),
        option("--map", action="store_true", help="darknet: pass --map"),
        option("--darknet", metavar="PATH",
               help="darknet: the binary (default /content/darknet/darknet, which the "
                    "darknet cell builds once and caches on Drive)"),
    )
    cell_placeholders = {"data": "/WORK1/obj.data", "cfg": "/WORK1/yolo.cfg"}

    def __init__(self, opts: Any, **kw: Any):
        super().__init__(opts, **kw)
        self.batch: Optional[int] = None
        self.binary = self.own("darknet", "./darknet")

    @property
    def cfg(self) -> str:
        return self.own("cfg", "")

    def validate(self) -> None:
        if not self.cfg:
            raise UsageError("launch darknet needs --cfg")

    def prepare(self) -> None:
        """The binary runs, the cfg is one darknet accepts, the listed images are there;
        ``backup =`` is on local disk; what a checkpoint's size and batch must be."""
        binary = colab.prepare_darknet(self.binary)
        if binary.gpu is False:
            self.progress.on_warning(f"{binary.path}: {binary.detail}")
        self.binary = str(binary.path)
        preflight.check_darknet_cfg(Path(self.cfg))
        checked = preflight.check_darknet_data(Path(self.opts.data))
        if checked:
            log.info("%d listed dataset files checked: present", checked)
        self.opts = _local_backup(self.opts, progress=self.progress)
        self.batch = trainers.cfg_int(self.cfg, "batch")
        self.expected_size = expected_weights_size(self.cfg)
        if self.expected_size is not None:
            log.info("the cfg makes every checkpoint %d bytes", self.expected_size)
        self.watch_dir(None).mkdir(parents=True, exist_ok=True)

    # ---- resume -------------------------------------------------------------------
    def refuse(self, checkpoint: Any, candidates: list) -> Optional[str]:
        """Truncated by the size the cfg fixes: every darknet checkpoint of one cfg has
        exactly that size, so a smaller file is a rewrite cut short by a kill. Only when
        two files of the family share that smaller size is the computation what is wrong
        (a kill truncates one file, at a random length)."""
        from ..checkpoints.families import FIXED_SIZE_EXTS

        size, expected = checkpoint.entry.size, self.expected_size
        if expected is None or size >= expected or checkpoint.ext not in FIXED_SIZE_EXTS:
            return None
        if any(o is not checkpoint and o.family == checkpoint.family and o.entry.size == size
               for o in candidates):
            return None
        return (f"{size} bytes, but the cfg makes every checkpoint {expected} bytes: "
                "truncated (darknet killed while rewriting it)")

    def check_resume(self, local: Path, checkpoint: Any) -> WeightsInfo:
        info = check_darknet(local, batch=self.batch)
        size = checkpoint.entry.size
        if self.expected_size not in (None, size):
            self.progress.on_warning(
                f"{checkpoint.entry.name} has {size} bytes where the cfg predicts "
                f"{self.expected_size} (another file of that size agrees): trusting the files")
        return info

    def fresh_start(self, skipped: list) -> str:
        none = (f"no whole checkpoint on the remote ({len(skipped)} skipped)" if skipped
                else "no usable checkpoint on the remote")
        pretrained = self.own("pretrained")
        return f"{none}; starting from " + (f"--pretrained {pretrained}" if pretrained
                                            else "scratch (random weights)")

    # ---- the run --------------------------------------------------------------------
    def command(self, resume: Optional[Resume]) -> list[str]:
        """``DARKNET detector train DATA CFG WEIGHTS``: the checkpoint, else --pretrained."""
        weights = str(resume.local) if resume else self.own("pretrained")
        return trainers.darknet_command(darknet=self.binary, data=self.opts.data, cfg=self.cfg,
                                        weights=weights, map=bool(self.own("map")),
                                        extra=self.opts.extra)

    def watch_dir(self, resume: Optional[Resume]) -> Path:
        return trainers.backup_dir(self.opts.data)

    def check_mirror(self, snapshot: Path) -> WeightsInfo:
        return check_darknet(snapshot, batch=self.batch)

    def best_metric(self, view: Any) -> Callable[[Path, str], Optional[tuple]]:
        """darknet forgets its best when it restarts: the mAP of its "New best mAP!" line."""

        def metric(snapshot: Path, name: str) -> Optional[tuple]:
            p = view.progress
            return (f"mAP@{p.map_iou}", p.best_map) if p.best_map is not None else None

        return metric

    def extras(self) -> list[tuple[Path, str]]:
        """``chart.png`` and ``chart_<cfg>.png``: written into its cwd (built with OpenCV)."""
        cwd = Path.cwd()
        stem = Path(self.cfg).stem
        return [(cwd / "chart.png", "chart.png"), (cwd / f"chart_{stem}.png", f"chart_{stem}.png")]

    # ---- the notebook ------------------------------------------------------------------
    @classmethod
    def cell_launch_args(cls, args: Any) -> list[str]:
        out = ["--cfg", given(args, "cfg") or cls.cell_placeholders["cfg"],
               "--darknet", given(args, "darknet") or DARKNET_BIN]
        if given(args, "pretrained"):
            out += ["--pretrained", args.pretrained]
        if given(args, "map"):
            out += ["--map"]
        return out

    @classmethod
    def cells(cls, args: Any, *, install_dir: str) -> list[tuple[str, str]]:
        binary = given(args, "darknet") or DARKNET_BIN
        return [("darknet: the cached build from Drive, else build it once (minutes)",
                 _build_cell(binary, install_dir + "/darknet"))]


def _build_cell(binary: str, cache: str) -> str:
    """Copy the build cached on Drive, else clone and build it once and cache it there."""
    return "\n".join([
        "import os, shutil, subprocess",
        f"BIN, CACHE = {binary!r}, {cache!r}",
        "def runs(path):  # darknet without arguments prints its usage and exits 0",
        "    try:",
        "        r = subprocess.run([path], capture_output=True, timeout=60)",
        "    except (OSError, subprocess.TimeoutExpired):",
        "        return False",
        "    return r.returncode == 0 and b'usage' in (r.stdout + r.stderr)",
        "if not runs(BIN) and os.path.exists(CACHE):",
        "    os.makedirs(os.path.dirname(BIN), exist_ok=True)",
        "    shutil.copy(CACHE, BIN); os.chmod(BIN, 0o755)",
        "    print('darknet: copied the cached build from Drive')",
        "if not runs(BIN):  # first runtime, or the cached build no longer runs here",
        "    src = '/content/darknet-src'",
        "    if not os.path.exists(os.path.join(src, 'Makefile')):",
        "        shutil.rmtree(src, ignore_errors=True)  # a clone cut short by a disconnect",
        "        subprocess.run(['git', 'clone', '-q', "
        "'https://github.com/AlexeyAB/darknet', src], check=True)",
        "    subprocess.run(\"sed -i 's/^GPU=0/GPU=1/; s/^CUDNN=0/CUDNN=1/; "
        "s/^OPENCV=0/OPENCV=1/' Makefile && make -j$(nproc) > build.log 2>&1\", "
        "shell=True, cwd=src, check=True)",
        "    os.makedirs(os.path.dirname(BIN), exist_ok=True)",
        "    shutil.copy(os.path.join(src, 'darknet'), BIN)",
        "    assert runs(BIN), 'darknet built but does not run: see ' + os.path.join(src, "
        "'build.log')",
        "    os.makedirs(os.path.dirname(CACHE), exist_ok=True)",
        "    shutil.copy(BIN, CACHE)",
        "    print('darknet: built with GPU=1 CUDNN=1 OPENCV=1, cached on Drive for the next "
        "runtime')",
        "print('darknet ready:', BIN)",
    ]) + "\n"


def _inside(path: Path, folders: list) -> bool:
    real = os.path.realpath(path)
    for f in folders:
        if f is None:
            continue
        top = os.path.realpath(f)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False


def _local_backup(opts: Any, *, progress: Any) -> Any:
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
