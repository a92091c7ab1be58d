"""The one-command pipeline: convert -> shard -> configs -> check.

Also the pipelines for the single steps (``convert_dataset``, ``shard_dataset``,
``make_configs``), so the CLI, the Python API (:mod:`drivesync.api`, which
builds the options from keyword arguments) and ``drivesync demo`` run the same
code. Each takes its :mod:`.options` and returns an :class:`~drivesync.outcome.Outcome`
that carries only what the run did; bad items do not raise (they are in the
report and in ``problems``) - callers turn ``result.ok`` into an exit code.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any, List, Optional, Sequence, Tuple, Union

from ..errors import DatasetError, NotFound, UsageError
from ..outcome import Outcome
from ..progress import NULL_PROGRESS, Progress
from .apply import Apply, apply_for
from .check import check_dataset
from .configs import ConfigOptions, ConfigResult, check_root, default_root, write_configs
from .formats import formats_found, get_format
from .items import Conversion, ConvertOptions, Counts, hashes_images, load_classes
from .manifest import load_manifest
from .names import ascii_names as _ascii_names
from .names import display, safe_stem
from .options import PrepareOptions
from .output import MODES, ShardResult
from .pairs import shard_yolo
from .report import NOTE, Report
from .shard import write_shards

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class PrepareResult(Outcome):
    """What a run did (where, how many, which files); ``to_dict()`` is the ``--json`` summary.

    ``problems`` are the skipped items and boxes (and what the check found),
    one line each as the report writes them; ``warnings`` are said in the
    summary too (most images without a label); notes stay in the report.
    """

    src: str = ""           # what was read and where it went (absolute)
    out: str = ""
    dataset: str = ""
    name: str = ""
    format: str = ""
    mode: str = ""          # as carried out: a link across file systems is a copy
    images: int = 0
    boxes: int = 0
    classes: List[str] = field(default_factory=list)
    shards: int = 0
    placed: int = 0
    kept: int = 0
    recovered: int = 0
    skipped_items: int = 0
    skipped_boxes: int = 0
    dropped_boxes: int = 0
    difficult_skipped: int = 0
    ignored_boxes: int = 0
    notes: int = 0
    check_problems: int = 0
    train: int = 0
    valid: int = 0
    root: str = ""
    report_path: Optional[str] = None
    manifest_path: Optional[str] = None
    config_files: List[str] = field(default_factory=list)
    background: int = 0  # images that ended with an empty label (no object)
    report: Report = field(default_factory=Report, repr=False)

    def to_dict(self) -> dict:
        d = Outcome.to_dict(replace(self, report=Report()))  # the report is a file of its own
        d.pop("report")
        d["num_classes"] = len(self.classes)
        return d


def _name(src: str, name: Optional[str]) -> str:
    if name:
        if name != safe_stem(name) or name.isdigit():
            raise UsageError(
                f"--name {name!r}: use letters, digits, '.', '_' or '-' (not only digits)"
            )
        return name
    base = os.path.basename(os.path.abspath(src).rstrip(os.sep))
    if os.path.isfile(src):
        base = os.path.basename(os.path.dirname(os.path.abspath(src))) or base
    n = safe_stem(base)
    return "dataset" if n.isdigit() or n in ("images", "labels") else n


def _inside(child: str, parent: str) -> bool:
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _validate(src: str, out: str, fmt: str, mode: str) -> None:
    folder_only = get_format(fmt).folder_only
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not os.path.exists(src):
        raise NotFound(f"{display(src)}: no such file or folder")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UsageError(f"the output {display(out)} is a file, not a folder: give a folder "
                         "(it is created if missing)")
    if os.path.isfile(src) and folder_only:
        raise UsageError(f"{display(src)}: for --format {fmt}, SRC is the dataset's folder")
    tree = os.path.dirname(src) if os.path.isfile(src) else src  # a COCO json: its folder
    if _inside(out, tree):
        raise UsageError(
            f"the output {display(out)} is inside the source {display(tree)}: drivesync "
            "would write (or, with --mode move, move files) into the tree it reads; "
            "choose an output folder outside it"
        )
    if _inside(tree, out):
        raise UsageError(f"the source {display(tree)} is inside the output {display(out)}")


def _what(fmt: str) -> str:
    return get_format(fmt).what or f"{fmt} files"


def _check_format(src: str, fmt: str, *, verb: str = "") -> None:
    """Stop before writing when SRC holds no files of ``fmt`` but another format's.

    (``--format yolo`` on a VOC folder would make every image a background image.)
    """
    format_ = get_format(fmt)
    if format_.detect(src):
        return
    others = [f for f in formats_found(src) if f != fmt]
    what = _what(fmt)
    lead = f"no {what[2:] if what.startswith('a ') else what} found"  # no (a) COCO JSON
    if not others:
        if format_.required:
            raise DatasetError(f"{display(src)}: {lead} ({format_.required})")
        return
    seen = "; ".join(_what(f) for f in others)
    fits = " or ".join(f"--format {f}" for f in others)
    if verb == "shard":     # shard has no --format: it takes YOLO pairs, so name the way there
        raise DatasetError(f"{display(src)}: {lead}; shard takes a YOLO folder (image + .txt "
                           f"pairs), but it holds {seen}: run `drivesync prepare` (or "
                           f"`drivesync convert` first) with {fits}")
    raise DatasetError(f"{display(src)}: {lead} for --format {fmt}, but it holds {seen}: "
                       f"use {fits}")


_LISTS = ("classes.txt", "train.txt", "valid.txt")


def _count_background(run: _Run, res: PrepareResult) -> None:
    """Count images whose label is empty; warn in the summary when they are most."""
    labels = empty = 0
    try:
        folders = [e.path for e in os.scandir(run.dataset) if e.is_dir() and e.name.isdigit()]
    except OSError:
        return
    for folder in folders or [run.dataset]:  # shards, or convert's flat folder
        with os.scandir(folder) as it:
            for e in it:
                if (e.name.endswith(".txt") and e.name not in _LISTS and e.is_file()):
                    labels += 1
                    empty += e.stat().st_size == 0
    res.background = empty
    if labels and empty * 2 > labels:
        res.warn("", f"{empty} of {labels} images have no label (background images): check "
                 f"--format {run.fmt} and --classes; the report lists why")


@dataclass(frozen=True)
class _Run:
    """One run's inputs as resolved before anything is written (absolute paths, the
    name, the mode carried out, the class list): what the steps read. The result
    records the same values for the caller; nothing reads them back from it."""

    src: str
    out: str
    name: str
    dataset: str
    fmt: str
    mode: str
    names: Optional[List[str]]
    options: PrepareOptions
    ap: Apply


def _begin(src: PathLike, out: PathLike, options: PrepareOptions, *, flat: bool = False,
           verb: str = "") -> Tuple[_Run, PrepareResult]:
    """Check the arguments (before anything is written); start the run and its result."""
    src, out = os.path.abspath(os.fspath(src)), os.path.abspath(os.fspath(out))
    mode, fmt = options.shard.mode, options.fmt
    _validate(src, out, fmt, mode)
    _check_format(src, fmt, verb=verb)
    name = (os.path.basename(out) or "dataset") if flat else _name(src, options.shard.name)
    names = load_classes(options.classes, options.classes_file)
    linked_across = mode == "link" and not _same_filesystem(src, out)
    mode = "copy" if linked_across else mode
    dataset = out if flat else os.path.join(out, name)
    res = PrepareResult(src=src, out=out, dataset=dataset, name=name, format=fmt, mode=mode,
                        dry_run=options.dry_run)
    if linked_across:  # say so, and copy as a copy: with md5s a re-run can see a change
        res.report.add(display(src), "", "hard links cannot cross file systems (SRC and OUT "
                       "are on different ones): copying instead", skipped=NOTE)
    ap = apply_for(out, mode, res.report, dry_run=options.dry_run)
    return _Run(src, out, name, dataset, fmt, mode, names, options, ap), res


def _same_filesystem(src: str, out: str) -> bool:
    """Whether a hard link from ``src`` into ``out`` (or its nearest existing parent) can work."""
    probe = out
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        return os.stat(src).st_dev == os.stat(probe).st_dev
    except OSError:
        return True  # let the run report the missing folder in its own words


def convert(
    src: PathLike,
    *,
    fmt: str,
    report: Report,
    progress: Progress = NULL_PROGRESS,
    **options: Any,
) -> Conversion:
    """Read a dataset in any registered format into items (nothing is written).

    ``options`` are :class:`ConvertOptions` fields: ``lazy`` makes ``items`` a
    key-sorted stream where the converter can (YOLO); ``hash_images=False``
    leaves image md5s "" (see :func:`hashes_images`)."""
    return get_format(fmt).convert(os.fspath(src), ConvertOptions(**options), report, progress)


def _fill(res: PrepareResult, conv: Conversion, sh: ShardResult) -> None:
    c: Counts = conv.counts
    res.boxes, res.dropped_boxes = c.boxes, c.dropped
    res.difficult_skipped, res.ignored_boxes = c.difficult, c.ignored
    res.classes = list(conv.classes)
    res.shards, res.placed, res.kept = sh.shards, sh.placed, sh.kept
    res.recovered += sh.recovered
    res.manifest_path = sh.manifest
    res.images = sh.kept + sh.placed


def _finish(res: PrepareResult, ap: Apply) -> PrepareResult:
    """Count what the report holds, write it, and make the outcome's problems of it."""
    s = res.report.summary()
    res.skipped_items, res.skipped_boxes, res.notes = (
        s["skipped_items"],
        s["skipped_boxes"],
        s["notes"],
    )
    res.problems = res.report.failures()
    res.report_path = ap.write_report()
    return res


def _place(run: _Run, res: PrepareResult, *, max_files: Optional[int],
           progress: Progress) -> Tuple[Conversion, ShardResult]:
    """Convert and shard (``max_files=None``: one flat folder); the step every verb shares.

    A format of image + label pairs into shards takes the fast path (validated
    and placed pair by pair, in parallel); everything else is converted first,
    then written. A dry run takes the same path: ``ap`` is what writes nothing.
    """
    ap, names = run.ap, run.names
    if get_format(run.fmt).pairs and max_files is not None:
        sh, conv = shard_yolo(run.src, ap, name=run.name, classes=names, max_files=max_files,
                              progress=progress)
        _fill(res, conv, sh)
        return conv, sh
    res.recovered = ap.recover(progress)
    m = load_manifest(run.out)
    conv = get_format(run.fmt).convert(run.src, replace(
        run.options.convert,
        classes=names,
        base_classes=m.classes if (m is not None and names is None) else [],
        moved=set(m.entries) if m is not None else set(),
        lazy=True,  # a converter that can stream does (YOLO); the others return a list
        hash_images=hashes_images(run.mode),
    ), res.report, progress)
    sh = write_shards(
        conv.items, ap, name=run.name, classes=lambda: conv.classes, max_files=max_files,
        flat=max_files is None, progress=progress,
        # converters that return a list know their count: the bar gets a total
        total=conv.expected or (len(conv.items) if isinstance(conv.items, list) else None),
    )
    _fill(res, conv, sh)
    return conv, sh


def prepare(src: PathLike, out: PathLike, options: PrepareOptions, *,
            progress: Progress = NULL_PROGRESS) -> PrepareResult:
    """Convert ``src`` and write a Colab-ready, sharded YOLO dataset to ``out/NAME``.

    Image names that are valid UTF-8 are kept; ``options.shard.ascii_names``
    folds them to ASCII. (``drivesync.prepare`` takes the same as keywords.)
    """
    run, res = _begin(src, out, options)
    ap = run.ap
    check_root(options.configs.root or default_root(run.name))
    max_files = options.shard.max_files
    with ap.lock(), _ascii_names(options.shard.ascii_names):
        conv, sh = _place(run, res, max_files=max_files, progress=progress)
        if res.images == 0:
            _nothing_usable(run, res)
        cfg = _configs(ap, name=run.name, classes=conv.classes, options=options.configs,
                       planned=sh.images)
        res.train, res.valid, res.root, res.config_files = cfg.train, cfg.valid, cfg.root, cfg.files
        res.images = cfg.train + cfg.valid
        if options.check:
            _check(run, res, max_files=max_files, nc=len(conv.classes), progress=progress)
        ap.read_back(lambda: _count_background(run, res))
        return _finish(res, ap)


def _nothing_usable(run: _Run, res: PrepareResult) -> None:
    first = res.report.problems[0].line() if res.report.problems else ""
    raise DatasetError(
        f"{display(run.src)}: no usable {run.fmt} images found"
        + (f" ({len(res.report.problems)} problems, first: {first})" if first else "")
    )


def _check(run: _Run, res: PrepareResult, *, max_files: int, nc: int,
           progress: Progress) -> None:
    """Check what was written (a dry run wrote nothing to check) and add what it found."""
    chk = run.ap.read_back(lambda: check_dataset(run.out, name=run.name, max_files=max_files,
                                                 nc=nc, progress=progress))
    if chk is not None:
        res.boxes = chk.boxes  # every box in the dataset, kept items' included
        res.check_problems = sum(1 for p in chk.report.problems if p.skipped != NOTE)
        res.report.extend(chk.report)


def make_configs(
    out: PathLike,
    options: ConfigOptions = ConfigOptions(),
    *,
    name: Optional[str] = None,
    classes: Optional[Sequence[str]] = None,
    dry_run: bool = False,
) -> ConfigResult:
    """Write the configs for the images the manifest in ``out`` records."""
    out = os.path.abspath(os.fspath(out))
    if load_manifest(out) is None:
        raise NotFound(
            f"{display(out)}: no manifest.jsonl; run `drivesync shard` or `prepare` first"
        )
    ap = apply_for(out, "link", Report(), dry_run=dry_run)
    with ap.lock():
        return _configs(ap, name=name, classes=classes, options=options)


def _configs(
    ap: Apply,
    *,
    name: Optional[str],
    classes: Optional[Sequence[str]],
    options: ConfigOptions,
    planned: Sequence[str] = (),
) -> ConfigResult:
    """Configs for what the manifest records, plus the ``planned`` images (what this run
    placed or kept: already in the manifest, unless the run was a dry one)."""
    m = load_manifest(ap.out)
    images = m.images() if m is not None else []
    if planned:
        images = sorted(set(images).union(planned))
    name = name or (m.name if m else None)
    if not name:
        raise UsageError("give --name")
    names = list(classes) if classes else (m.classes if m else [])
    return write_configs(os.path.join(ap.out, name), name=name, classes=names, images=images,
                         options=options, ap=ap)


def shard_dataset(src: PathLike, out: PathLike, options: PrepareOptions, *,
                  progress: Progress = NULL_PROGRESS) -> PrepareResult:
    """Validate a YOLO folder (image + .txt pairs) and shard it; no configs."""
    run, res = _begin(src, out, options, verb="shard")
    with run.ap.lock(), _ascii_names(options.shard.ascii_names):
        _place(run, res, max_files=options.shard.max_files, progress=progress)
        run.ap.read_back(lambda: _count_background(run, res))
        return _finish(res, run.ap)


def convert_dataset(src: PathLike, out: PathLike, options: PrepareOptions, *,
                    progress: Progress = NULL_PROGRESS) -> PrepareResult:
    """Convert to a flat YOLO folder (``out/<stem>.<ext>`` + ``out/<stem>.txt`` + classes.txt)."""
    run, res = _begin(src, out, options, flat=True)
    with run.ap.lock(), _ascii_names(options.shard.ascii_names):
        conv, _ = _place(run, res, max_files=None, progress=progress)
        run.ap.write(os.path.join(run.out, "classes.txt"),
                     "".join(f"{c}\n" for c in conv.classes))
        run.ap.read_back(lambda: _count_background(run, res))
        return _finish(res, run.ap)
