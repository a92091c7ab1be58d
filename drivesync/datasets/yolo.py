"""YOLO input (image + same-stem ``.txt``) is validated and passed through as-is.

A label is found next to its image, or under ``labels/`` when the image sits
under ``images/`` (the Ultralytics layout). An image with no label file is a
background image: an empty label is written for it and it is noted. A label
with any bad line skips the whole pair (its files are left where they are),
because passing half a label through would teach the model wrong background.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Container, Dict, List, Optional, Sequence, Tuple

from ..progress import NULL_PROGRESS, Progress
from . import IMAGE_EXTS, Conversion, display, open_image, relkey
from .report import NOTE, Report

log = logging.getLogger(__name__)

# .txt files in a YOLO folder that are not labels
NOT_LABELS = {
    "classes.txt",
    "obj.names",
    "train.txt",
    "valid.txt",
    "val.txt",
    "test.txt",
    "readme.txt",
    "labels.txt",
    "license.txt",
}
_IMAGE_EXTS = frozenset(IMAGE_EXTS)


def parse_label(data: bytes, *, nc: Optional[int]) -> Tuple[int, List[Tuple[int, str]]]:
    """(box count, [(line number, reason), ...]) for the bytes of one label file."""
    errors: List[Tuple[int, str]] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return 0, [(0, "label is not UTF-8 text")]
    boxes = 0
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            errors.append((n, f"expected 5 fields 'class cx cy w h', found {len(parts)}"))
            continue
        try:
            c = int(parts[0])
            cx, cy, w, h = float(parts[1]), float(parts[2]), float(parts[3]), float(parts[4])
        except ValueError:
            errors.append((n, "expected an integer class and four numbers"))
            continue
        if c < 0 or (nc is not None and c >= nc):
            errors.append((n, f"class id {c} out of range (0..{(nc or 1) - 1})"))
        elif not (0.0 <= cx <= 1.0 and 0.0 <= cy <= 1.0 and 0.0 < w <= 1.0 and 0.0 < h <= 1.0):
            errors.append((n, "values must be in [0, 1] with w, h > 0"))
        else:
            boxes += 1
    return boxes, errors


def _label_for(image: str) -> str:
    stem = os.path.splitext(image)[0]
    return stem + ".txt"


def _scan(root: str, exclude: Optional[str]) -> Tuple[List[str], Dict[str, str]]:
    """Images (sorted) and every .txt (lower-case path -> path) under root, using scandir."""
    images: List[str] = []
    texts: Dict[str, str] = {}
    ex = os.path.abspath(exclude) if exclude else None
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                name = e.name
                if name.startswith(".drivesync"):
                    continue
                if e.is_dir(follow_symlinks=False):
                    if ex is None or e.path != ex:
                        stack.append(e.path)
                    continue
                ext = os.path.splitext(name)[1].lower()
                if ext in _IMAGE_EXTS:
                    images.append(e.path)
                elif ext == ".txt":
                    texts[e.path] = e.path
    images.sort()
    return images, texts


def convert_yolo(
    src: str,
    *,
    report: Report,
    classes: Optional[Sequence[str]] = None,
    exclude: Optional[str] = None,
    moved: Container[str] = (),
    progress: Progress = NULL_PROGRESS,
) -> Conversion:
    src = os.path.abspath(src)
    images, texts = _scan(src, exclude)
    progress.on_start(files=len(images), bytes=0, desc="validate")
    names = list(classes) if classes is not None else _classes_in(src)
    nc = len(names) if names is not None else None
    conv = Conversion(classes=names or [])
    max_class = -1
    used = set()
    sep_images = f"{os.sep}images{os.sep}"
    for image in images:
        progress.on_progress(files=1)
        label = _label_for(image)
        if label not in texts and sep_images in image:
            alt = _label_for(f"{os.sep}labels{os.sep}".join(image.rsplit(sep_images, 1)))
            if alt in texts:
                label = alt
        item = open_image(src, image, report, moved=moved)
        if item is None:
            used.add(label)
            continue
        used.add(label)
        if label in texts:
            try:
                with open(label, "rb") as f:
                    data = f.read()
            except OSError as exc:
                report.add(label, "", f"cannot read label: {exc.strerror or exc}")
                continue
            count, errors = parse_label(data, nc=nc)
            if errors:
                for n, reason in errors:
                    report.add(label, f"line {n}" if n else "", reason)
                continue
            if nc is None:
                for line in data.split(b"\n"):
                    if line.strip():
                        max_class = max(max_class, int(line.split()[0]))
            item.label_src = label
            item.label_size = len(data)
            item.label_md5 = hashlib.md5(data).hexdigest()
            conv.counts.boxes += count
        else:
            report.add(
                image,
                "",
                "no label file: written as a background image (empty label)",
                skipped=NOTE,
            )
        conv.items.append(item)
    progress.on_done()
    for t in sorted(texts):
        if t in used or os.path.basename(t).lower() in NOT_LABELS:
            continue
        if relkey(src, t).count("/") == 0 and not _looks_like_label(t):
            continue
        report.add(t, "", "label without an image (orphan)")
    if names is None:
        conv.classes = [f"class{i}" for i in range(max_class + 1)]
    return conv


def _looks_like_label(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError:
        return False
    _, errors = parse_label(data, nc=None)
    return not errors


def _classes_in(src: str) -> Optional[List[str]]:
    for name in ("classes.txt", "obj.names"):
        p = os.path.join(src, name)
        if os.path.isfile(p):
            with open(p, encoding="utf-8", errors="replace") as f:
                names = [line.strip() for line in f if line.strip()]
            if names:
                log.info("classes from %s", display(p))
                return names
    return None
