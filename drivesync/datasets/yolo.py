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
import multiprocessing
import os
import threading
from typing import Container, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from ..progress import NULL_PROGRESS, Progress
from . import (
    IMAGE_EXTS,
    Conversion,
    Item,
    display,
    image_item,
    name_fields,
    probe,
    relkey,
    report_bad_image,
)
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


# Below this many images the work is done in-process; above it, forked workers
# validate in parallel (reading and hashing is CPU-bound Python per small file).
PARALLEL_MIN = 4000


def _check_pair(root: str, image: str, label: Optional[str], nc: Optional[int]) -> tuple:
    """Validate one pair without touching the report (runs in a worker process).

    Returns ``(image info or (kind, reason), label result)`` where the label
    result is None (no label), ``("err", [(line, reason)])`` or
    ``("ok", size, md5, boxes, max class id)``.
    """
    info = probe(image)
    if isinstance(info, tuple):
        return info, None, None
    names = name_fields(root, image)
    if label is None:
        return info, None, names
    try:
        fd = os.open(label, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            data = os.read(fd, 1 << 16)
            if len(data) == 1 << 16:
                with os.fdopen(os.dup(fd), "rb") as f:
                    f.seek(len(data))
                    data += f.read()
        finally:
            os.close(fd)
    except OSError as exc:
        return info, ("err", [(0, f"cannot read label: {exc.strerror or exc}")]), names
    count, errors = parse_label(data, nc=nc)
    if errors:
        return info, ("err", errors), names
    top = -1
    if nc is None:
        for line in data.split(b"\n"):
            if line.strip():
                top = max(top, int(line.split()[0]))
    return info, ("ok", len(data), hashlib.md5(data).hexdigest(), count, top), names


def _check_chunk(
    args: Tuple[str, List[Tuple[str, Optional[str]]], Optional[int]],
) -> List[tuple]:
    root, pairs, nc = args
    return [_check_pair(root, i, lab, nc) for i, lab in pairs]


def _check_all(
    root: str, pairs: List[Tuple[str, Optional[str]]], nc: Optional[int], progress: Progress
) -> Iterator[tuple]:
    """Results in input order, in parallel where that is safe and worth it."""
    cpus = os.cpu_count() or 1
    jobs = max(1, min(8, cpus - 1))  # the parent is busy too: it moves what was validated
    ctx = None
    if len(pairs) >= PARALLEL_MIN and cpus > 1 and threading.active_count() == 1:
        try:
            ctx = multiprocessing.get_context("fork")  # no re-import, no pickled state
        except ValueError:  # Windows / no fork
            ctx = None
    if ctx is None:
        for image, label in pairs:
            progress.on_progress(files=1)
            yield _check_pair(root, image, label, nc)
        return
    size = max(200, len(pairs) // (jobs * 8))
    chunks = [(root, pairs[i : i + size], nc) for i in range(0, len(pairs), size)]
    with ctx.Pool(jobs) as pool:
        for results in pool.imap(_check_chunk, chunks):
            progress.on_progress(files=len(results))
            yield from results


def convert_yolo(
    src: str,
    *,
    report: Report,
    classes: Optional[Sequence[str]] = None,
    exclude: Optional[str] = None,
    moved: Container[str] = (),
    progress: Progress = NULL_PROGRESS,
    lazy: bool = False,
) -> Conversion:
    """Validate every pair under ``src``. ``lazy``: ``items`` is a key-sorted stream, so
    the sharder can move validated pairs while later ones are still being read."""
    src = os.path.abspath(src)
    images, texts = _scan(src, exclude)
    progress.on_start(files=len(images), bytes=0, desc="validate")
    names = list(classes) if classes is not None else _classes_in(src)
    nc = len(names) if names is not None else None
    conv = Conversion(classes=names or [])
    used: Set[str] = set()
    sep_images = f"{os.sep}images{os.sep}"
    pairs: List[Tuple[str, Optional[str]]] = []
    for image in images:
        label = image.rsplit(".", 1)[0] + ".txt"
        if label not in texts and sep_images in image:
            alt = _label_for(f"{os.sep}labels{os.sep}".join(image.rsplit(sep_images, 1)))
            if alt in texts:
                label = alt
        used.add(label)
        pairs.append((image, label if label in texts else None))
    conv.expected = len(pairs)
    stream = _items(src, pairs, texts, used, conv, names, nc, report, moved, progress)
    if lazy:
        conv.items = stream
    else:
        conv.items = list(stream)
    return conv


def _items(
    src: str,
    pairs: List[Tuple[str, Optional[str]]],
    texts: Dict[str, str],
    used: Set[str],
    conv: Conversion,
    names: Optional[List[str]],
    nc: Optional[int],
    report: Report,
    moved: Container[str],
    progress: Progress,
) -> Iterator[Item]:
    max_class = -1
    for (image, label), (info, lab, names) in zip(pairs, _check_all(src, pairs, nc, progress)):
        if isinstance(info, tuple):
            report_bad_image(report, src, image, info, moved=moved)
            continue
        if lab is not None and lab[0] == "err":
            for n, reason in lab[1]:
                report.add(label, f"line {n}" if n else "", reason)
            continue
        item = image_item(src, image, info, report, names=names)
        if lab is not None:
            _, item.label_size, item.label_md5, count, top = lab
            item.label_src = label
            max_class = max(max_class, top)
            conv.counts.boxes += count
        else:
            report.add(
                image,
                "",
                "no label file: written as a background image (empty label)",
                skipped=NOTE,
            )
        yield item
    progress.on_done()
    for t in sorted(texts):
        if t in used or os.path.basename(t).lower() in NOT_LABELS:
            continue
        if relkey(src, t).count("/") == 0 and not _looks_like_label(t):
            continue
        report.add(t, "", "label without an image (orphan)")
    if names is None:
        conv.classes = [f"class{i}" for i in range(max_class + 1)]


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
