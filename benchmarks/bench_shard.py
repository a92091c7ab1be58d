"""Shard a flat folder of image+label pairs: drivesync vs the naive move-one-by-one script.

    python benchmarks/bench_shard.py            # 15,000 pairs, plus peak RSS at 15k and 60k
    python benchmarks/bench_shard.py --quick    # 2,000 pairs, RSS at 2k and 8k
    python benchmarks/bench_shard.py --pairs 30000

It also times drivesync without its forked workers, to show whether they pay off
(on a 2-core Colab VM they do above a few thousand pairs; on a loaded machine
they may not). The figures are only comparable within one run.

Each contender runs in its own child process on its own fresh copy of the same
folder, in the same run. The naive script is the usual notebook snippet: list
the images, move each one and its .txt into numbered folders of 1000 pairs.
drivesync does more: it validates every label and image header, md5s every
file, writes a journal first and a manifest last. Peak RSS is the child's
VmHWM (Linux) or ru_maxrss.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NAIVE = r"""
import os, shutil, sys, time
src, dst = sys.argv[1], sys.argv[2]
t = time.perf_counter()
files = sorted(f for f in os.listdir(src) if f.endswith(".png"))
per = 1000
for i, f in enumerate(files):
    d = os.path.join(dst, f"{i // per:03d}")
    os.makedirs(d, exist_ok=True)
    shutil.move(os.path.join(src, f), os.path.join(d, f))
    txt = os.path.splitext(f)[0] + ".txt"
    if os.path.exists(os.path.join(src, txt)):
        shutil.move(os.path.join(src, txt), os.path.join(d, txt))
print(time.perf_counter() - t)
"""

DRIVESYNC = r"""
import sys, time
from drivesync.datasets import workers
from drivesync.datasets.prepare import shard_dataset
src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if len(sys.argv) > 5:
    workers.PARALLEL_MIN = 10**9  # in-process only: does the forked path pay off?
t = time.perf_counter()
res = shard_dataset(src, dst, mode=mode, max_files=2000, name="ds")
elapsed = time.perf_counter() - t
assert res.ok and res.images * 2 == int(sys.argv[4]), (res.images, res.report.problems[:3])
print(elapsed)
"""

RSS = r"""
import resource
try:
    with open("/proc/self/status") as f:
        hwm = [l for l in f if l.startswith("VmHWM")][0].split()[1]
    print(int(hwm) * 1024)
except OSError:
    import sys
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(r if sys.platform == "darwin" else r * 1024)
"""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_pairs(folder: Path, n: int, *, seed: int = 0) -> int:
    """n valid PNGs (~1.3 KB, each unique) and their YOLO labels; returns bytes written."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    raw = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(3 * 16)) for _ in range(16))
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
    idat = _chunk(b"IDAT", zlib.compress(raw))
    end = _chunk(b"IEND", b"")
    total = 0
    for i in range(n):
        note = _chunk(b"tEXt", b"id\0" + f"{i:08d}".encode() + rng.randbytes(300).hex().encode())
        data = head + note + idat + end
        (folder / f"frame_{i:06d}.png").write_bytes(data)
        boxes = rng.randint(1, 3)
        label = "".join(
            f"0 {rng.uniform(0.2, 0.8):.6f} {rng.uniform(0.2, 0.8):.6f} "
            f"{rng.uniform(0.05, 0.3):.6f} {rng.uniform(0.05, 0.3):.6f}\n"
            for _ in range(boxes)
        )
        (folder / f"frame_{i:06d}.txt").write_text(label)
        total += len(data) + len(label)
    return total


def run_child(code: str, *args: str) -> tuple:
    """(seconds the child measured, peak RSS bytes of the child)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    wrapped = code + "\n" + RSS
    out = subprocess.run(
        [sys.executable, "-c", wrapped, *args], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[0]), int(out[1])


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def bench(pairs: int, work: Path) -> dict:
    template = work / f"template{pairs}"
    t = time.perf_counter()
    size = make_pairs(template, pairs)
    print(f"made {pairs} pairs ({size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f}s", flush=True)
    results = {}
    for label, code, extra in (
        ("naive shutil.move", NAIVE, ()),
        ("drivesync shard --mode move", DRIVESYNC, ("move", str(2 * pairs))),
        ("drivesync shard --mode link", DRIVESYNC, ("link", str(2 * pairs))),
        ("drivesync move, no workers", DRIVESYNC, ("move", str(2 * pairs), "serial")),
    ):
        src, dst = work / f"src{pairs}", work / f"dst{pairs}"
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(template, src)
        seconds, rss = run_child(code, str(src), str(dst), *extra)
        moved = count_files(dst)
        assert moved >= 2 * pairs, f"{label}: only {moved} files in the output"
        results[label] = (seconds, rss)
        print(f"  {label:32s} {seconds:7.2f} s   peak RSS {rss / 2**20:6.1f} MiB", flush=True)
    shutil.rmtree(template)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", type=int, default=15000, help="image+label pairs (default 15000)")
    ap.add_argument("--quick", action="store_true", help="2000 pairs; RSS at 2k and 8k")
    ap.add_argument("--no-rss", action="store_true", help="skip the 4x-larger memory run")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = ap.parse_args()
    pairs = 2000 if args.quick else args.pairs
    with tempfile.TemporaryDirectory(prefix="bench_shard_") as tmp:
        work = Path(tmp)
        print(f"python {sys.version.split()[0]}, {work}")
        small = bench(pairs, work)
        naive = small["naive shutil.move"][0]
        move = small["drivesync shard --mode move"][0]
        serial = small["drivesync move, no workers"][0]
        print(
            f"ratio drivesync(move) / naive = {move / naive:.2f}  "
            f"({'not slower' if move <= naive else 'SLOWER'}); "
            f"forked workers: {serial / move:.2f}x faster than in-process"
            + ("" if pairs >= 4000 else " (not used below 4000 pairs)")
        )
        doc = {
            "pairs": pairs,
            "naive_s": naive,
            "drivesync_move_s": move,
            "drivesync_link_s": small["drivesync shard --mode link"][0],
            "drivesync_move_no_workers_s": serial,
            "ratio": move / naive,
            "rss_bytes": {pairs: small["drivesync shard --mode link"][1]},
        }
        if not args.no_rss:
            big = bench(4 * pairs, work)
            doc["rss_bytes"][4 * pairs] = big["drivesync shard --mode link"][1]
            print(
                f"peak RSS drivesync shard: {pairs} pairs "
                f"{doc['rss_bytes'][pairs] / 2**20:.1f} MiB, {4 * pairs} pairs "
                f"{doc['rss_bytes'][4 * pairs] / 2**20:.1f} MiB"
            )
        if args.json:
            print(json.dumps(doc))


if __name__ == "__main__":
    main()
