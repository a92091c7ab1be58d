"""Training configs: obj.names, obj.data, train.txt/valid.txt, data.yaml and a patched darknet cfg.

Every image is listed by its absolute path under ``root`` (default
``/WORK1/<NAME>``), the folder that on Colab is linked to the Drive copy of
``OUT/NAME``; the same files therefore work on the desktop (link /WORK1 there
too) and on Colab. data.yaml is written by hand (no PyYAML dependency).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import DatasetError, UsageError
from ..outcome import Outcome
from .apply import Apply
from .names import display
from .report import Report

log = logging.getLogger(__name__)


def default_root(name: str) -> str:
    return f"/WORK1/{name}"


def check_root(root: str) -> str:
    """Refuse roots that would silently break training."""
    root = root.rstrip("/") or "/"
    if any(c.isspace() for c in root):
        # darknet's option parser strips every blank from obj.data lines
        raise UsageError(f"--root {root!r} contains whitespace; darknet cannot read such paths")
    if "images" in root.split("/"):
        # Ultralytics finds labels by replacing /images/ with /labels/ in the image path
        raise UsageError(
            f"--root {root!r} contains a folder called 'images'; Ultralytics would look "
            "for the labels under 'labels/' instead of beside the images"
        )
    return root


def split_images(
    images: Sequence[str], *, val_fraction: float = 0.1, seed: int = 0
) -> Tuple[List[str], List[str]]:
    """(train, valid): a seeded split of exactly round(n * val_fraction) validation images.

    Images are ranked by md5(seed, path), so the split does not depend on the
    input order, and an image keeps its side as long as the others stay.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"--val-fraction must be in [0, 1), not {val_fraction}")
    ranked = sorted(
        images,
        key=lambda p: hashlib.md5(f"{seed}\0{p}".encode("utf-8", "surrogateescape")).hexdigest(),
    )
    n_val = int(round(len(ranked) * val_fraction))
    if val_fraction > 0 and n_val == 0 and len(ranked) >= 2:
        n_val = 1
    valid = set(ranked[:n_val])
    return [p for p in sorted(images) if p not in valid], sorted(valid)


def yaml_quote(s: str) -> str:
    """A double-quoted YAML scalar (JSON string escapes are valid YAML escapes)."""
    return json.dumps(s, ensure_ascii=True)


def data_yaml(root: str, classes: Sequence[str]) -> str:
    lines = [
        "# written by drivesync; Ultralytics: yolo train data=data.yaml",
        f"path: {yaml_quote(root)}",
        "train: train.txt",
        "val: valid.txt",
        f"nc: {len(classes)}",
        "names:",
    ]
    lines += [f"  {i}: {yaml_quote(n)}" for i, n in enumerate(classes)]
    return "\n".join(lines) + "\n"


def obj_data(root: str, n_classes: int, *, backup: Optional[str] = None) -> str:
    return (
        f"classes = {n_classes}\ntrain = {root}/train.txt\nvalid = {root}/valid.txt\n"
        f"names = {root}/obj.names\nbackup = {backup or root + '/backup'}\n"
    )


_SECTION = re.compile(r"^\s*\[([^\]]+)\]")
CFG_KEY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def cfg_sections(lines: List[str]) -> List[Tuple[str, int, int]]:
    """(name, first line index, end index exclusive) for each [section]."""
    heads = [
        (m.group(1).strip().lower(), i)
        for i, line in enumerate(lines)
        if (m := _SECTION.match(line))
    ]
    return [
        (n, i, heads[k + 1][1] if k + 1 < len(heads) else len(lines))
        for k, (n, i) in enumerate(heads)
    ]


def _get(lines: List[str], start: int, end: int, key: str) -> Optional[str]:
    for line in lines[start + 1 : end]:
        m = CFG_KEY.match(line.split("#", 1)[0])
        if m and m.group(1) == key:
            return m.group(2)
    return None


def _set(lines: List[str], start: int, end: int, key: str, value: object) -> int:
    """Set ``key=value`` in the section; returns how many lines were inserted (0 or 1)."""
    for i in range(start + 1, end):
        m = CFG_KEY.match(lines[i].split("#", 1)[0])
        if m and m.group(1) == key:
            lines[i] = f"{key}={value}"
            return 0
    lines.insert(start + 1, f"{key}={value}")
    return 1


def default_max_batches(classes: int, train_images: int = 0) -> int:
    """AlexeyAB's rule: classes x 2000, not less than the training images, nor 6000."""
    return max(6000, 2000 * classes, train_images)


def check_darknet_net(net: Dict[str, Optional[str]], *, source: str = "cfg",
                      only: Optional[set] = None) -> None:
    """Refuse [net] values darknet refuses for training, saying why (``only``: the
    rules touching these keys)."""
    only = only or {"batch", "subdivisions", "width", "height"}

    def num(key: str, default: int) -> int:
        raw = net.get(key)
        try:
            return int(raw) if raw is not None else default
        except ValueError:
            raise DatasetError(f"{source}: [net] {key}={raw!r} is not an integer") from None

    if net.get("batch") is None or not only & {"batch", "subdivisions"}:
        net = {k: v for k, v in net.items() if k not in ("batch", "subdivisions")}
    batch, subdivisions = num("batch", 2), num("subdivisions", 1)
    if batch < 1 or subdivisions < 1:
        raise DatasetError(f"{source}: batch={batch} subdivisions={subdivisions}: both must be "
                           "at least 1")
    if batch % subdivisions:
        raise DatasetError(
            f"{source}: batch={batch} is not divisible by subdivisions={subdivisions}: darknet "
            "loads batch/subdivisions images per step and drops the rest; pick a batch that "
            "is a multiple of subdivisions (e.g. batch=64 subdivisions=16)")
    if batch == 1:
        raise DatasetError(
            f"{source}: batch=1 subdivisions={subdivisions}: darknet refuses to train with "
            "'You set incorrect value batch=1 for Training!'; use batch=2 or more "
            "(64 on a GPU)")
    for key in sorted(only & {"width", "height"}):
        value = num(key, 416)  # darknet's default
        if value <= 0 or value % 32:
            raise DatasetError(
                f"{source}: {key}={value} is not a multiple of 32: YOLO downsamples by 32, "
                f"so darknet mis-sizes its layers; use {max(32, round(value / 32) * 32)}")


def patch_darknet_cfg(
    text: str,
    *,
    classes: int,
    batch: Optional[int] = None,
    subdivisions: Optional[int] = None,
    width: Optional[int] = None,
    height: Optional[int] = None,
    max_batches: Optional[int] = None,
    burn_in: Optional[int] = None,
    train_images: int = 0,
    source: str = "cfg",
) -> str:
    """Set classes, filters before each [yolo]/[region], max_batches, steps (and optional sizes).

    ``max_batches`` defaults to AlexeyAB's rule: classes x 2000, at least the
    number of training images and at least 6000; ``steps`` are 80 % and 90 % of
    it. Values darknet refuses (or trains badly with) are refused here, with the
    reason, before a GPU hour is spent (:func:`check_darknet_net`).
    """
    if max_batches is None:
        max_batches = default_max_batches(classes, train_images)
    elif max_batches < 1:
        raise DatasetError(f"--max-batches {max_batches}: must be at least 1")
    if burn_in is not None and burn_in < 0:
        raise DatasetError(f"--burn-in {burn_in}: must be 0 or more")
    sizes = {"batch": batch, "subdivisions": subdivisions, "width": width, "height": height}
    given = {k: v for k, v in sizes.items() if v is not None}
    net: Dict[str, object] = {
        "max_batches": max_batches,
        "steps": f"{max(1, int(max_batches * 0.8))},{max(1, int(max_batches * 0.9))}",
        **given,
        **({"burn_in": burn_in} if burn_in is not None else {}),
    }
    lines = text.splitlines()
    changed = 0
    net_done = False
    idx = 0
    while idx < len(secs := cfg_sections(lines)):
        name, start, end = secs[idx]
        idx += 1
        if name in ("net", "network") and not net_done:
            net_done = True
            _patch_net(lines, start, end, net, given=set(given), source=source)
        elif name in ("yolo", "region"):
            _patch_head(lines, name, start, end, classes=classes, source=source)
            changed += 1
    if not changed:
        raise DatasetError(f"{source}: no [yolo] or [region] section found")
    return "\n".join(lines) + "\n"


def _patch_net(lines: List[str], start: int, end: int, values: Dict[str, object], *,
               given: set, source: str) -> None:
    """Set the [net] values; what was asked for must train (the base cfg's own values
    are checked by `drivesync launch`: official cfgs ship in testing mode)."""
    for k, v in values.items():
        end += _set(lines, start, end, k, v)
    if given:
        check_darknet_net({k: _get(lines, start, end, k)
                           for k in ("batch", "subdivisions", "width", "height")},
                          source=source, only=given)


def _patch_head(lines: List[str], name: str, start: int, end: int, *, classes: int,
                source: str) -> None:
    """classes= in a [yolo]/[region] section and filters= in the [convolutional] before it."""
    if name == "yolo":
        mask = _get(lines, start, end, "mask")
        if mask:
            anchors = len([m for m in mask.split(",") if m.strip()])
        else:
            anchors = int(_get(lines, start, end, "num") or 3)
        filters = (classes + 5) * anchors
    else:
        coords = int(_get(lines, start, end, "coords") or 4)
        num = int(_get(lines, start, end, "num") or 5)
        filters = (classes + coords + 1) * num
    _set(lines, start, end, "classes", classes)
    prev = [s for s in cfg_sections(lines) if s[1] < start]
    if not prev or prev[-1][0] != "convolutional":
        raise DatasetError(
            f"{source}: the section before [{name}] at line {start + 1} is not "
            "[convolutional]; cannot set its filters"
        )
    _, cstart, cend = prev[-1]
    _set(lines, cstart, cend, "filters", filters)


@dataclass
class ConfigResult(Outcome):
    """The files written (or, in a dry run, that would be) and the split."""

    files: List[str] = field(default_factory=list)
    train: int = 0
    valid: int = 0
    root: str = ""


@dataclass(frozen=True)
class ConfigOptions:
    """The knobs of the config files, passed as one value from the CLI down to here."""

    root: Optional[str] = None          # default /WORK1/<NAME>
    val_fraction: float = 0.1
    seed: int = 0
    backup: Optional[str] = None        # default <root>/backup
    darknet_cfg: Optional[str] = None   # base .cfg to patch
    batch: Optional[int] = None
    subdivisions: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    max_batches: Optional[int] = None   # default: default_max_batches(classes, train images)
    burn_in: Optional[int] = None


def write_configs(
    dataset: str,
    *,
    name: str,
    classes: Sequence[str],
    images: Sequence[str],
    options: ConfigOptions = ConfigOptions(),
    ap: Optional[Apply] = None,
) -> ConfigResult:
    """Write every config into ``dataset`` (``OUT/NAME``) through ``ap`` (a dry run's
    writes nothing; by default, a real one).

    ``images`` are paths relative to ``dataset`` (``000/a.jpg``).
    """
    o = options
    root, val_fraction, seed, backup, darknet_cfg = (
        o.root, o.val_fraction, o.seed, o.backup, o.darknet_cfg)
    if not classes:
        raise DatasetError("no classes: give --classes or --classes-file")
    root = check_root(root or default_root(name))
    train, valid = split_images(images, val_fraction=val_fraction, seed=seed)
    ap = ap or Apply(dataset, "link", Report())
    res = ConfigResult(train=len(train), valid=len(valid), root=root, dry_run=ap.dry_run)
    cfg_text = None
    if darknet_cfg:
        try:
            with open(darknet_cfg, encoding="utf-8") as f:
                base = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{display(darknet_cfg)}: cannot read darknet cfg: {exc}") from exc
        cfg_text = patch_darknet_cfg(
            base,
            classes=len(classes),
            batch=o.batch,
            subdivisions=o.subdivisions,
            width=o.width,
            height=o.height,
            max_batches=o.max_batches,
            burn_in=o.burn_in,
            train_images=len(train),
            source=display(darknet_cfg),
        )
    files = {
        "obj.names": "".join(f"{c}\n" for c in classes),
        "obj.data": obj_data(root, len(classes), backup=backup),
        "train.txt": "".join(f"{root}/{p}\n" for p in train),
        "valid.txt": "".join(f"{root}/{p}\n" for p in valid),
        "data.yaml": data_yaml(root, classes),
    }
    if cfg_text is not None:
        stem = os.path.splitext(os.path.basename(darknet_cfg or "yolo.cfg"))[0]
        files[f"{stem}-{name}.cfg"] = cfg_text
    for fname, text in files.items():
        path = os.path.join(dataset, fname)
        res.files.append(path)
        ap.write(path, text)
    return res
