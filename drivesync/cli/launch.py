"""``drivesync launch darknet|ultralytics`` and ``drivesync colab-cell``."""

from __future__ import annotations

import argparse
import posixpath
import shlex
import sys
from typing import Optional

from ..config import DEFAULT_FOLDER, Settings, resolve_settings
from ..errors import NotFound, UsageError
from ..launch.colab import in_colab
from ..launch.registry import TRAINERS, trainer_named
from ..launch.runner import LaunchOptions, LaunchResult, launch
from ..launch.trainer import Option, Trainer, refuse_foreign
from ..remotes import is_drive_address, parse_address
from . import add_verb
from .context import CliChannel, Context

INSTALL_DIR = "drivesync-install"   # on Drive: the wheel and the cached darknet build


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
    """``ctx.progress()``'s bars, with events and output in launch's style."""
    return _LaunchChannel(ctx, ctx.progress().bars)


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
    verbs = p.add_subparsers(dest="trainer", metavar="TRAINER")
    for trainer in TRAINERS.values():
        _register_trainer(verbs, common, trainer)
    p.set_defaults(func=_launch_help(p))
    _register_cell(sub, common)


def _add(parser, options: tuple[Option, ...]) -> None:
    for o in options:
        parser.add_argument(o.flag, **o.spec)


def _register_trainer(verbs, common, trainer: type[Trainer]) -> None:
    """``launch NAME``: --data, the trainer's own options, then the common ones."""
    t = add_verb(verbs, common, trainer.name, help=trainer.help, example=trainer.example)
    t.add_argument("--data", required=True, help=trainer.data_help)
    _add(t, trainer.options)
    _common_launch(t)
    t.set_defaults(func=_launch)


def _register_cell(sub, common) -> None:
    c = add_verb(sub, common, "colab-cell",
                 help="print the notebook cells that install drivesync and launch training",
                 example="drivesync colab-cell --trainer darknet "
                         "--weights drive:space_Colab/backup --dataset drive:space_Colab/data "
                         "--data /WORK1/obj.data --cfg /WORK1/yolo.cfg")
    c.add_argument("--trainer", choices=list(TRAINERS), default="darknet",
                   help="which trainer the cell launches (default darknet)")
    c.add_argument("--weights", metavar="REMOTE",
                   help="checkpoint folder to resume from and mirror to "
                        "(default drive:FOLDER/backup, FOLDER the folder setting, "
                        f"{DEFAULT_FOLDER} unless configured)")
    c.add_argument("--dataset", metavar="REMOTE",
                   help="prepared dataset to stage on the VM's local disk (drive:... or a path)")
    c.add_argument("--data", help="obj.data or data.yaml (a placeholder when missing: a warning)")
    taken = {"data"}
    for trainer in TRAINERS.values():
        _add(c, tuple(o for o in trainer.cell_options if o.dest not in taken))
        taken |= {o.dest for o in trainer.cell_options}
    c.add_argument("--root", default="/WORK1",
                   help="the path the dataset's lists point into (default /WORK1)")
    c.add_argument("--stage-dir", metavar="DIR", help="pass --stage-dir to launch")
    c.add_argument("--keep-last", type=int, metavar="N", help="pass --keep-last to launch")
    c.add_argument("--max-bytes", metavar="SIZE", help="pass --max-bytes to launch")
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
        verbose=bool(getattr(args, "verbose", 0)),
        own={o.dest: getattr(args, o.dest) for o in trainer_named(args.trainer).options})
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


def _ipython_shell_quote(arg: str) -> str:
    """Quote for the shell, then escape what IPython's ``!`` line would expand
    (``$name``, ``{expr}``): ``$$`` and ``{{``/``}}`` are its literal forms."""
    return shlex.quote(arg).replace("$", "$$").replace("{", "{{").replace("}", "}}")


def check_cell_args(args) -> list[str]:
    """Options of another trainer are refused; returns the placeholder warnings."""
    trainer = trainer_named(args.trainer)
    refuse_foreign(trainer, [t for t in TRAINERS.values() if t is not trainer], args)
    return [f"--{k} not given: the cell holds the placeholder {placeholder}; edit it or "
            f"pass --{k}" for k, placeholder in trainer.cell_placeholders.items()
            if not getattr(args, k, None)]


def _mounted(address: str, settings: Settings) -> str:
    """Where a ``drive:`` folder appears under the Colab mount: ``MyDrive/...``, or
    ``Shareddrives/NAME/...`` for a shared drive (``drive:@NAME/...``)."""
    addr = parse_address(address)
    if addr.is_drive and addr.shared_drive:
        return posixpath.join("/content/drive/Shareddrives", addr.shared_drive,
                              (addr.drive_folder or "").strip("/")).rstrip("/")
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
    trainer = trainer_named(args.trainer)
    cmd = ["drivesync", "launch", trainer.name,
           "--data", args.data or trainer.cell_placeholders["data"],
           *trainer.cell_launch_args(args), "--weights", args.weights]
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
    for package in trainer_named(args.trainer).cell_packages:
        lines += [f"subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', {package!r}], "
                  "check=True)"]
    lines += ["print(subprocess.run(['drivesync', '--help'], capture_output=True, "
              "text=True).returncode == 0 and 'drivesync installed')"]
    return "\n".join(lines) + "\n"


def _default_weights(args, settings: Settings) -> None:
    """``--weights`` left out: ``drive:FOLDER/backup`` in the configured top folder."""
    args.weights = args.weights or f"drive:{settings.folder}/backup"


def colab_cell_text(args, settings: Optional[Settings] = None) -> str:
    """The notebook's cells, with the user's paths filled in; "Run all" on a fresh VM."""
    settings = resolve_settings(settings)
    _default_weights(args, settings)
    cells = [("mount Drive in the kernel and install drivesync from it",
              _install_cell(args, settings))]
    if any(is_drive_address(a or "") for a in (args.weights, args.dataset)):
        cells.append(("sign in for the Drive API",
                      "from google.colab import auth\nauth.authenticate_user()\n"))
    install_dir = _mounted(install_folder(args, settings), settings)
    cells += trainer_named(args.trainer).cells(args, install_dir=install_dir)
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
    _default_weights(args, ctx.settings)
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
