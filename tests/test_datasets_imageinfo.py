"""The header reader against hand-built files of every format it claims."""

from __future__ import annotations

import hashlib
import struct

import pytest

from drivesync.datasets.imageinfo import BadImage, image_size, probe_image, read_image_info
from drivesync.datasets.sample import png_bytes


def jpeg_bytes(w: int, h: int, *, app_len: int = 16) -> bytes:
    """SOI, an APP0 of ``app_len`` bytes, SOF0 with the size, EOI: enough for a header reader."""
    app = b"\xff\xe0" + struct.pack(">H", app_len) + b"\0" * (app_len - 2)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app + sof + b"\xff\xd9"


def test_png_gif_bmp_jpeg():
    assert image_size(png_bytes(7, 5)) == ("png", 7, 5)
    assert image_size(b"GIF89a" + struct.pack("<HH", 300, 2) + b"\0" * 8) == ("gif", 300, 2)
    bmp = b"BM" + b"\0" * 12 + struct.pack("<Iii", 40, 640, -480) + b"\0" * 30
    assert image_size(bmp) == ("bmp", 640, 480)  # negative height = top-down
    core = b"BM" + b"\0" * 12 + struct.pack("<IHH", 12, 33, 44) + b"\0" * 10
    assert image_size(core) == ("bmp", 33, 44)
    assert image_size(jpeg_bytes(1920, 1080)) == ("jpeg", 1920, 1080)


def test_webp_all_three_kinds():
    lossy = (
        b"RIFF"
        + b"\0" * 4
        + b"WEBPVP8 "
        + b"\0" * 4
        + b"\0\0\0"
        + b"\x9d\x01\x2a"
        + struct.pack("<HH", 320, 240)
    )
    assert image_size(lossy) == ("webp", 320, 240)
    # VP8L: 14-bit width-1 and height-1 packed after the 0x2f signature
    w1, h1 = 99, 49
    bits = w1 | (h1 << 14)
    lossless = b"RIFF" + b"\0" * 4 + b"WEBPVP8L" + b"\0" * 4 + b"\x2f" + struct.pack("<I", bits)
    assert image_size(lossless) == ("webp", 100, 50)
    ext = (
        b"RIFF"
        + b"\0" * 4
        + b"WEBPVP8X"
        + b"\0" * 4
        + b"\0" * 4
        + (799).to_bytes(3, "little")
        + (599).to_bytes(3, "little")
    )
    assert image_size(ext) == ("webp", 800, 600)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello world, not an image", "not a JPEG"),
        (b"\x89PNG\r\n\x1a\n\0\0", "truncated PNG"),
        (b"\xff\xd8\xff\xe0\x00\x10", "truncated JPEG"),
        (png_bytes(1, 1)[:16] + struct.pack(">II", 0, 5), "0x5"),
    ],
)
def test_bad_headers(data, reason):
    with pytest.raises(BadImage, match=reason):
        image_size(data)


def test_probe_reads_once_for_size_and_md5(tmp_path):
    data = png_bytes(20, 10, [(0, 0, 5, 5, (255, 0, 0))])
    p = tmp_path / "a.png"
    p.write_bytes(data)
    info = probe_image(str(p))
    assert (info.format, info.width, info.height) == ("png", 20, 10)
    assert info.size == len(data) and info.md5 == hashlib.md5(data).hexdigest()


def test_jpeg_with_metadata_beyond_the_first_block(tmp_path):
    # two 60 KB APP1 segments push the frame header past the 64 KiB head
    big = b"\xff\xe1" + struct.pack(">H", 60000) + b"\0" * 59998
    data = jpeg_bytes(640, 360)
    data = data[:2] + big + big + data[2:]
    p = tmp_path / "big.jpg"
    p.write_bytes(data)
    assert (read_image_info(str(p)).width, read_image_info(str(p)).height) == (640, 360)
    assert probe_image(str(p)).md5 == hashlib.md5(data).hexdigest()


def _rchar() -> int:
    """Bytes this process has read through read() so far (Linux /proc/self/io)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def test_probe_without_md5_reads_the_header_only(tmp_path):
    """What a link or move shard needs: format, size (from fstat), no digest, no full read."""
    import os

    if not os.path.exists("/proc/self/io"):
        pytest.skip("needs /proc/self/io to count the bytes read")
    data = jpeg_bytes(1280, 720) + os.urandom(2_000_000)
    p = tmp_path / "photo.jpg"
    p.write_bytes(data)
    before = _rchar()
    info = probe_image(str(p), md5=False)
    read = _rchar() - before
    assert info == ("jpeg", 1280, 720, len(data), "")
    assert read < 64 * 1024, read  # a header, not 2 MB
    full = probe_image(str(p))
    assert full.md5 == hashlib.md5(data).hexdigest() and full[:4] == info[:4]


def test_probe_without_md5_still_finds_far_headers_and_rejects_truncation(tmp_path):
    big = b"\xff\xe1" + struct.pack(">H", 60000) + b"\0" * 59998
    data = jpeg_bytes(640, 360)
    data = data[:2] + big + big + data[2:]
    p = tmp_path / "exif.jpg"
    p.write_bytes(data)  # frame header 120 KB in: beyond the peek, found by walking segments
    assert probe_image(str(p), md5=False) == ("jpeg", 640, 360, len(data), "")
    short = tmp_path / "short.jpg"
    short.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")  # the whole file, no frame header
    with pytest.raises(BadImage, match="truncated JPEG"):
        probe_image(str(short), md5=False)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:70000])  # long, but cut inside the metadata
    with pytest.raises(BadImage, match="truncated JPEG"):
        probe_image(str(cut), md5=False)
    small = tmp_path / "small.png"
    small.write_bytes(png_bytes(3, 2))
    assert probe_image(str(small), md5=False) == ("png", 3, 2, small.stat().st_size, "")
