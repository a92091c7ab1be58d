"""push / pull to an S3 server: drivesync vs a naive fsspec loop vs ``rclone copy``.

    python benchmarks/bench_objstore.py                     # 300 x 64 KiB + 2 x 40 MiB
    python benchmarks/bench_objstore.py --small 1000 --large 0 --jobs-sweep 4,8,16,32

moto's S3 server runs as a subprocess (``moto_server``) on 127.0.0.1, so the
server does not share the client's interpreter; every contender talks to the
same server in the same run, each into a fresh prefix:

* **drivesync**: ``push`` / ``pull`` through the Python API (what the CLI runs),
  at the object-store default of 16 parallel transfers unless ``--jobs``;
* **naive**: an fsspec loop, ``fs.put(file)`` / ``fs.get(file)`` one file after
  another (what a notebook cell does);
* **rclone**: ``rclone copy`` with its S3 backend pointed at the same endpoint
  (defaults: 4 transfers, and once with ``--transfers`` equal to ours). Skipped
  with a note when the rclone binary is absent (``apt-get install rclone``).

Also timed: an unchanged re-push (drivesync skips by size + md5 from the
listing; rclone by size + modtime). ``--jobs-sweep`` times drivesync's push at
several parallelism levels: how the default was picked. Figures on a loopback
moto server are CPU-bound (moto and the client share the machine's cores); on
real S3 each request waits on the network, and parallelism helps more.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drivesync.config import Settings  # noqa: E402
from drivesync.hashing import HashCache  # noqa: E402
from drivesync.remotes import open_remote  # noqa: E402
from drivesync.sync import pull, push  # noqa: E402

BUCKET = "bench"
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).with_name("moto_server")
    port = free_port()
    proc = subprocess.Popen([str(exe) if exe.exists() else "moto_server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start (pip install 'moto[server]')")


def make_data(root: Path, *, small: int, small_size: int, large: int, large_mib: int) -> int:
    total = 0
    for i in range(small):
        p = root / f"images/{i % 10:03d}/img{i:05d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(small_size))
        total += small_size
    for i in range(large):
        p = root / f"weights/epoch{i}.pt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(large_mib << 20))
        total += large_mib << 20
    return total


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def rclone_env(url: str) -> dict:
    env = dict(os.environ)
    # rclone's AWS SDK refuses a custom CA bundle on its HTTP transport; loopback is plain HTTP
    env.pop("AWS_CA_BUNDLE", None)
    env.update({"RCLONE_CONFIG_MOTO_TYPE": "s3", "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
                "RCLONE_CONFIG_MOTO_ENDPOINT": url,
                "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": KEYS["AWS_ACCESS_KEY_ID"],
                "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": KEYS["AWS_SECRET_ACCESS_KEY"],
                "RCLONE_CONFIG_MOTO_REGION": "us-east-1",
                "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true"})
    return env


def rclone(args: list, url: str) -> None:
    subprocess.run(["rclone", *args, "-q"], env=rclone_env(url), check=True)


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=300, help="small files (default 300)")
    ap.add_argument("--small-kib", type=int, default=64, help="size of each (default 64)")
    ap.add_argument("--large", type=int, default=2, help="large files (default 2)")
    ap.add_argument("--large-mib", type=int, default=40, help="size of each (default 40)")
    ap.add_argument("--jobs", type=int, default=None, help="drivesync jobs (default: 16)")
    ap.add_argument("--jobs-sweep", default="", help="e.g. 4,8,16,32: time push at each")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.update(KEYS)
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        os.environ.pop(var, None)

    proc, url = start_moto()
    try:
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=url, skip_instance_cache=True)
        fs.mkdir(BUCKET)
        settings = Settings(api_endpoint=url)
        with tempfile.TemporaryDirectory(prefix="bench-objstore-") as tmp:
            tmp = Path(tmp)
            src = tmp / "src"
            total = make_data(src, small=args.small, small_size=args.small_kib << 10,
                              large=args.large, large_mib=args.large_mib)
            files = files_of(src)
            mib = total / (1 << 20)
            cache = HashCache(None)
            for f in files:  # hash once up front, as a second push would find them cached
                cache.md5(f)
            print(f"data: {len(files)} files, {mib:.1f} MiB ({args.small} x "
                  f"{args.small_kib} KiB + {args.large} x {args.large_mib} MiB); "
                  f"moto_server at {url}; {os.cpu_count()} CPU cores")

            def ours_push(prefix: str, jobs: Optional[int] = None) -> float:
                with open_remote(f"s3://{BUCKET}/{prefix}", settings=settings) as remote:
                    j = jobs or args.jobs or remote.features.default_jobs or 4
                    return timed(lambda: push(src, remote=remote, jobs=j, hash_cache=cache,
                                              state_dir=tmp / "state"))

            def ours_pull(prefix: str, dest: Path) -> float:
                with open_remote(f"s3://{BUCKET}/{prefix}", settings=settings) as remote:
                    j = args.jobs or remote.features.default_jobs or 4
                    return timed(lambda: pull(remote, dest, jobs=j, hash_cache=HashCache(None),
                                              state_dir=tmp / "state"))

            def naive_push(prefix: str) -> float:
                def run() -> None:
                    for f in files:
                        fs.put(str(f), f"{BUCKET}/{prefix}/{f.relative_to(src).as_posix()}")
                return timed(run)

            def naive_pull(prefix: str, dest: Path) -> float:
                def run() -> None:
                    for f in files:
                        rel = f.relative_to(src).as_posix()
                        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                        fs.get(f"{BUCKET}/{prefix}/{rel}", str(dest / rel))
                return timed(run)

            rows: list[tuple[str, str, float]] = []
            rows.append(("push", "naive fsspec loop", naive_push("naive")))
            rows.append(("push", "drivesync", ours_push("ours")))
            rows.append(("re-push (unchanged)", "drivesync", ours_push("ours")))
            have_rclone = shutil.which("rclone") is not None
            j = args.jobs or 16
            if have_rclone:
                rows.append(("push", "rclone copy (4 transfers)", timed(
                    lambda: rclone(["copy", str(src), f"moto:{BUCKET}/rclone"], url))))
                rows.append(("push", f"rclone copy ({j} transfers)", timed(
                    lambda: rclone(["copy", str(src), f"moto:{BUCKET}/rclone{j}",
                                    "--transfers", str(j)], url))))
                rows.append(("re-push (unchanged)", "rclone copy (4 transfers)", timed(
                    lambda: rclone(["copy", str(src), f"moto:{BUCKET}/rclone"], url))))
            rows.append(("pull", "naive fsspec loop", naive_pull("ours", tmp / "p-naive")))
            rows.append(("pull", "drivesync", ours_pull("ours", tmp / "p-ours")))
            if have_rclone:
                rows.append(("pull", "rclone copy (4 transfers)", timed(
                    lambda: rclone(["copy", f"moto:{BUCKET}/ours", str(tmp / "p-rc")], url))))
                rows.append(("pull", f"rclone copy ({j} transfers)", timed(
                    lambda: rclone(["copy", f"moto:{BUCKET}/ours", str(tmp / "p-rc16"),
                                    "--transfers", str(j)], url))))
            for d in ("p-ours", "p-naive"):
                got = sorted(p.relative_to(tmp / d) for p in files_of(tmp / d))
                assert got == [p.relative_to(src) for p in files], f"{d}: files differ"

            print(f"\n{'operation':22} {'who':28} {'seconds':>8} {'MiB/s':>8} {'vs naive':>9} "
                  f"{'vs drivesync':>13}")
            for op in ("push", "re-push (unchanged)", "pull"):
                base = {w: s for o, w, s in rows if o == op}
                naive = base.get("naive fsspec loop")
                ours = base.get("drivesync")
                for o, who, secs in rows:
                    if o != op:
                        continue
                    vs_naive = f"{naive / secs:8.2f}x" if naive else "        -"
                    vs_ours = f"{ours / secs:12.2f}x" if ours else "            -"
                    print(f"{op:22} {who:28} {secs:8.2f} {mib / secs:8.1f} {vs_naive} "
                          f"{vs_ours}")
            if not have_rclone:
                print("note: rclone not found (apt-get install rclone): rclone rows skipped")
            print("(vs naive / vs drivesync: how many times faster than that row's contender; "
                  "<1 means slower)")

            if args.jobs_sweep:
                print("\ndrivesync push by parallelism (each into a fresh prefix):")
                for n in [int(x) for x in args.jobs_sweep.split(",") if x.strip()]:
                    secs = ours_push(f"sweep{n}", jobs=n)
                    print(f"  jobs={n:3d}  {secs:7.2f}s  {mib / secs:7.1f} MiB/s  "
                          f"{len(files) / secs:7.1f} files/s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
