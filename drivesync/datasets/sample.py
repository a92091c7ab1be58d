"""A small, valid PASCAL VOC dataset written from nothing (for the demo and tests).

Images are real PNGs (zlib + struct, no Pillow) with a filled rectangle in
each object's colour exactly where its box is, so a detector could learn it.
"""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path
from typing import List, Sequence, Tuple, Union
from xml.sax.saxutils import escape

_PALETTE = [
    (220, 40, 40),
    (40, 180, 60),
    (40, 80, 220),
    (230, 200, 30),
    (180, 60, 200),
    (30, 200, 200),
    (240, 130, 30),
    (120, 120, 120),
]


def png_bytes(
    width: int,
    height: int,
    rects: Sequence[Tuple[int, int, int, int, Tuple[int, int, int]]] = (),
    background: Tuple[int, int, int] = (245, 245, 245),
) -> bytes:
    """An RGB PNG with filled rectangles ``(x0, y0, x1, y1, colour)``, x1/y1 exclusive."""
    rows = []
    bg = bytes(background)
    for y in range(height):
        row = bytearray(bg * width)
        for x0, y0, x1, y1, colour in rects:
            if y0 <= y < y1:
                row[3 * x0 : 3 * x1] = bytes(colour) * (x1 - x0)
        rows.append(b"\x00" + bytes(row))
    raw = zlib.compress(b"".join(rows), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def voc_xml(
    filename: str,
    width: int,
    height: int,
    objects: Sequence[Tuple[str, int, int, int, int]],
    *,
    difficult: Sequence[int] = (),
) -> str:
    """A VOC annotation; objects are ``(name, xmin, ymin, xmax, ymax)`` in 1-based pixels."""
    parts = [
        f"<annotation><folder>JPEGImages</folder><filename>{escape(filename)}</filename>",
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for i, (name, x0, y0, x1, y1) in enumerate(objects):
        d = 1 if i in difficult else 0
        parts.append(
            f"<object><name>{escape(name)}</name><difficult>{d}</difficult>"
            f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def make_sample_voc(
    dest: Union[str, Path],
    *,
    images: int = 60,
    classes: Sequence[str] = ("person", "car", "dog"),
    seed: int = 0,
) -> Path:
    """Write ``dest/Annotations/*.xml`` and ``dest/JPEGImages/*.png``; returns ``dest``.

    The same arguments always give byte-identical files. Every tenth image has
    no objects (a background image).
    """
    rng = random.Random(seed)
    dest = Path(dest)
    ann, img = dest / "Annotations", dest / "JPEGImages"
    ann.mkdir(parents=True, exist_ok=True)
    img.mkdir(parents=True, exist_ok=True)
    for n in range(images):
        w, h = rng.randint(64, 160), rng.randint(64, 160)
        objects: List[Tuple[str, int, int, int, int]] = []
        rects = []
        count = 0 if n % 10 == 9 else rng.randint(1, 3)
        for _ in range(count):
            ci = rng.randrange(len(classes))
            bw, bh = rng.randint(12, w // 2), rng.randint(12, h // 2)
            x0, y0 = rng.randint(0, w - bw), rng.randint(0, h - bh)
            rects.append((x0, y0, x0 + bw, y0 + bh, _PALETTE[ci % len(_PALETTE)]))
            # VOC pixels are 1-based and inclusive: columns x0..x0+bw-1 -> xmin=x0+1, xmax=x0+bw
            objects.append((classes[ci], x0 + 1, y0 + 1, x0 + bw, y0 + bh))
        name = f"img_{n:04d}.png"
        (img / name).write_bytes(png_bytes(w, h, rects))
        (ann / f"img_{n:04d}.xml").write_text(voc_xml(name, w, h, objects), encoding="utf-8")
    return dest
