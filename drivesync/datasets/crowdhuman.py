"""CrowdHuman ``.odgt`` (one JSON object per line) -> items.

Each line has ``ID`` and ``gtboxes``; a box has ``tag`` (``person`` or
``mask``), ``fbox`` (full body), ``vbox`` (visible part) and ``hbox`` (head),
each ``[x, y, w, h]`` in pixels. ``mask`` regions and boxes with
``extra.ignore == 1`` are not objects and are skipped; heads are skipped when
``head_attr.ignore == 1``. Images are ``<ID>.jpg`` in an ``Images`` folder.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Container, List, Optional

from ..errors import UsageError
from ..progress import NULL_PROGRESS, Progress
from .items import (
    IMAGE_EXTS,
    Conversion,
    ConvertOptions,
    Format,
    add_xywh,
    has_files,
    open_image,
    skip_box,
    walk_files,
)
from .report import Report

log = logging.getLogger(__name__)

BOX_KINDS = ("fbox", "vbox", "hbox")


def convert_crowdhuman(
    src: str,
    *,
    report: Report,
    box: str = "fbox",
    head_class: Optional[str] = None,
    images: Optional[str] = None,
    exclude: Optional[str] = None,
    moved: Container[str] = (),
    progress: Progress = NULL_PROGRESS,
    hash_images: bool = True,
) -> Conversion:
    """Every ``*.odgt`` in ``src`` (or ``src`` itself when it is one file)."""
    if box not in BOX_KINDS:
        raise UsageError(f"--box must be one of {', '.join(BOX_KINDS)}, not {box!r}")
    src = os.path.abspath(src)
    if os.path.isfile(src):
        files, root = [src], os.path.dirname(src)
    else:
        files = [p for p in walk_files(src, exclude=exclude) if p.endswith(".odgt")]
        root = src
    image_dir = os.path.abspath(images) if images else _image_dir(root)
    names = ["person"] + ([head_class] if head_class else [])
    conv = Conversion(classes=names)
    progress.on_start(files=len(files), bytes=0, desc="convert")
    for path in files:
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    doc = json.loads(raw.decode("utf-8"))
                    if not isinstance(doc, dict) or not isinstance(doc.get("ID"), str):
                        raise ValueError('expected an object with a string "ID"')
                    gtboxes = doc.get("gtboxes", [])
                    if not isinstance(gtboxes, list):
                        raise ValueError('"gtboxes" is not a list')
                except (ValueError, UnicodeDecodeError) as exc:
                    report.add(path, f"line {lineno}", f"malformed JSON line: {exc}")
                    continue
                _one(
                    root,
                    image_dir,
                    path,
                    lineno,
                    doc["ID"],
                    gtboxes,
                    conv,
                    report,
                    box=box,
                    head=head_class is not None,
                    moved=moved,
                    hash_image=hash_images,
                )
        progress.on_progress(files=1)
    progress.on_done()
    return conv


def _image_dir(root: str) -> str:
    for name in ("Images", "images", "JPEGImages"):
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    return root


def _ignored(b: dict, attr: str) -> bool:
    extra = b.get(attr)
    return isinstance(extra, dict) and extra.get("ignore") == 1


def _one(
    root: str,
    image_dir: str,
    path: str,
    lineno: int,
    image_id: str,
    gtboxes: List[Any],
    conv: Conversion,
    report: Report,
    *,
    box: str,
    head: bool,
    moved: Container[str],
    hash_image: bool = True,
) -> None:
    image = os.path.join(image_dir, image_id + ".jpg")
    if not os.path.exists(image):
        for ext in IMAGE_EXTS:
            if os.path.exists(os.path.join(image_dir, image_id + ext)):
                image = os.path.join(image_dir, image_id + ext)
                break
    item = open_image(
        root,
        image,
        report,
        origin=path,
        where=f"line {lineno}",
        moved=moved,
        hash_image=hash_image,
    )
    if item is None:
        return
    w, h = item.width, item.height
    boxes = []
    for i, b in enumerate(gtboxes):
        where = f"line {lineno} gtboxes[{i}]"
        if not isinstance(b, dict):
            skip_box(report, conv.counts, path, where, "expected an object")
            continue
        if b.get("tag") != "person":  # "mask": a crowd/reflection region, not an object
            conv.counts.ignored += 1
            continue
        if _ignored(b, "extra"):  # the whole person is marked "do not learn from"
            conv.counts.ignored += 1
            continue
        wanted = [(0, box, "extra")] + ([(1, "hbox", "head_attr")] if head else [])
        for class_id, kind, attr in wanted:
            if attr == "head_attr" and _ignored(b, attr):
                conv.counts.ignored += 1
                continue
            add_xywh(
                boxes, conv.counts, report, path, f"{where}.{kind}", class_id, b.get(kind), w, h
            )
    item.boxes = tuple(boxes)
    conv.counts.boxes += len(boxes)
    conv.items.append(item)


def _convert(src: str, o: ConvertOptions, report: Report, progress: Progress) -> Conversion:
    if o.classes is not None:
        raise UsageError("CrowdHuman classes are fixed: person (and --head-class NAME)")
    return convert_crowdhuman(src, report=report, box=o.box, head_class=o.head_class,
                              images=o.images, exclude=o.exclude, moved=o.moved,
                              progress=progress, hash_images=o.hash_images)


FORMAT = Format("crowdhuman", convert=_convert, detect=lambda src: has_files(src, (".odgt",)),
                what="CrowdHuman .odgt files")
