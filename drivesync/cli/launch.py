"""``drivesync launch darknet|ultralytics`` and ``drivesync colab-cell``."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Optional

from ..errors import UsageError
from ..launch.colab import in_colab
from ..launch.runner import DARKNET, ULTRALYTICS, LaunchOptions, LaunchResult, launch
from . import add_verb
from .context import Context

REPO_PLACEHOLDER = "https://github.com/YOUR-ACCOUNT/drivesync"


def install_cell(repo_url: Optional[str]) -> str:
    """Cell 1. drivesync is not on PyPI yet: the cell installs from a git repository, and
    without --repo-url it stops with a message saying what to fill in (not a pip error
    about a repository that does not exist)."""
    url = repo_url or REPO_PLACEHOLDER
    lines = ["# drivesync is not on PyPI yet: it is installed from its git repository"]
    if repo_url is None:
        lines.append(f"REPO_URL = {url!r}  # <- REPLACE with the drivesync repository URL")
        lines.append(f"assert REPO_URL != {url!r}, "
                     "'set REPO_URL at the top of this cell to the drivesync git repository'")
    else:
        lines.append(f"REPO_URL = {url!r}")
    lines.append('!pip install -q "git+{REPO_URL}"')
    return "\n".join(lines) + "\n"


class _CliReporter:
    """Prints for the runner: our messages on stdout, the trainer's output as it arrives."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def say(self, message: str) -> None:
        self.ctx.say(f"drivesync: {message}")
        self.ctx.out.flush()

    def warn(self, message: str) -> None:
        self.ctx.warn(message)
        self.ctx.err.flush()

    def output(self, text: str) -> None:
        stream = self.ctx.err if self.ctx.json else self.ctx.out
        stream.write(text)
        stream.flush()


def _common_launch(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("remote and runtime")
    g.add_argument("--weights", metavar="REMOTE",
                   help="checkpoint folder to resume from and mirror to (drive:... or a path)")
    g.add_argument("--dataset", metavar="REMOTE", help="dataset to stage onto local disk")
    g.add_argument("--root", metavar="LINK", default=None,
                   help="root link to create, e.g. /WORK1 "
                        "(default: /WORK1 on Colab, none elsewhere)")
    g.add_argument("--drive-dir", metavar="DIR",
                   help="local folder the root link points at when not staging "
                        "(default on Colab: /content/drive/MyDrive/<top folder>)")
    g.add_argument("--force-link", action="store_true",
                   help="re-point an existing root link (never removes a non-empty folder)")
    g.add_argument("--stage-dir", default="/content/data", metavar="DIR",
                   help="where the dataset is staged (default /content/data)")
    g.add_argument("--no-stage", dest="stage", action="store_false",
                   help="train straight from the Drive mount")
    g.add_argument("--no-mount", dest="mount", action="store_const", const=False, default=None,
                   help="never mount Drive (default: mount on Colab when missing)")
    g.add_argument("--work-dir", default="/content/drivesync", metavar="DIR",
                   help="local folder for resume downloads and mirror snapshots")
    g.add_argument("--interval", type=float, default=5.0, metavar="SEC",
                   help="seconds between looks at the trainer's output folder (default 5)")
    g.add_argument("--take-over", action="store_true",
                   help="claim the --weights folder's lease from a launch that is gone: at once "
                        "when its heartbeat is stale (2 min), else once it has not moved for "
                        "that long (a live holder keeps it)")
    g.add_argument("--force-take-over", action="store_true",
                   help="claim the lease even from a launch whose heartbeat is fresh "
                        "(only when you know that runtime is gone)")
    g = p.add_argument_group("prune while mirroring (off unless one is given)")
    g.add_argument("--keep-last", type=int, metavar="N",
                   help="keep the N newest numbered checkpoints")
    g.add_argument("--keep-every", type=int, metavar="K",
                   help="also keep every K-th iteration/epoch")
    g.add_argument("--max-bytes", metavar="SIZE", help="keep the folder under SIZE (e.g. 5G)")
    p.add_argument("extra", nargs="*", metavar="-- EXTRA",
                   help="arguments passed to the trainer unchanged (after --)")


def register(sub, common) -> None:
    p = add_verb(sub, common, "launch",
                 help="resume training on Colab with checkpoints mirrored to Drive",
                 example="drivesync launch darknet --data /WORK1/obj.data --cfg /WORK1/yolo.cfg "
                         "--weights drive:space_Colab/backup --dataset drive:space_Colab/data\n"
                         "drivesync launch ultralytics --data data.yaml --model yolov8n.pt "
                         "--epochs 50 --weights drive:space_Colab/runs")
    trainers = p.add_subparsers(dest="trainer", metavar="TRAINER")
    d = add_verb(trainers, common, DARKNET, help="AlexeyAB/pjreddie darknet",
                 example="drivesync launch darknet --data obj.data --cfg yolov4.cfg "
                         "--pretrained yolov4.conv.137 --weights drive:space_Colab/backup --map "
                         "-- -gpus 0")
    d.add_argument("--data", required=True, help="darknet .data file (its backup= is watched)")
    d.add_argument("--cfg", required=True, help="darknet .cfg file")
    d.add_argument("--pretrained", help="starting weights when the remote has no checkpoint")
    d.add_argument("--darknet", default="./darknet", metavar="PATH",
                   help="the darknet binary (made executable; default ./darknet)")
    d.add_argument("--map", action="store_true", help="pass -map (mAP on the validation set)")
    _common_launch(d)
    d.set_defaults(func=_launch)
    u = add_verb(trainers, common, ULTRALYTICS,
                 help="Ultralytics YOLOv8/11 (`pip install ultralytics`)",
                 example="drivesync launch ultralytics --data data.yaml --model yolov8n.pt "
                         "--epochs 100 --weights drive:space_Colab/runs -- imgsz=640 batch=16")
    u.add_argument("--data", required=True, help="Ultralytics data.yaml")
    u.add_argument("--model", required=True, help="yolov8n.pt or a model .yaml for a fresh run")
    u.add_argument("--epochs", type=int, help="epochs to train (default: the model's)")
    u.add_argument("--project", help="runs folder (default ./runs/detect)")
    u.add_argument("--name", help="run name (default train)")
    u.add_argument("--save-period", type=int, metavar="N",
                   help="also save epoch<N>.pt every N epochs")
    u.add_argument("--yolo", default="yolo", metavar="CMD", help="the yolo command (default yolo)")
    _common_launch(u)
    u.set_defaults(func=_launch)
    p.set_defaults(func=_launch_help(p))

    c = add_verb(sub, common, "colab-cell",
                 help="print the notebook cells that install drivesync and launch training",
                 example="drivesync colab-cell --trainer darknet "
                         "--weights drive:space_Colab/backup --dataset drive:space_Colab/data "
                         "--data /WORK1/obj.data --cfg /WORK1/yolo.cfg")
    c.add_argument("--trainer", choices=[DARKNET, ULTRALYTICS], default=DARKNET,
                   help="which trainer the cell launches (default darknet)")
    c.add_argument("--weights", default="drive:space_Colab/backup", metavar="REMOTE",
                   help="checkpoint folder to resume from and mirror to "
                        "(default drive:space_Colab/backup)")
    c.add_argument("--dataset", metavar="REMOTE",
                   help="prepared dataset to stage on the VM's local disk (drive:... or a path)")
    c.add_argument("--data", help="obj.data or data.yaml")
    c.add_argument("--cfg", help="darknet cfg")
    c.add_argument("--model", default="yolov8n.pt", help="ultralytics model")
    c.add_argument("--epochs", type=int, help="ultralytics: epochs to train")
    c.add_argument("--pretrained", metavar="WEIGHTS",
                   help="darknet: starting weights when no checkpoint exists yet "
                        "(e.g. yolov4-tiny.conv.29)")
    c.add_argument("--root", default="/WORK1",
                   help="the path the dataset's lists point into (default /WORK1)")
    c.add_argument("--darknet", default="/content/darknet/darknet", metavar="PATH",
                   help="the darknet binary (default /content/darknet/darknet)")
    c.add_argument("--take-over", action="store_true",
                   help="pass --take-over to launch (claim the lease of a runtime that is gone)")
    c.add_argument("--repo-url", metavar="URL",
                   help="git repository pip installs drivesync from (it is not on PyPI yet); "
                        "without it, cell 1 asks you to fill in REPO_URL")
    c.set_defaults(func=_colab_cell)


def _launch_help(p: argparse.ArgumentParser):
    def handler(args, ctx: Context) -> int:
        p.print_help()
        return 2
    return handler


def _policy(args) -> Optional[object]:
    if args.keep_last is None and args.keep_every is None and args.max_bytes is None:
        return None
    from ..checkpoints.policy import PrunePolicy, parse_size

    keep_last = 3 if args.keep_last is None else args.keep_last
    if keep_last < 1:
        raise UsageError("--keep-last must be at least 1 while training (the newest checkpoint "
                         "is what a resume needs)")
    return PrunePolicy(keep_last=keep_last, keep_every=args.keep_every,
                       max_bytes=parse_size(args.max_bytes, what="--max-bytes")
                       if args.max_bytes else None)


def options_from_args(args) -> LaunchOptions:
    root = args.root if args.root is not None else ("/WORK1" if in_colab() else None)
    opts = LaunchOptions(
        trainer=args.trainer, data=args.data, weights=args.weights, dataset=args.dataset,
        root=root or None, drive_dir=args.drive_dir, force_link=args.force_link,
        stage=args.stage, stage_dir=args.stage_dir, mount=args.mount, work_dir=args.work_dir,
        interval=args.interval, policy=_policy(args), extra=tuple(args.extra),
        take_over=args.take_over, force_take_over=args.force_take_over)
    if args.trainer == DARKNET:
        opts.cfg, opts.pretrained, opts.darknet, opts.map = (
            args.cfg, args.pretrained, args.darknet, args.map)
    else:
        opts.model, opts.epochs, opts.project, opts.name = (
            args.model, args.epochs, args.project, args.name)
        opts.save_period, opts.yolo = args.save_period, args.yolo
    if opts.interval <= 0:
        raise UsageError("--interval must be > 0 seconds")
    return opts


def _launch(args, ctx: Context) -> int:
    opts = options_from_args(args)
    result = launch(opts, settings=ctx.settings, reporter=_CliReporter(ctx),
                    progress=ctx.progress())
    _summary(ctx, result)
    return result.exit_code


def _summary(ctx: Context, r: LaunchResult) -> None:
    if ctx.json:
        ctx.emit({"ok": r.exit_code == 0, "exit_code": r.exit_code, "command": r.command,
                  "resumed_from": r.resume.name if r.resume else None,
                  "reached": r.reached, "signal": r.signal,
                  "mirrored": [{"name": m.name, "size": m.size, "md5": m.md5,
                                "copied_from": m.copied_from} for m in r.mirrored],
                  "bytes": r.bytes, "skipped": [list(s) for s in r.skipped]})
        return
    how = f"stopped by signal {r.signal}" if r.signal else f"exit code {r.exit_code}"
    copies = sum(1 for m in r.mirrored if m.copied_from)
    ctx.say(f"drivesync: summary: trainer {how}; reached {r.reached}; "
            f"mirrored {len(r.mirrored)} checkpoint(s)"
            + (f" ({copies} copied on the remote)" if copies else "")
            + f", {r.bytes} bytes uploaded"
            + (f"; resumed from {r.resume.name}" if r.resume else ""))


def colab_cell_text(args) -> str:
    """The cells a user pastes into Colab, with their paths filled in."""
    q = shlex.quote
    cmd = ["drivesync", "launch", args.trainer]
    if args.trainer == DARKNET:
        cmd += ["--data", args.data or "/WORK1/obj.data", "--cfg", args.cfg or "/WORK1/yolo.cfg",
                "--darknet", args.darknet]
        if args.pretrained:
            cmd += ["--pretrained", args.pretrained]
    else:
        cmd += ["--data", args.data or "/WORK1/data.yaml", "--model", args.model]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
    cmd += ["--weights", args.weights]
    if args.dataset:
        cmd += ["--dataset", args.dataset]
    cmd += ["--root", args.root]
    if getattr(args, "take_over", False):
        cmd += ["--take-over"]
    extra = "!pip install -q ultralytics\n" if args.trainer == ULTRALYTICS else ""
    return (
        "# --- cell 1: install (once per runtime) ---\n"
        f"{install_cell(getattr(args, 'repo_url', None))}{extra}"
        "\n# --- cell 2: sign in for the Drive API and mount Drive ---\n"
        "from google.colab import auth, drive\n"
        "auth.authenticate_user()\n"
        "drive.mount('/content/drive')\n"
        "\n# --- cell 3: stage, resume and train (re-run this cell after every disconnect) ---\n"
        "!" + " ".join(q(c) for c in cmd) + "\n")


def _colab_cell(args, ctx: Context) -> int:
    text = colab_cell_text(args)
    if ctx.json:
        ctx.emit({"cell": text})
    else:
        sys.stdout.write(text) if ctx.out is sys.stdout else ctx.out.write(text)
    return 0
