"""The one record every converter produces, :class:`Item`, and the helpers converters share.

An item is one source image, its size, its boxes as ``(class_id, cx, cy, w, h)``
normalised to [0, 1], and where it came from. The sharder, the config writer
and the checker only ever see items, so adding a format means writing one
converter (see :mod:`.formats`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Container, List, Optional, Sequence, Tuple

from ..errors import DatasetError
from ..progress import Progress
from .imageinfo import BadImage, probe_image
from .names import display, name_fields, relkey
from .report import BOX, NOTE, Report

Box = Tuple[int, float, float, float, float]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
LABEL_EXT = ".txt"


def format_box(box: Box) -> str:
    """One YOLO label line: class id and four numbers with 6 decimals."""
    c, cx, cy, w, h = box
    return f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def label_text(boxes: Tuple[Box, ...]) -> str:
    return "".join(format_box(b) + "\n" for b in boxes)


def box_from_corners(
    class_id: int, x0: float, y0: float, x1: float, y1: float, width: int, height: int
) -> Optional[Box]:
    """Clip pixel corners to the image and normalise; None when nothing is left."""
    x0, x1 = max(0.0, min(float(width), x0)), max(0.0, min(float(width), x1))
    y0, y1 = max(0.0, min(float(height), y0)), max(0.0, min(float(height), y1))
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        return None
    nw, nh = round(w / width, 6), round(h / height, 6)
    if nw <= 0 or nh <= 0:
        return None
    return (class_id, round((x0 + x1) / 2 / width, 6), round((y0 + y1) / 2 / height, 6), nw, nh)


def skip_box(report: Any, counts: Counts, file: str, where: str, reason: str) -> None:
    """One box is bad: report it (the rest of the image is kept) and count it."""
    report.add(file, where, reason, skipped=BOX)
    counts.skipped_boxes += 1


def add_xywh(
    boxes: List[Box],
    counts: Counts,
    report: Any,
    file: str,
    where: str,
    class_id: int,
    xywh: Any,
    width: int,
    height: int,
) -> None:
    """Check a ``[x, y, w, h]`` pixel box (COCO, CrowdHuman) and append it, clipped."""
    if not (
        isinstance(xywh, list)
        and len(xywh) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xywh)
    ):
        skip_box(report, counts, file, where, "expected [x, y, w, h] numbers")
        return
    x, y, bw, bh = (float(v) for v in xywh)
    if bw < 0 or bh < 0:
        skip_box(report, counts, file, where, f"negative width or height ({bw:g}, {bh:g})")
        return
    box = box_from_corners(class_id, x, y, x + bw, y + bh, width, height)
    if box is None:
        counts.dropped += 1
    else:
        boxes.append(box)


@dataclass
class Item:
    """One image with its boxes, ready to be sharded.

    ``key`` is the image path relative to the source folder (POSIX) and is the
    item's identity in the manifest. ``label_src`` is set when a YOLO label
    file is passed through as-is; otherwise the label is written from ``boxes``.
    """

    key: str
    image: str
    stem: str
    ext: str
    width: int
    height: int
    size: int
    md5: str
    boxes: Tuple[Box, ...] = ()
    origin: str = ""
    label_src: Optional[str] = None
    label_size: int = 0
    label_md5: str = ""

    def label(self) -> str:
        return label_text(self.boxes)


@dataclass
class Counts:
    """What a conversion saw, for the summary."""

    boxes: int = 0
    dropped: int = 0  # empty after clipping to the image
    difficult: int = 0  # VOC difficult=1, skipped unless asked
    ignored: int = 0  # CrowdHuman ignore / mask, COCO iscrowd
    skipped_boxes: int = 0


@dataclass
class Conversion:
    """Items (a list, or a key-sorted stream when asked for), classes and counts.

    With a stream, ``classes`` and ``counts`` are complete once it is consumed.
    """

    items: Any = field(default_factory=list)
    expected: int = 0  # items the converter will try (for progress bars)
    classes: List[str] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)


def open_image(
    root: str,
    path: str,
    report: Any,
    *,
    origin: str = "",
    where: str = "",
    moved: Container[str] = (),
    hash_image: bool = True,
) -> Optional[Item]:
    """Probe one image (one read: size, md5, dimensions) into an :class:`Item` without boxes.

    Reports and returns None for a missing, empty or unreadable image (an image
    whose key is in ``moved`` was already moved into a shard: silently None). A name
    that is not plain ASCII is kept for reading but gets a safe output stem
    (noted in the report), so train.txt never holds a line darknet chokes on.
    ``hash_image=False`` reads the header only and leaves ``md5`` "" (unknown).
    """
    info = probe(path, hash_image=hash_image)
    if is_bad(info):
        report_bad_image(report, root, path, info, origin=origin, where=where, moved=moved)
        return None
    return image_item(root, path, info, report, origin=origin)


def hashes_images(mode: str) -> bool:
    """Whether a shard in ``mode`` records image md5s: only a copy does.

    A copy is a second set of bytes that must be verifiable; a link is the same
    file and a move the only one, so a header read and the size are enough, and
    skipping the hash keeps a move of 100-300 KB photos as fast as a rename loop.
    An image placed without one has md5 "" in the manifest: unknown, never equal.
    """
    return mode == "copy"


def is_bad(info: Any) -> bool:
    """True for what :func:`probe` returns instead of an ImageInfo."""
    return type(info) is tuple


def probe(path: str, *, hash_image: bool = True) -> Any:
    """ImageInfo, or a picklable ``(kind, reason)`` tuple when the image is bad.

    ``hash_image=False``: header and size only, md5 "" (see :func:`hashes_images`)."""
    try:
        return probe_image(path, md5=hash_image)
    except FileNotFoundError:
        return ("missing", "")
    except BadImage as exc:
        return ("bad", f"unreadable image: {exc}")
    except OSError as exc:
        return ("bad", f"cannot read image: {exc.strerror or exc}")


def report_bad_image(
    report: Any,
    root: str,
    path: str,
    bad: Tuple[str, str],
    *,
    origin: str = "",
    where: str = "",
    moved: Container[str] = (),
) -> None:
    kind, reason = bad
    shown = display(path)
    if kind == "missing":
        if relkey(root, path) not in moved:
            report.add(origin or shown, where if origin else "", f"image not found: {shown}")
    else:
        report.add(shown, "", reason)


def image_item(
    root: str,
    path: str,
    info: Any,
    report: Any,
    *,
    origin: str = "",
    names: Optional[Tuple[str, str, str, Optional[str]]] = None,
) -> Item:
    """An Item for a probed image; a renamed stem is noted in the report."""
    key, stem, ext, why = names or name_fields(root, path)
    if why:
        report.add(display(path), "name", f"{why}; written as {stem}{ext}", skipped=NOTE)
    return Item(
        key=key,
        image=path,
        stem=stem,
        ext=ext,
        width=info.width,
        height=info.height,
        size=info.size,
        md5=info.md5,
        origin=relkey(root, origin) if origin else "",
    )


def load_classes(
    classes: Optional[Any] = None, classes_file: Optional[str] = None
) -> Optional[List[str]]:
    """Class names from ``a,b,c`` / a list, or one per line from a file; None if neither."""
    if classes_file:
        try:
            with open(classes_file, encoding="utf-8") as f:
                names = [line.strip() for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{display(classes_file)}: cannot read classes file: {exc}") from exc
    elif classes is None:
        return None
    elif isinstance(classes, str):
        names = [c.strip() for c in classes.split(",") if c.strip()]
    else:
        names = [str(c).strip() for c in classes]
    if not names:
        raise DatasetError("the class list is empty")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DatasetError(f"class names listed twice: {', '.join(dupes)}")
    return names


def walk_files(root: str, *, exclude: Optional[str] = None) -> List[str]:
    """Every file under ``root`` in sorted order, skipping ``exclude`` and our own files."""
    out: List[str] = []
    ex = os.path.abspath(exclude) if exclude else None
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".drivesync")
            and (ex is None or os.path.abspath(os.path.join(dirpath, d)) != ex)
        )
        out.extend(
            os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".drivesync")
        )
    return out


@dataclass(frozen=True)
class ConvertOptions:
    """What a conversion may be asked for; each converter reads the fields it knows.

    ``moved``: keys already moved into shards (their missing images are not
    reported); ``lazy``: items as a key-sorted stream (YOLO); ``hash_images``:
    False leaves image md5s "" (see :func:`hashes_images`).
    """

    classes: Optional[Sequence[str]] = None
    base_classes: Sequence[str] = ()
    keep_difficult: bool = False
    keep_crowd: bool = False
    box: str = "fbox"
    head_class: Optional[str] = None
    images: Optional[str] = None
    exclude: Optional[str] = None
    moved: Container[str] = ()
    lazy: bool = False
    hash_images: bool = True


Converter = Callable[[str, ConvertOptions, Report, Progress], Conversion]


@dataclass(frozen=True)
class Format:
    """One input format, as it registers itself in :mod:`.formats`.

    ``detect(src)`` says whether ``src`` holds files of this format (cheap: names
    only, stops at the first hit); ``folder_only``: SRC must be a folder, not a file;
    ``what``: its files in words, for "which --format fits" errors; ``required``:
    SRC without such files is an error even when no other format's are there
    (the hint says what was expected); ``pairs``: image + label pairs passed
    through unchanged, so ``prepare`` validates and shards them pair by pair
    (:mod:`.pairs`) instead of converting first.
    """

    name: str
    convert: Converter
    detect: Callable[[str], bool]
    folder_only: bool = False
    what: str = ""
    required: str = ""
    pairs: bool = False


def has_files(src: str, suffixes: Tuple[str, ...], *, also: Callable[[str], bool] = bool) -> bool:
    """Whether ``src`` is, or holds (at any depth), a file ending in one of ``suffixes``
    for which ``also(path)`` holds; stops at the first one."""
    if os.path.isfile(src):
        return src.lower().endswith(suffixes) and also(src)
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if not d.startswith(".drivesync")]
        for f in filenames:
            if f.lower().endswith(suffixes) and also(os.path.join(dirpath, f)):
                return True
    return False
