"""`drivesync demo`: the whole loop on a generated dataset, no Google account."""

from __future__ import annotations

from pathlib import Path

from ..errors import DriveSyncError
from . import add_verb


def register(sub, common) -> None:
    p = add_verb(
        sub, common, "demo", drive=False,
        help="run prepare -> push -> pull -> prune -> latest on a sample dataset, offline",
        description="Generate a small VOC dataset, prepare it, push it through the real Drive "
                    "v3 client into an in-process Drive emulator, pull it back as Colab would, "
                    "and prune a checkpoint folder. Needs no Google account.",
        example="drivesync demo\ndrivesync demo --images 200 --latency 0.05 --dir /tmp/d",
    )
    p.add_argument("--dir", type=Path, help="work folder to keep (default: a temp folder, removed)")
    p.add_argument("--images", type=int, default=60, help="sample images to generate (default 60)")
    p.add_argument("--max-files", type=int, default=40, help="files per shard (default 40)")
    p.add_argument("--latency", type=float, default=0.005,
                   help="emulated seconds per Drive request (default 0.005: real Drive's "
                        "~0.05, scaled 10x like the write limit)")
    p.set_defaults(func=run)


def run(args, ctx) -> int:
    from ..demo import run_demo

    if args.images < 1 or args.max_files < 2:
        raise DriveSyncError("--images must be >= 1 and --max-files >= 2")
    result = run_demo(workdir=args.dir, images=args.images, max_files=args.max_files,
                      latency=args.latency, progress=ctx.progress())
    if ctx.json:
        ctx.emit({"ok": result.ok, "workdir": result.workdir, "steps": result.steps})
    else:
        for row in result.steps:
            ctx.say(f"  {row['step']:12} {row['summary']}")
        ctx.say("demo OK: every file arrived once with the right md5" if result.ok
                else "demo FAILED: the pulled dataset differs from the prepared one")
        if args.dir:
            ctx.say(f"files kept in {args.dir}")
    return 0 if result.ok else 1
