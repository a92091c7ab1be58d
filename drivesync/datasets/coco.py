"""COCO detection JSON -> items.

Category ids (often sparse: 1..90) become contiguous class ids in the order
of the categories sorted by id; ``iscrowd`` annotations are skipped unless
asked. ``bbox`` is ``[x, y, w, h]`` in pixels.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Container, Dict, List, Optional, Sequence, Tuple

from ..progress import NULL_PROGRESS, Progress
from .items import (
    Box,
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


def convert_coco(
    src: str,
    *,
    report: Report,
    classes: Optional[Sequence[str]] = None,
    keep_crowd: bool = False,
    images: Optional[str] = None,
    exclude: Optional[str] = None,
    moved: Container[str] = (),
    progress: Progress = NULL_PROGRESS,
    hash_images: bool = True,
) -> Conversion:
    """``src`` is one JSON file or a folder whose ``*.json`` files are all read."""
    src = os.path.abspath(src)
    if os.path.isfile(src):
        files, root = [src], os.path.dirname(src)
    else:
        files = [p for p in walk_files(src, exclude=exclude) if p.lower().endswith(".json")]
        root = src
    docs = _load(files, report)
    cats = _categories(docs, report)
    names = (
        list(classes)
        if classes is not None
        else [cats[k] for k in sorted(cats, key=lambda k: (str(type(k)), k))]
    )
    index = {n: i for i, n in enumerate(names)}
    conv = Conversion(classes=names)
    opts = _DocOptions(root, cats, index, keep_crowd=keep_crowd, images=images, moved=moved,
                       hash_image=hash_images)
    progress.on_start(files=sum(len(d["images"]) for _, d in docs), bytes=0, desc="convert")
    for path, doc in docs:
        _doc(path, doc, opts, conv, report, progress)
    progress.on_done()
    return conv


def _load(files: List[str], report: Report) -> List[Tuple[str, dict]]:
    """The COCO documents among ``files``; a broken one is reported by line and column."""
    docs = []
    for path in files:
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read().decode("utf-8"))
        except json.JSONDecodeError as exc:
            report.add(path, f"line {exc.lineno} column {exc.colno}", f"malformed JSON: {exc.msg}")
            continue
        except (UnicodeDecodeError, OSError) as exc:
            report.add(path, "", f"cannot read JSON: {exc}")
            continue
        if not isinstance(doc, dict) or not all(
            isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")
        ):
            if len(files) == 1 or isinstance(doc, dict) and "images" in doc:
                report.add(path, "", 'expected "images", "annotations" and "categories" lists')
            continue
        docs.append((path, doc))
    return docs


def _categories(docs: List[Tuple[str, dict]], report: Report) -> Dict[Any, str]:
    """Category id -> name over every document (the first name given for an id wins)."""
    cats: Dict[Any, str] = {}
    for path, doc in docs:
        for i, c in enumerate(doc["categories"]):
            if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("name"), str):
                report.add(
                    path, f"categories[{i}]", 'expected {"id": ..., "name": ...}', skipped="note"
                )
                continue
            cats.setdefault(c["id"], c["name"])
    return cats


@dataclass(frozen=True)
class _DocOptions:
    """What every document of one conversion is read with."""

    root: str
    cats: Dict[Any, str]
    index: Dict[str, int]
    keep_crowd: bool
    images: Optional[str]
    moved: Container[str]
    hash_image: bool


def _dirs(root: str, path: str, images: Optional[str]) -> List[str]:
    base = os.path.dirname(path)
    split = os.path.splitext(os.path.basename(path))[0]
    split = split[len("instances_") :] if split.startswith("instances_") else split
    out = [images] if images else []
    out += [
        os.path.join(root, "images", split),
        os.path.join(root, split),
        os.path.join(root, "images"),
        root,
        base,
        os.path.join(os.path.dirname(base), split),
        os.path.join(os.path.dirname(base), "images"),
    ]
    return [os.path.abspath(d) for d in out]


def _doc(path: str, doc: dict, o: _DocOptions, conv: Conversion, report: Report,
         progress: Progress) -> None:
    anns: Dict[Any, List[tuple]] = {}
    for i, a in enumerate(doc["annotations"]):
        if isinstance(a, dict):
            anns.setdefault(a.get("image_id"), []).append((i, a))
        else:
            skip_box(report, conv.counts, path, f"annotations[{i}]", "expected an object")
    dirs = _dirs(o.root, path, o.images)
    for n, im in enumerate(doc["images"]):
        progress.on_progress(files=1)
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str) or "id" not in im:
            report.add(path, f"images[{n}]", 'expected {"id": ..., "file_name": ...}')
            continue
        fname = im["file_name"]
        image = next(
            (os.path.join(d, fname) for d in dirs if os.path.isfile(os.path.join(d, fname))),
            os.path.join(dirs[0], fname),
        )
        item = open_image(o.root, image, report, origin=path, moved=o.moved,
                          hash_image=o.hash_image)
        if item is None:
            continue
        w, h = im.get("width") or 0, im.get("height") or 0
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            w, h = item.width, item.height
        item.boxes = _boxes(path, anns.get(im["id"], []), o, conv, report, w, h)
        conv.counts.boxes += len(item.boxes)
        conv.items.append(item)
    ids = {im.get("id") for im in doc["images"] if isinstance(im, dict)}
    for image_id in anns.keys() - ids:
        for i, _ in anns[image_id]:
            reason = f'image_id {image_id!r} is not in "images"'
            skip_box(report, conv.counts, path, f"annotations[{i}].image_id", reason)


def _boxes(path: str, anns: List[tuple], o: _DocOptions, conv: Conversion, report: Report,
           w: int, h: int) -> Tuple[Box, ...]:
    """One image's annotations as boxes; crowd regions counted, unknown classes reported."""
    boxes: List[Box] = []
    for i, a in anns:
        where = f"annotations[{i}]"
        if a.get("iscrowd") and not o.keep_crowd:
            conv.counts.ignored += 1
            continue
        name = o.cats.get(a.get("category_id"))
        if name is None or name not in o.index:
            what = f"category_id {a.get('category_id')!r}" + (f" ({name})" if name else "")
            skip_box(report, conv.counts, path, f"{where}.category_id", f"unknown class: {what}")
            continue
        add_xywh(boxes, conv.counts, report, path, f"{where}.bbox", o.index[name], a.get("bbox"),
                 w, h)
    return tuple(boxes)


def _convert(src: str, o: ConvertOptions, report: Report, progress: Progress) -> Conversion:
    return convert_coco(src, report=report, classes=o.classes, keep_crowd=o.keep_crowd,
                        images=o.images, exclude=o.exclude, moved=o.moved, progress=progress,
                        hash_images=o.hash_images)


def _has_images_list(path: str) -> bool:
    """A JSON file that names an ``"images"`` list near its start (COCO writes it first)."""
    try:
        with open(path, "rb") as f:
            return b'"images"' in f.read(1 << 20)
    except OSError:
        return False


FORMAT = Format("coco", convert=_convert,
                detect=lambda src: has_files(src, (".json",), also=_has_images_list),
                what="a COCO JSON", required='a JSON with "images" and "annotations"; give '
                                            "the JSON file or its folder")
