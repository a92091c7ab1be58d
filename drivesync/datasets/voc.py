"""PASCAL VOC XML -> items.

VOC pixel indices are 1-based and inclusive, so a box covers
``[xmin - 1, xmax]`` in continuous image coordinates; that span is clipped to
the image and normalised. ``difficult=1`` objects are skipped unless asked.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from typing import Container, Dict, List, Optional, Sequence, Tuple

from ..progress import NULL_PROGRESS, Progress
from .items import (
    IMAGE_EXTS,
    Box,
    Conversion,
    ConvertOptions,
    Format,
    Item,
    box_from_corners,
    has_files,
    open_image,
    skip_box,
    walk_files,
)
from .names import display
from .report import Report

log = logging.getLogger(__name__)


def convert_voc(
    src: str,
    *,
    report: Report,
    classes: Optional[Sequence[str]] = None,
    base_classes: Sequence[str] = (),
    keep_difficult: bool = False,
    exclude: Optional[str] = None,
    moved: Container[str] = (),
    progress: Progress = NULL_PROGRESS,
    hash_images: bool = True,
) -> Conversion:
    """Every ``*.xml`` under ``src``; images in ``JPEGImages/`` or next to the XML.

    Without ``classes`` the names found are sorted, after ``base_classes`` (the
    classes of an earlier run), so adding images never renumbers old classes.
    """
    src = os.path.abspath(src)
    xmls = [p for p in walk_files(src, exclude=exclude) if p.lower().endswith(".xml")]
    parsed = _parse(xmls, report)
    if classes is None:
        found = {(o.findtext("name") or "").strip() for _, r in parsed for o in r.iter("object")}
        names = list(base_classes) + sorted(n for n in found if n and n not in base_classes)
    else:
        names = list(classes)
    index = {n: i for i, n in enumerate(names)}
    conv = Conversion(classes=names)
    progress.on_start(files=len(parsed), bytes=0, desc="convert")
    for path, root in parsed:
        item = _one(src, path, root, index, report, conv, keep_difficult=keep_difficult,
                    strict=classes is not None, moved=moved, hash_image=hash_images)
        if item is not None:
            conv.items.append(item)
        progress.on_progress(files=1)
    progress.on_done()
    return conv


def _parse(xmls: List[str], report: Report) -> List[Tuple[str, ET.Element]]:
    """The ``<annotation>`` documents; a broken one is reported by its line."""
    parsed: List[Tuple[str, ET.Element]] = []
    for path in xmls:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            line = exc.position[0] if getattr(exc, "position", None) else ""
            report.add(path, f"line {line}" if line else "", f"malformed XML: {exc}")
            continue
        except OSError as exc:
            report.add(path, "", f"cannot read: {exc.strerror or exc}")
            continue
        if root.tag != "annotation":
            report.add(path, "root", f"expected <annotation>, found <{root.tag}>")
            continue
        parsed.append((path, root))
    return parsed


def _find_image(src: str, xml_path: str, root: ET.Element) -> str:
    xml_dir = os.path.dirname(xml_path)
    stem = os.path.splitext(os.path.basename(xml_path))[0]
    filename = (root.findtext("filename") or "").strip()
    dirs = [
        os.path.join(src, "JPEGImages"),
        xml_dir,
        os.path.join(os.path.dirname(xml_dir), "JPEGImages"),
        os.path.join(os.path.dirname(xml_dir), "images"),
        src,
    ]
    if filename:
        for d in dirs:
            p = os.path.join(d, filename)
            if os.path.isfile(p):
                return p
    for d in dirs:
        for ext in IMAGE_EXTS + tuple(e.upper() for e in IMAGE_EXTS):
            p = os.path.join(d, stem + ext)
            if os.path.isfile(p):
                return p
    # not found: name the most likely place in the report
    return os.path.join(dirs[0] if os.path.isdir(dirs[0]) else xml_dir, filename or stem + ".jpg")


def _int_size(root: ET.Element, tag: str) -> int:
    try:
        return int(float(root.findtext(f"size/{tag}") or 0))
    except ValueError:
        return 0


def _one(
    src: str,
    path: str,
    root: ET.Element,
    index: Dict[str, int],
    report: Report,
    conv: Conversion,
    *,
    keep_difficult: bool,
    strict: bool,
    moved: Container[str],
    hash_image: bool = True,
) -> Optional[Item]:
    image = _find_image(src, path, root)
    item = open_image(src, image, report, origin=path, moved=moved, hash_image=hash_image)
    if item is None:
        return None
    w, h = _int_size(root, "width"), _int_size(root, "height")
    if w <= 0 or h <= 0:
        w, h = item.width, item.height  # <size> missing or zero: trust the image
    elif (w, h) != (item.width, item.height):
        report.add(
            path,
            "size",
            f"<size> says {w}x{h} but the image is {item.width}x{item.height}; boxes use <size>",
            skipped="note",
        )
    item.boxes = tuple(
        box for i, obj in enumerate(root.iter("object"))
        if (box := _box(path, f"object[{i}]", obj, index, conv, report, w, h,
                        keep_difficult=keep_difficult, strict=strict)) is not None
    )
    conv.counts.boxes += len(item.boxes)
    return item


def _box(path: str, where: str, obj: ET.Element, index: Dict[str, int], conv: Conversion,
         report: Report, w: int, h: int, *, keep_difficult: bool, strict: bool) -> Optional[Box]:
    """One ``<object>`` as a box, or None (reported, or counted as difficult or dropped)."""
    name = (obj.findtext("name") or "").strip()
    if name not in index:
        reason = f"class {name!r} is not in --classes" if strict else "object has no <name>"
        skip_box(report, conv.counts, path, f"{where}/name", reason)
        return None
    if (obj.findtext("difficult") or "0").strip() == "1" and not keep_difficult:
        conv.counts.difficult += 1
        return None
    try:
        x0, y0, x1, y1 = (
            float(obj.findtext(f"bndbox/{t}") or "nan")
            for t in ("xmin", "ymin", "xmax", "ymax")
        )
        if any(v != v for v in (x0, y0, x1, y1)):
            raise ValueError("missing")
    except ValueError:
        reason = "expected numbers in xmin, ymin, xmax, ymax"
        skip_box(report, conv.counts, path, f"{where}/bndbox", reason)
        return None
    if x0 > x1 or y0 > y1:
        reason = f"xmin > xmax or ymin > ymax ({x0:g},{y0:g},{x1:g},{y1:g})"
        skip_box(report, conv.counts, path, f"{where}/bndbox", reason)
        return None
    box = box_from_corners(index[name], x0 - 1, y0 - 1, x1, y1, w, h)
    if box is None:
        conv.counts.dropped += 1
        log.info("%s: %s dropped: empty after clipping to %dx%d", display(path), where, w, h)
    return box


def _convert(src: str, o: ConvertOptions, report: Report, progress: Progress) -> Conversion:
    return convert_voc(src, report=report, classes=o.classes, base_classes=o.base_classes,
                       keep_difficult=o.keep_difficult, exclude=o.exclude, moved=o.moved,
                       progress=progress, hash_images=o.hash_images)


def _detect(src: str) -> bool:
    return has_files(src, (".xml",), also=lambda p: _head(p).find(b"<annotation") >= 0)


def _head(path: str, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


FORMAT = Format("voc", convert=_convert, detect=_detect, folder_only=True,
                what="VOC XML annotations")
