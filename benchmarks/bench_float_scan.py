"""NaN/Inf scan of a checkpoint's floats: struct.unpack + math.isfinite vs drivesync's scan.

A yolov4-tiny darknet checkpoint holds ~5.9 M float32 (23.5 MB); the mirror scans
every checkpoint before uploading it, so the scan must cost well under a second.
usage: python benchmarks/bench_float_scan.py [MB]
"""

from __future__ import annotations

import io
import math
import random
import struct
import sys
import time

from drivesync.launch.weights import F32, scan_floats


def baseline(data: bytes) -> int:
    bad = 0
    step = 1 << 20
    for i in range(0, len(data), step):
        chunk = data[i:i + step]
        n = len(chunk) // 4
        bad += sum(1 for v in struct.unpack(f"<{n}f", chunk[: n * 4]) if not math.isfinite(v))
    return bad


def main() -> None:
    mb = float(sys.argv[1]) if len(sys.argv) > 1 else 23.5
    n = int(mb * 1e6) // 4
    rng = random.Random(1)
    one = struct.pack("<256f", *[rng.uniform(-2, 2) for _ in range(256)])
    data = (one * (n // 256 + 1))[: n * 4]
    data = data[:-4] + struct.pack("<f", math.nan)
    t0 = time.perf_counter()
    want = baseline(data)
    t_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    got, total = scan_floats(io.BytesIO(data), F32)
    t_ours = time.perf_counter() - t0
    assert got == want == 1 and total == n
    print(f"{n} floats ({len(data) / 1e6:.1f} MB), 1 NaN")
    print(f"baseline struct.unpack+isfinite: {t_base:.3f}s ({len(data) / 1e6 / t_base:.0f} MB/s)")
    print(f"drivesync scan_floats:           {t_ours:.3f}s ({len(data) / 1e6 / t_ours:.0f} MB/s)")
    print(f"ratio: {t_base / t_ours:.1f}x faster")


if __name__ == "__main__":
    main()
