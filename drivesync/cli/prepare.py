"""Verbs for datasets: prepare, convert, shard, configs, check."""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Dict, Tuple

from .. import api
from ..config import DEFAULT_MAX_FILES
from ..datasets.formats import FORMATS
from ..datasets.items import load_classes
from ..datasets.output import MODES
from ..datasets.prepare import PrepareResult
from ..datasets.report import NOTE
from ..errors import EXIT_OK, EXIT_PARTIAL
from ..outcome import Outcome
from .context import Context


def _classes(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--classes",
        metavar="A,B,C",
        help="class names in class-id order (others are reported and skipped)",
    )
    g.add_argument("--classes-file", metavar="FILE", help="class names, one per line")


def _convert_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        "-f",
        dest="fmt",
        required=True,
        choices=FORMATS,
        help="annotation format of SRC",
    )
    _classes(p)
    p.add_argument("--keep-difficult", action="store_true", help="VOC: keep difficult=1 objects")
    p.add_argument("--keep-crowd", action="store_true", help="COCO: keep iscrowd annotations")
    p.add_argument(
        "--box",
        choices=("fbox", "vbox", "hbox"),
        default="fbox",
        help="CrowdHuman: full body, visible part or head box (default fbox)",
    )
    p.add_argument(
        "--head-class",
        metavar="NAME",
        help="CrowdHuman: also write heads (from hbox) as class NAME",
    )
    p.add_argument("--images", metavar="DIR", help="CrowdHuman/COCO: folder holding the images")


def _names_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ascii-names", action="store_true",
                   help="transliterate image names to ASCII (街景_01.jpg -> 01.jpg); by "
                        "default valid UTF-8 names are kept, as darknet and Ultralytics read "
                        "them")


def _shard_opts(p: argparse.ArgumentParser, *, mode: bool = True) -> None:
    p.add_argument(
        "--max-files",
        type=int,
        default=DEFAULT_MAX_FILES,
        metavar="N",
        help=f"files per shard folder, images plus labels (default {DEFAULT_MAX_FILES})",
    )
    p.add_argument("--name", help="dataset folder name under OUT (default: SRC's name)")
    if mode:
        p.add_argument(
            "--mode",
            choices=MODES,
            default="link",
            help="link (hard links, copy across filesystems; default), copy, or move "
            "(journaled; the source images are moved)",
        )
    p.add_argument("--dry-run", "-n", action="store_true", help="show the plan, write nothing")
    _names_opt(p)


def _config_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="share of images in valid.txt (default 0.1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the train/valid split (default 0)")
    p.add_argument(
        "--root", metavar="ROOT", help="absolute folder the lists point into (default /WORK1/NAME)"
    )
    p.add_argument("--backup", metavar="DIR", help="darknet backup folder (default ROOT/backup)")
    p.add_argument(
        "--darknet-cfg", metavar="BASE.cfg", help="write a copy patched for these classes"
    )
    for flag in ("batch", "subdivisions", "width", "height"):
        p.add_argument(f"--{flag}", type=int, help=f"darknet cfg: set {flag}=")
    p.add_argument("--max-batches", type=int, metavar="N",
                   help="darknet cfg: training length (default classes x 2000, at least the "
                        "training images and 6000); steps= at 80%% and 90%%")
    p.add_argument("--burn-in", type=int, metavar="N", help="darknet cfg: set burn_in=")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from . import add_verb

    for add in (_add_prepare, _add_convert, _add_shard, _add_configs, _add_check):
        add(lambda *a, **kw: add_verb(sub, common, *a, **kw))


def _add_prepare(verb: Callable[..., argparse.ArgumentParser]) -> None:
    p = verb(
        "prepare",
        drive=False,
        help="convert, shard, write configs and check, in one go",
        example="drivesync prepare VOC2012/ out/ --format voc --classes person,car\n"
        "drivesync prepare CrowdHuman/ out/ -f crowdhuman --head-class head "
        "--darknet-cfg yolov4-tiny.cfg",
    )
    p.add_argument("src", metavar="SRC",
                   help="the dataset to read: a VOC/YOLO folder, a COCO JSON or its folder, "
                        "a CrowdHuman folder")
    p.add_argument("out", metavar="OUT",
                   help="output folder (created if missing); the dataset goes to OUT/NAME")
    _convert_opts(p)
    _shard_opts(p)
    _config_opts(p)
    p.set_defaults(func=cmd_prepare)


def _add_convert(verb: Callable[..., argparse.ArgumentParser]) -> None:
    p = verb(
        "convert",
        drive=False,
        help="convert annotations to a flat YOLO folder",
        example="drivesync convert VOC2012/ yolo/ --format voc\n"
        "drivesync shard yolo/ out/ --name voc",
    )
    p.add_argument("src", metavar="SRC",
                   help="the dataset to read: a VOC/YOLO folder, a COCO JSON or its folder, "
                        "a CrowdHuman folder")
    p.add_argument("out", metavar="OUT",
                   help="output folder for the flat YOLO files (created if missing)")
    _convert_opts(p)
    p.add_argument(
        "--mode",
        choices=("link", "copy"),
        default="link",
        help="how images get into OUT (default link)",
    )
    p.add_argument("--dry-run", "-n", action="store_true", help="show what would be written")
    _names_opt(p)
    p.set_defaults(func=cmd_convert)


def _add_shard(verb: Callable[..., argparse.ArgumentParser]) -> None:
    p = verb(
        "shard",
        drive=False,
        help="split a YOLO folder (image + .txt pairs) into numbered shard folders",
        example=f"drivesync shard flat/ out/ --max-files {DEFAULT_MAX_FILES} --mode move",
    )
    p.add_argument("src", metavar="SRC", help="a YOLO folder: images with .txt labels beside "
                                               "them or in labels/")
    p.add_argument("out", metavar="OUT",
                   help="output folder (created if missing); shards go to OUT/NAME/000, ...")
    _classes(p)
    _shard_opts(p)
    p.set_defaults(func=cmd_shard)


def _add_configs(verb: Callable[..., argparse.ArgumentParser]) -> None:
    p = verb(
        "configs",
        drive=False,
        help="write obj.names, obj.data, train/valid.txt, data.yaml (and a darknet cfg)",
        example="drivesync configs out/ --root /WORK1/voc --darknet-cfg yolov4-tiny.cfg",
    )
    p.add_argument("out", metavar="OUT", help="the output folder prepare or shard wrote")
    p.add_argument("--name", help="dataset folder under OUT (default: from the manifest)")
    _classes(p)
    _config_opts(p)
    p.add_argument("--dry-run", "-n", action="store_true", help="show the split, write nothing")
    p.set_defaults(func=cmd_configs)


def _add_check(verb: Callable[..., argparse.ArgumentParser]) -> None:
    p = verb(
        "check",
        drive=False,
        help="check a sharded dataset before training",
        example="drivesync check out/",
    )
    p.add_argument("out", metavar="OUT", help="the output folder prepare or shard wrote")
    p.add_argument("--name", help="dataset folder under OUT (default: from the manifest)")
    p.add_argument(
        "--max-files",
        type=int,
        metavar="N",
        help=f"shard limit (default: from the manifest, else {DEFAULT_MAX_FILES})",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="also hash every image and compare it with the manifest (reads everything)",
    )
    p.set_defaults(func=cmd_check)


def _summary(ctx: Context, res: PrepareResult, *, verb: str) -> int:
    for warning in res.warnings:  # e.g. most images without a label: not only in the report
        ctx.warn(warning.line())
    if ctx.json:
        ctx.emit({"verb": verb, **res.to_dict(), "warnings": [w.line() for w in res.warnings]})
        return _end(ctx, res, verb=verb)
    what = "would place" if res.dry_run else "placed"
    ctx.say(
        f"{res.name}: {res.images} images, {res.boxes} boxes, {len(res.classes)} classes "
        f"({', '.join(res.classes[:8])}{', ...' if len(res.classes) > 8 else ''})"
        + (f", {res.background} background images" if res.background else ""),
        f"shards: {res.shards} in {res.dataset} ({what} {res.placed}, kept {res.kept}"
        + (f", finished {res.recovered} from an interrupted run" if res.recovered else "")
        + ")",
    )
    if res.train or res.valid:
        ctx.say(f"train.txt: {res.train}, valid.txt: {res.valid} (root {res.root})")
    if res.config_files:
        ctx.say(_wrote(res) + ", ".join(res.config_files))
    dropped = (
        f"{res.dropped_boxes} boxes empty after clipping, "
        f"{res.difficult_skipped} difficult, {res.ignored_boxes} ignore/crowd regions"
    )
    ctx.say(f"skipped: {res.skipped_items} items, {res.skipped_boxes} boxes; dropped: {dropped}")
    _problems(ctx, res)
    if res.report_path:
        ctx.say(f"report: {res.report_path}")
    return _end(ctx, res, verb=verb)


def _end(ctx: Context, res: PrepareResult, *, verb: str) -> int:
    """Skipped input is exit 4 (the problems were shown above, the rest are in the report)."""
    n = len(res.problems)
    more = n - PROBLEMS_SHOWN
    return ctx.finish(res, show=False, message=(
        f"{verb}: some input was skipped ({n} problem{'' if n == 1 else 's'}"
        + (f", {more} more than shown" if more > 0 else "")
        + (f"; all in {res.report_path})" if res.report_path else ")")))


def _wrote(res: Outcome) -> str:
    return "would write " if res.dry_run else "wrote "


def _problems(ctx: Context, res: PrepareResult) -> None:
    """The first problems as warnings, the first notes as chatter; the rest are in the report."""
    for p in res.problems[:PROBLEMS_SHOWN]:
        ctx.warn(p.line())
    notes = [p for p in res.report.problems if p.skipped == NOTE]
    for p in notes[:NOTES_SHOWN]:
        ctx.say("note: " + p.line())
    if len(notes) > NOTES_SHOWN:
        ctx.say(f"note: {len(notes) - NOTES_SHOWN} more notes in the report")


PROBLEMS_SHOWN = 10
NOTES_SHOWN = 5


# argparse dests passed through unchanged, by the option group that defines them
_CONVERT = (
    "classes",
    "classes_file",
    "keep_difficult",
    "keep_crowd",
    "box",
    "head_class",
    "images",
)
_SHARD = ("max_files", "name", "mode", "dry_run", "ascii_names")
_CONFIG = (
    "val_fraction",
    "seed",
    "root",
    "backup",
    "darknet_cfg",
    "batch",
    "subdivisions",
    "width",
    "height",
    "max_batches",
    "burn_in",
)


def _pick(args: argparse.Namespace, *groups: Tuple[str, ...]) -> Dict[str, Any]:
    return {k: getattr(args, k) for group in groups for k in group}


def _say_where(ctx: Context, verb: str, args: argparse.Namespace) -> None:
    """The first line (before the run): what is read and where it is written."""
    ctx.say(f"{verb}: {os.path.abspath(args.src)} -> {os.path.abspath(args.out)}"
            + (" (dry run)" if args.dry_run else ""))


def cmd_prepare(args: argparse.Namespace, ctx: Context) -> int:
    _say_where(ctx, "prepare", args)
    kw = _pick(args, _CONVERT, _SHARD, _CONFIG)
    res = api.prepare(args.src, args.out, fmt=args.fmt, progress=ctx.progress(), **kw)
    return _summary(ctx, res, verb="prepare")


def cmd_convert(args: argparse.Namespace, ctx: Context) -> int:
    _say_where(ctx, "convert", args)
    kw = _pick(args, _CONVERT, ("mode", "dry_run", "ascii_names"))
    res = api.convert(args.src, args.out, fmt=args.fmt, progress=ctx.progress(), **kw)
    return _summary(ctx, res, verb="convert")


def cmd_shard(args: argparse.Namespace, ctx: Context) -> int:
    _say_where(ctx, "shard", args)
    kw = _pick(args, ("classes", "classes_file"), _SHARD)
    res = api.shard(args.src, args.out, progress=ctx.progress(), **kw)
    return _summary(ctx, res, verb="shard")


def cmd_configs(args: argparse.Namespace, ctx: Context) -> int:
    names = load_classes(args.classes, args.classes_file)
    kw = _pick(args, _CONFIG, ("name", "dry_run"))
    res = api.configs(args.out, classes=names, **kw)
    if ctx.json:
        ctx.emit(
            {
                "verb": "configs",
                "ok": True,
                "files": res.files,
                "train": res.train,
                "valid": res.valid,
                "root": res.root,
                "dry_run": res.dry_run,
            }
        )
    else:
        ctx.say(
            f"train.txt: {res.train}, valid.txt: {res.valid} (root {res.root})",
            *[_wrote(res) + f for f in res.files],
        )
    return EXIT_OK


def cmd_check(args: argparse.Namespace, ctx: Context) -> int:
    res = api.check(args.out, name=args.name, max_files=args.max_files, verify=args.verify,
                    progress=ctx.progress())
    problems = [p.line() for p in res.problems]
    notes = [p.line() for p in res.report.problems if p.skipped == NOTE]
    if ctx.json:
        ctx.emit(
            {
                "verb": "check",
                "ok": res.ok,
                "dataset": res.dataset,
                "images": res.images,
                "labels": res.labels,
                "boxes": res.boxes,
                "shards": res.shards,
                "duplicates": res.duplicates,
                "problems": problems,
                "notes": notes,
            }
        )
    else:
        ctx.say(
            f"{res.dataset}: {res.images} images, {res.labels} labels, {res.boxes} boxes, "
            f"{res.shards} shards, {res.duplicates} duplicate images"
        )
        for line in notes:
            ctx.say("  " + line)
        ctx.result(*["  " + line for line in problems])  # the result: printed under -q too
        ctx.say("ok" if res.ok else f"{len(problems)} problems")
    return EXIT_OK if res.ok else EXIT_PARTIAL
