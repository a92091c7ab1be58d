"""Shard a flat folder of image+label pairs: drivesync vs the naive move-one-by-one script.

    python benchmarks/bench_shard.py            # 15,000 pairs of ~125 KB JPEGs, RSS at 15k and 60k
                                                # (median of 3 runs each; about 3 minutes)
    python benchmarks/bench_shard.py --quick    # 2,000 pairs, RSS at 2k and 8k
    python benchmarks/bench_shard.py --pairs 30000 --image-kb 250

Images are JPEGs of realistic size by default (CrowdHuman's are 100-300 KB;
here 100-150 KB, each unique: a valid header, a per-image comment, then a
slice of one shared random block), because the cost that matters is whether
a shard reads whole images: 1.3 KB test PNGs hide it (the old default; still
timed at the end with ``--small`` figures, for comparison).

Each contender runs in its own child process on its own fresh copy of the same
folder, in the same run. Copies are hard-link clones of one generated template
(a move or link renames directory entries; the bytes stay where they are),
so generating 60k images once is enough. The naive script is the usual
notebook snippet: list the images, move each one and its .txt into numbered
folders of 1000 pairs. drivesync does more: it validates every label and every
image header, writes a journal first and a manifest last (a link or move
reads image headers only; ``--mode copy`` also md5s every image). It also
times drivesync without its forked workers, to show whether they pay off (on a
2-core Colab VM they do above a few thousand pairs; on a loaded machine they
may not). The figures are only comparable within one run. Peak RSS is the
child's VmHWM (Linux) or ru_maxrss.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
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
files = sorted(f for f in os.listdir(src) if f.endswith((".png", ".jpg")))
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
from drivesync.api import shard as shard_dataset
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


def _label(rng: random.Random) -> str:
    return "".join(
        f"0 {rng.uniform(0.2, 0.8):.6f} {rng.uniform(0.2, 0.8):.6f} "
        f"{rng.uniform(0.05, 0.3):.6f} {rng.uniform(0.05, 0.3):.6f}\n"
        for _ in range(rng.randint(1, 3))
    )


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
        label = _label(rng)
        (folder / f"frame_{i:06d}.txt").write_text(label)
        total += len(data) + len(label)
    return total


_COMPONENTS = b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"  # 3 components (YCbCr 4:2:0)


def make_jpegs(folder: Path, n: int, *, kb: int = 125, seed: int = 0) -> int:
    """n JPEG-like images of kb +-20% KB (valid headers, each unique) and their labels.

    Fast: one random block is generated once and each image is a slice of it
    after a header with its own dimensions and a comment holding its number
    and 64 random bytes, so no two images are equal (or share a size often).
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = int(kb * 1024 * 0.8), int(kb * 1024 * 1.2)
    block = os.urandom(hi)
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sos = b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    total = 0
    for i in range(n):
        w, h = rng.randrange(640, 1920), rng.randrange(480, 1080)
        comment = f"frame {i:08d} ".encode() + rng.randbytes(64)
        com = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
        sof = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", h, w) + _COMPONENTS
        size = rng.randrange(lo, hi)
        off = rng.randrange(0, hi - size + 1)
        data = b"\xff\xd8" + app0 + com + sof + sos + block[off : off + size] + b"\xff\xd9"
        (folder / f"frame_{i:06d}.jpg").write_bytes(data)
        label = _label(rng)
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


def clone(template: Path, dst: Path) -> None:
    """A fresh source folder: hard links to the template's files (a copy where not possible)."""
    dst.mkdir(parents=True)
    for e in os.scandir(template):
        try:
            os.link(e.path, dst / e.name)
        except OSError:
            shutil.copy2(e.path, dst / e.name)


CONTENDERS = (
    ("naive shutil.move", NAIVE, ()),
    ("drivesync shard --mode move", DRIVESYNC, ("move",)),
    ("drivesync shard --mode link", DRIVESYNC, ("link",)),
    ("drivesync move, no workers", DRIVESYNC, ("move", "serial")),
)


def bench(pairs: int, work: Path, *, kb: int, repeat: int = 1, only: tuple = ()) -> dict:
    """{contender: (median seconds, peak RSS)}; ``kb`` 0 means the old 1.3 KB PNGs.

    The contenders take turns ``repeat`` times (so a burst of background load
    hits all of them), each on a fresh clone of the template."""
    template = work / f"template{pairs}-{kb}"
    t = time.perf_counter()
    size = make_jpegs(template, pairs, kb=kb) if kb else make_pairs(template, pairs)
    kind = f"~{kb} KB JPEGs" if kb else "1.3 KB PNGs"
    print(
        f"made {pairs} pairs of {kind} ({size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s",
        flush=True,
    )
    runs: dict = {}
    for _ in range(repeat):
        for label, code, extra in CONTENDERS:
            if only and label not in only:
                continue
            src, dst = work / f"src{pairs}", work / f"dst{pairs}"
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(dst, ignore_errors=True)
            clone(template, src)
            args = (extra[0], str(2 * pairs), *extra[1:]) if extra else ()
            seconds, rss = run_child(code, str(src), str(dst), *args)
            moved = count_files(dst)
            assert moved >= 2 * pairs, f"{label}: only {moved} files in the output"
            runs.setdefault(label, []).append((seconds, rss))
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(dst, ignore_errors=True)
    shutil.rmtree(template)
    results = {}
    for label, got in runs.items():
        seconds = statistics.median(t for t, _ in got)
        rss = max(r for _, r in got)
        results[label] = (seconds, rss)
        spread = f"  (runs {', '.join(f'{t:.2f}' for t, _ in got)})" if len(got) > 1 else ""
        print(f"  {label:30s} {seconds:6.2f} s   peak RSS {rss / 2**20:6.1f} MiB{spread}")
    return results


def ratios(r: dict) -> str:
    naive = r["naive shutil.move"][0]
    parts = [
        f"{name.split('--mode ')[-1]} {r[label][0] / naive:.2f}x"
        for name, label in (
            ("move", "drivesync shard --mode move"),
            ("link", "drivesync shard --mode link"),
        )
        if label in r
    ]
    move = r.get("drivesync shard --mode move", (naive,))[0]
    return (
        "drivesync / naive: "
        + ", ".join(parts)
        + f"  ({'not slower' if move <= naive else 'SLOWER'})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", type=int, default=15000, help="image+label pairs (default 15000)")
    ap.add_argument("--quick", action="store_true", help="2000 pairs; RSS at 2k and 8k")
    ap.add_argument("--image-kb", type=int, default=125, help="mean image size in KB (default 125)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender; median shown")
    ap.add_argument("--no-rss", action="store_true", help="skip the 4x-larger memory run")
    ap.add_argument("--no-small", action="store_true", help="skip the old 1.3 KB-image figures")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = ap.parse_args()
    pairs = 2000 if args.quick else args.pairs
    kb = args.image_kb
    with tempfile.TemporaryDirectory(prefix="bench_shard_") as tmp:
        work = Path(tmp)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {work}")
        main_run = bench(pairs, work, kb=kb, repeat=args.repeat)
        naive = main_run["naive shutil.move"][0]
        move = main_run["drivesync shard --mode move"][0]
        serial = main_run["drivesync move, no workers"][0]
        print(
            ratios(main_run) + f"; forked workers: {serial / move:.2f}x faster than in-process"
            + ("" if pairs >= 4000 else " (not used below 4000 pairs)")
        )
        doc: dict = {
            "pairs": pairs,
            "image_kb": kb,
            "naive_s": naive,
            "drivesync_move_s": move,
            "drivesync_link_s": main_run["drivesync shard --mode link"][0],
            "drivesync_move_no_workers_s": serial,
            "ratio": move / naive,
            "rss_bytes": {pairs: main_run["drivesync shard --mode link"][1]},
        }
        if not args.no_rss:
            big = 4 * pairs
            need = big * kb * 1024 * 1.3  # the template (clones are hard links)
            big_kb = kb if shutil.disk_usage(work).free > need + 2**30 else 0
            if big_kb != kb:
                print(f"not enough disk for {big} images of {kb} KB: the 4x run uses small ones")
            r = bench(big, work, kb=big_kb, repeat=args.repeat)
            doc["rss_bytes"][big] = r["drivesync shard --mode link"][1]
            doc["big"] = {"pairs": big, "image_kb": big_kb, "naive_s": r["naive shutil.move"][0],
                          "drivesync_move_s": r["drivesync shard --mode move"][0],
                          "drivesync_link_s": r["drivesync shard --mode link"][0]}
            print(ratios(r))
            a, b = doc["rss_bytes"][pairs], doc["rss_bytes"][big]
            print(
                f"peak RSS drivesync shard --mode link: {pairs} pairs {a / 2**20:.1f} MiB, "
                f"{big} pairs {b / 2**20:.1f} MiB; growth {(b - a) / (big - pairs):.0f} bytes "
                f"a pair (the plan and the manifest lines, not the images)"
            )
            doc["rss_growth_bytes_per_pair"] = (b - a) / (big - pairs)
        if not args.no_small and kb:
            print("for comparison, the old benchmark's 1.3 KB PNGs (they hide the cost of reading "
                  "whole images):")
            r = bench(
                pairs, work, kb=0, repeat=args.repeat, only=tuple(c[0] for c in CONTENDERS[:3])
            )
            print(ratios(r))
            doc["small"] = {"pairs": pairs, "naive_s": r["naive shutil.move"][0],
                            "drivesync_move_s": r["drivesync shard --mode move"][0],
                            "drivesync_link_s": r["drivesync shard --mode link"][0]}
        if args.json:
            print(json.dumps(doc))


if __name__ == "__main__":
    main()
