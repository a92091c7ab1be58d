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
from typing import Container, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from ..progress import NULL_PROGRESS, Progress
from . import workers
from .items import (
    IMAGE_EXTS,
    LABEL_EXT,
    Conversion,
    ConvertOptions,
    Format,
    Item,
    has_files,
    image_item,
    is_bad,
    probe,
    report_bad_image,
)
from .names import display, name_fields, relkey
from .report import NOTE, Report
from .workers import fork_context, imap_forked

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
_RDONLY = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_EMPTY_MD5 = hashlib.md5(b"").hexdigest()


def parse_label(data: bytes, *, nc: Optional[int]) -> Tuple[int, List[Tuple[int, str]]]:
    """(box count, [(line number, reason), ...]) for the bytes of one label file."""
    count, errors, _ = _parse(data, nc)
    return count, errors


def _parse(data: bytes, nc: Optional[int]) -> Tuple[int, List[Tuple[int, str]], int]:
    """(box count, errors, highest class id) of one label file."""
    errors: List[Tuple[int, str]] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return 0, [(0, "label is not UTF-8 text")], -1
    boxes = 0
    top = -1
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
            if c > top:
                top = c
    return boxes, errors, top


def find_label(image: str, texts: Container[str]) -> Optional[str]:
    """The label of an image: beside it, or under ``labels/`` for an image under ``images/``."""
    label = image.rsplit(".", 1)[0] + ".txt"
    if label in texts:
        return label
    sep_images = f"{os.sep}images{os.sep}"
    if sep_images in image:
        alt = f"{os.sep}labels{os.sep}".join(image.rsplit(sep_images, 1))
        alt = os.path.splitext(alt)[0] + ".txt"
        if alt in texts:
            return alt
    return None


def read_small(path: str) -> bytes:
    """A whole (usually small) file in as few syscalls as possible."""
    fd = os.open(path, _RDONLY)
    try:
        data = os.read(fd, 1 << 16)
        if len(data) == 1 << 16:
            with os.fdopen(os.dup(fd), "rb") as f:
                f.seek(len(data))
                data += f.read()
        return data
    finally:
        os.close(fd)


def validate_pair(
    image: str, label: Optional[str], nc: Optional[int], *, hash_image: bool = True
) -> tuple:
    """Probe an image and parse its label; touches no report (it runs in workers too).

    Returns ``("bad", (kind, reason))``, ``("label", [(line, reason), ...])`` or
    ``("ok", info, (label size, label md5, boxes, highest class id))``.
    ``hash_image=False``: the image's header and size only (``info.md5`` is "");
    the label is read whole to be parsed anyway, so its md5 is always known.
    """
    info = probe(image, hash_image=hash_image)
    if is_bad(info):
        return ("bad", info)
    if label is None:
        return ("ok", info, (0, _EMPTY_MD5, 0, -1))
    try:
        data = read_small(label)
    except OSError as exc:
        return ("label", [(0, f"cannot read label: {exc.strerror or exc}")])
    count, errors, top = _parse(data, nc)
    if errors:
        return ("label", errors)
    return ("ok", info, (len(data), hashlib.md5(data).hexdigest(), count, top))


def report_pair(report: Report, root: str, image: str, label: Optional[str], res: tuple) -> None:
    """Report a bad pair (from :func:`validate_pair`), or note a background image."""
    if res[0] == "bad":
        report_bad_image(report, root, image, res[1])
    elif res[0] == "label":
        for n, reason in res[1]:
            report.add(label, f"line {n}" if n else "", reason)
    elif label is None:
        report.add(
            image, "", "no label file: written as a background image (empty label)", skipped=NOTE
        )


def report_orphans(report: Report, src: str, texts: Iterable[str], used: Container[str]) -> None:
    """Labels no image claimed (a stray top-level .txt that is not a label is left alone)."""
    for t in sorted(texts):
        if t in used or os.path.basename(t).lower() in NOT_LABELS:
            continue
        if relkey(src, t).count("/") == 0 and not _looks_like_label(t):
            continue
        report.add(t, "", "label without an image (orphan)")


def classes_for(names: Optional[Sequence[str]], top: int, old: Sequence[str] = ()) -> List[str]:
    """Given names, else the previous run's if they cover every id, else class0..classN."""
    if names is not None:
        return list(names)
    if old and len(old) > top:
        return list(old)
    return [f"class{i}" for i in range(top + 1)]


def scan(root: str, exclude: Optional[str]) -> Tuple[List[str], Set[str]]:
    """Images (sorted) and every .txt under root, using scandir (one stat-free pass)."""
    images: List[str] = []
    texts: Set[str] = set()
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
                    texts.add(e.path)
    images.sort()
    return images, texts


def _check_chunk(
    args: Tuple[str, List[Tuple[str, Optional[str]]], Optional[int], bool]
) -> List[tuple]:
    root, pairs, nc, hashed = args
    return [
        validate_pair(i, lab, nc, hash_image=hashed) + (name_fields(root, i),) for i, lab in pairs
    ]


def _check_all(
    root: str,
    pairs: List[Tuple[str, Optional[str]]],
    nc: Optional[int],
    progress: Progress,
    hashed: bool,
) -> Iterator[tuple]:
    """Validation results in input order; in forked workers for a big folder."""
    ctx = fork_context() if len(pairs) >= workers.PARALLEL_MIN else None
    if ctx is None:
        for image, label in pairs:
            progress.on_progress(files=1)
            yield from _check_chunk((root, [(image, label)], nc, hashed))
        return
    size = 500
    chunks = ((root, pairs[i : i + size], nc, hashed) for i in range(0, len(pairs), size))
    for results in imap_forked(_check_chunk, chunks, ctx=ctx):
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
    hash_images: bool = True,
) -> Conversion:
    """Validate every pair under ``src``. ``lazy``: ``items`` is a key-sorted stream, so
    the sharder can move validated pairs while later ones are still being read.
    ``hash_images=False``: image md5s are left "" (a link or move needs none)."""
    src = os.path.abspath(src)
    images, texts = scan(src, exclude)
    progress.on_start(files=len(images), bytes=0, desc="validate")
    names = list(classes) if classes is not None else classes_in(src)
    conv = Conversion(classes=names or [], expected=len(images))
    pairs = [(image, find_label(image, texts)) for image in images]
    stream = _items(src, pairs, texts, conv, names, report, moved, progress, hash_images)
    conv.items = stream if lazy else list(stream)
    return conv


def _items(
    src: str,
    pairs: List[Tuple[str, Optional[str]]],
    texts: Set[str],
    conv: Conversion,
    names: Optional[List[str]],
    report: Report,
    moved: Container[str],
    progress: Progress,
    hashed: bool = True,
) -> Iterator[Item]:
    nc = len(names) if names is not None else None
    top = -1
    for (image, label), res in zip(pairs, _check_all(src, pairs, nc, progress, hashed)):
        if res[0] == "bad":
            report_bad_image(report, src, image, res[1], moved=moved)
            continue
        report_pair(report, src, image, label, res)
        if res[0] != "ok":
            continue
        _, info, (lsize, lmd5, count, ltop), fields = res
        item = image_item(src, image, info, report, names=fields)
        if label is not None:
            item.label_src, item.label_size, item.label_md5 = label, lsize, lmd5
        top = max(top, ltop)
        conv.counts.boxes += count
        yield item
    progress.on_done()
    report_orphans(report, src, texts, {lab for _, lab in pairs if lab is not None})
    conv.classes = classes_for(names, top)


def _looks_like_label(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError:
        return False
    _, errors = parse_label(data, nc=None)
    return not errors


def classes_in(src: str) -> Optional[List[str]]:
    for name in ("classes.txt", "obj.names"):
        p = os.path.join(src, name)
        if os.path.isfile(p):
            with open(p, encoding="utf-8", errors="replace") as f:
                names = [line.strip() for line in f if line.strip()]
            if names:
                log.info("classes from %s", display(p))
                return names
    return None


def _convert(src: str, o: ConvertOptions, report: Report, progress: Progress) -> Conversion:
    return convert_yolo(src, report=report, classes=o.classes, exclude=o.exclude, moved=o.moved,
                        progress=progress, lazy=o.lazy, hash_images=o.hash_images)


def _detect(src: str) -> bool:
    """A ``.txt`` (not a class list) that reads as YOLO label lines."""
    return has_files(src, (LABEL_EXT,), also=lambda p: os.path.basename(p) not in (
        "classes.txt", "obj.names", "train.txt", "valid.txt", "test.txt") and _looks_like_label(p))


FORMAT = Format("yolo", convert=_convert, detect=_detect, folder_only=True,
                what="YOLO label .txt files", pairs=True)
