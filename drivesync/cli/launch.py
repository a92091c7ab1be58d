"""``drivesync launch darknet|ultralytics`` and ``drivesync colab-cell``."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Optional

from ..config import Settings
from ..errors import NotFound, UsageError
from ..launch.colab import in_colab
from ..launch.runner import DARKNET, ULTRALYTICS, LaunchOptions, LaunchResult, launch
from ..remotes import is_drive_address, parse_address
from . import add_verb
from .context import CliChannel, Context

INSTALL_DIR = "drivesync-install"   # on Drive: the wheel and the cached darknet build
DARKNET_BIN = "/content/darknet/darknet"


class _LaunchChannel(CliChannel):
    """The CLI's channel in launch's style: events as ``drivesync: ...`` lines, each
    flushed at once (the notebook shows them live, between the trainer's lines), and
    the trainer's output on stderr under --json (stdout holds the one JSON document)."""

    def on_event(self, text: str) -> None:
        super().on_event(f"drivesync: {text}")
        self.ctx.out.flush()

    def on_warning(self, text: str) -> None:
        super().on_warning(text)
        self.ctx.err.flush()

    def on_output(self, text: str) -> None:
        stream = self.ctx.err if self.ctx.json else self.ctx.out
        stream.write(text)
        stream.flush()


def _channel(ctx: Context) -> _LaunchChannel:
    """``ctx.progress()`` (its bars) in launch's style."""
    return _LaunchChannel(ctx, ctx.progress())


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
    c.add_argument("--data", help="obj.data or data.yaml (a placeholder when missing: a warning)")
    c.add_argument("--cfg", help="darknet cfg (a placeholder when missing: a warning)")
    c.add_argument("--model", help="ultralytics model (default yolov8n.pt)")
    c.add_argument("--epochs", type=int, help="ultralytics: epochs to train")
    c.add_argument("--pretrained", metavar="WEIGHTS",
                   help="darknet: starting weights when no checkpoint exists yet "
                        "(e.g. yolov4-tiny.conv.29)")
    c.add_argument("--map", action="store_true", help="darknet: pass --map")
    c.add_argument("--root", default="/WORK1",
                   help="the path the dataset's lists point into (default /WORK1)")
    c.add_argument("--stage-dir", metavar="DIR", help="pass --stage-dir to launch")
    c.add_argument("--keep-last", type=int, metavar="N", help="pass --keep-last to launch")
    c.add_argument("--max-bytes", metavar="SIZE", help="pass --max-bytes to launch")
    c.add_argument("--darknet", metavar="PATH",
                   help="darknet: the binary (default /content/darknet/darknet, which the "
                        "darknet cell builds once and caches on Drive)")
    c.add_argument("--take-over", action="store_true",
                   help="pass --take-over to launch (claim the lease of a runtime that is gone)")
    c.add_argument("--upload", action="store_true",
                   help="put this drivesync as a wheel on Drive (REMOTE's top folder, "
                        f"{INSTALL_DIR}/), where cell 1 installs it from")
    c.add_argument("--repo-url", metavar="URL",
                   help="install drivesync from this git repository instead of the wheel on Drive")
    c.add_argument("extra", nargs="*", metavar="-- EXTRA",
                   help="arguments passed to the trainer unchanged (after --)")
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
        take_over=args.take_over, force_take_over=args.force_take_over,
        verbose=bool(getattr(args, "verbose", 0)))
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
    result = launch(opts, settings=ctx.settings, progress=_channel(ctx))
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


_DARKNET_ONLY = ("cfg", "pretrained", "map", "darknet")
_ULTRALYTICS_ONLY = ("model", "epochs")


def _ipython_shell_quote(arg: str) -> str:
    """Quote for the shell, then escape what IPython's ``!`` line would expand
    (``$name``, ``{expr}``): ``$$`` and ``{{``/``}}`` are its literal forms."""
    return shlex.quote(arg).replace("$", "$$").replace("{", "{{").replace("}", "}}")


def check_cell_args(args) -> list[str]:
    """Options that do not apply to the trainer are refused; returns placeholder warnings."""
    wrong = _ULTRALYTICS_ONLY if args.trainer == DARKNET else _DARKNET_ONLY
    given = [k for k in wrong if getattr(args, k, None) not in (None, False)]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{flags}: not an option of `launch {args.trainer}`")
    warnings = []
    needed = ("data", "cfg") if args.trainer == DARKNET else ("data",)
    for k in needed:
        if not getattr(args, k, None):
            warnings.append(f"--{k} not given: the cell holds the placeholder "
                            f"{_placeholder(args.trainer, k)}; edit it or pass --{k}")
    return warnings


def _placeholder(trainer: str, key: str) -> str:
    if key == "cfg":
        return "/WORK1/yolo.cfg"
    return "/WORK1/obj.data" if trainer == DARKNET else "/WORK1/data.yaml"


def _mounted(address: str, settings: Settings) -> str:
    """Where a ``drive:`` folder appears under the Colab mount."""
    addr = parse_address(address)
    raw = addr.path if addr.is_drive else settings.folder
    return f"/content/drive/MyDrive/{raw.strip('/')}"


def install_folder(args, settings: Settings) -> str:
    """``drive:<top folder of --weights>/drivesync-install``: where the wheel goes."""
    weights = getattr(args, "weights", None)
    addr = parse_address(weights) if weights else None
    top = (addr.path.strip("/").split("/", 1)[0] if addr and addr.is_drive else "") \
        or settings.folder
    return f"drive:{top}/{INSTALL_DIR}"


def launch_command(args) -> list[str]:
    cmd = ["drivesync", "launch", args.trainer]
    if args.trainer == DARKNET:
        cmd += ["--data", args.data or _placeholder(DARKNET, "data"),
                "--cfg", args.cfg or _placeholder(DARKNET, "cfg"),
                "--darknet", getattr(args, "darknet", None) or DARKNET_BIN]
        if getattr(args, "pretrained", None):
            cmd += ["--pretrained", args.pretrained]
        if getattr(args, "map", False):
            cmd += ["--map"]
    else:
        cmd += ["--data", args.data or _placeholder(ULTRALYTICS, "data"),
                "--model", getattr(args, "model", None) or "yolov8n.pt"]
        if getattr(args, "epochs", None):
            cmd += ["--epochs", str(args.epochs)]
    cmd += ["--weights", args.weights]
    if args.dataset:
        cmd += ["--dataset", args.dataset]
    for flag in ("stage_dir", "keep_last", "max_bytes"):
        value = getattr(args, flag, None)
        if value is not None:
            cmd += ["--" + flag.replace("_", "-"), str(value)]
    cmd += ["--root", args.root]
    if getattr(args, "take_over", False):
        cmd += ["--take-over"]
    extra = list(getattr(args, "extra", None) or [])
    return cmd + (["--", *extra] if extra else [])


def _install_cell(args, settings: Settings) -> str:
    repo = getattr(args, "repo_url", None)
    lines = ["from google.colab import drive",
             "drive.mount('/content/drive')  # in the kernel: a `!` subprocess cannot ask",
             "import glob, subprocess, sys"]
    if repo:
        lines += [f"subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', "
                  f"{('git+' + repo)!r}], check=True)"]
    else:
        folder = _mounted(install_folder(args, settings), settings)
        hint = (f"no drivesync wheel in {folder}: run `drivesync colab-cell --upload "
                f"--weights {args.weights}` on your computer first")
        lines += [f"WHEELS = sorted(glob.glob({(folder + '/drivesync-*.whl')!r}))",
                  f"assert WHEELS, {hint!r}",
                  "subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', "
                  "'--force-reinstall', WHEELS[-1]], check=True)"]
    if args.trainer == ULTRALYTICS:
        lines += ["subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 'ultralytics'], "
                  "check=True)"]
    lines += ["print(subprocess.run(['drivesync', '--help'], capture_output=True, "
              "text=True).returncode == 0 and 'drivesync installed')"]
    return "\n".join(lines) + "\n"


def _darknet_cell(args, settings: Settings) -> str:
    binary = getattr(args, "darknet", None) or DARKNET_BIN
    cache = _mounted(install_folder(args, settings), settings) + "/darknet"
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


def colab_cell_text(args, settings: Optional[Settings] = None) -> str:
    """The notebook's cells, with the user's paths filled in; "Run all" on a fresh VM."""
    settings = settings or Settings()
    cells = [("mount Drive in the kernel and install drivesync from it",
              _install_cell(args, settings))]
    if any(is_drive_address(a or "") for a in (args.weights, args.dataset)):
        cells.append(("sign in for the Drive API",
                      "from google.colab import auth\nauth.authenticate_user()\n"))
    if args.trainer == DARKNET:
        cells.append(("darknet: the cached build from Drive, else build it once (minutes)",
                      _darknet_cell(args, settings)))
    cells.append(("stage, resume and train; checkpoints are mirrored to Drive",
                  "!" + " ".join(_ipython_shell_quote(c) for c in launch_command(args)) + "\n"))
    head = ("# drivesync on Colab. After a disconnect the VM is usually new (installs, builds\n"
            "# and /content are gone, Drive stays): use Runtime > Run all.\n"
            "# Every cell is safe to run again.\n")
    return head + "".join(f"\n# --- cell {i}/{len(cells)}: {title} ---\n{body}"
                          for i, (title, body) in enumerate(cells, 1))


def upload_wheel(args, ctx: Context) -> str:
    """Build the running drivesync as a wheel and put it on the remote (older ones go)."""
    import tempfile
    from pathlib import Path

    from ..launch.wheel import build_wheel
    from ..remotes import open_remote

    folder = install_folder(args, ctx.settings)
    with tempfile.TemporaryDirectory(prefix="drivesync-wheel-") as tmp:
        wheel = build_wheel(Path(tmp))
        with open_remote(folder, settings=ctx.settings) as remote:
            new = remote.replace(wheel, wheel.name)
            try:
                for e in remote.list(""):
                    if e.name.startswith("drivesync-") and e.name.endswith(".whl") \
                            and e.name != new.name:
                        remote.delete(e, permanent=True)
            except NotFound:
                pass
    return f"{folder}/{wheel.name}"


def _colab_cell(args, ctx: Context) -> int:
    for w in check_cell_args(args):
        ctx.warn(w)
    uploaded = upload_wheel(args, ctx) if args.upload else None
    if uploaded:
        ctx.say(f"drivesync: uploaded {uploaded}; cell 1 installs it")
    text = colab_cell_text(args, ctx.settings)
    if ctx.json:
        ctx.emit({"cell": text, "uploaded": uploaded})
    else:
        sys.stdout.write(text) if ctx.out is sys.stdout else ctx.out.write(text)
    return 0
