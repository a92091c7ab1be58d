"""How many Drive requests pruning a folder of 1,000 checkpoints costs (goal <= ~15).

    python benchmarks/bench_prune.py              # 1,000 files, keep_last=3
    python benchmarks/bench_prune.py --files 3000 --latency 0.05

The emulator runs in-process (write_rate off, no latency unless asked). The
files are small fake checkpoints uploaded through the Drive remote itself
(``yolov3_<iter>.weights``, plus ``yolov3_last.weights`` and a non-checkpoint
file). A *fresh* DriveRemote then prunes the folder with a policy that deletes
almost everything (keep the newest 3 and every 100,000th iteration, delete for
good), so its request count includes resolving the folder path from scratch.
Requests are counted twice: by the client (``remote.stats.requests``, one per
HTTP round trip) and by the emulator (per operation; inner batch calls are
listed separately because each one still counts against Drive's quota).

The baseline, run on an identical folder in the same run, is what a notebook
cell does: list the folder, then one ``files.delete`` request per file to drop.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drivesync.checkpoints import PrunePolicy, prune  # noqa: E402
from drivesync.config import Settings  # noqa: E402
from drivesync.emulator import Emulator  # noqa: E402
from drivesync.remotes import open_remote  # noqa: E402

TOKEN = "bench"
FOLDER = "space_Colab/backup"
NAIVE_FOLDER = "space_Colab/backup-naive"


def seed(settings: Settings, n: int, work: Path, folder: str = FOLDER) -> float:
    t0 = time.perf_counter()
    src = work / "f.bin"
    with open_remote(f"drive:{folder}", settings=settings) as remote:
        names = [f"yolov3_{(i + 1) * 100}.weights" for i in range(n - 2)]
        names += ["yolov3_last.weights", "obj.data"]
        for name in names:
            src.write_bytes(f"fake checkpoint {name}\n".encode() * 4)
            remote.upload(src, name)
    return time.perf_counter() - t0


def naive_prune(settings: Settings, policy: PrunePolicy) -> tuple[int, float]:
    """The notebook way: the same decisions, executed one delete request at a time."""
    from drivesync.checkpoints.policy import select_prunable

    t0 = time.perf_counter()
    with open_remote(f"drive:{NAIVE_FOLDER}", settings=settings) as remote:
        plan = select_prunable(remote.list(""), policy, permanent=True)
        for decision in plan.delete:
            remote.delete(decision.entry, permanent=True)
        return remote.stats.requests, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000, help="files to seed (default 1000)")
    ap.add_argument("--latency", type=float, default=0.005,
                    help="emulated seconds per request (default 0.005: real Drive's ~0.05 / 10)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp, Emulator(token=TOKEN) as emu:
        work = Path(tmp)
        emu.configure(write_rate=None)
        settings = Settings(api_endpoint=emu.url, token=TOKEN, write_rate=0.0,
                            state_dir=str(work / "state"))
        seconds = seed(settings, args.files, work)
        seed(settings, args.files, work, NAIVE_FOLDER)
        print(f"seeded {args.files} files twice in {seconds:.1f} s each")
        emu.configure(latency=args.latency)
        policy = PrunePolicy(keep_last=3, keep_every=100_000)
        naive_requests, naive_seconds = naive_prune(settings, policy)
        before = dict(emu.counters["ops"])
        t0 = time.perf_counter()
        with open_remote(f"drive:{FOLDER}", settings=settings) as remote:
            result = prune(remote, policy=policy, permanent=True, lock_dir=work / "locks")
            client_requests = remote.stats.requests
        elapsed = time.perf_counter() - t0
        ops = {k: v - before.get(k, 0) for k, v in emu.counters["ops"].items()
               if v - before.get(k, 0)}
        left = [f for f in emu.state.all_files()
                if not f.get("trashed") and f["mimeType"] != "application/vnd.google-apps.folder"]

    inner = {k: ops.pop(k) for k in ("files.delete",) if k in ops}
    print(f"policy: keep_last=3 keep_every=100000 permanent; deleted {len(result.deleted)}, "
          f"kept {len(result.plan.keep)} checkpoints + {len(result.plan.ignored)} other, "
          f"failed {len(result.failed)}; {len(left)} files left on the emulator")
    print(f"client HTTP requests: {client_requests} (prune's own count: {result.requests}) "
          f"in {elapsed:.2f} s")
    print(f"emulator, by operation: {ops}; inner batch calls: {inner}")
    print(f"baseline (list + one delete request per file): {naive_requests} requests "
          f"in {naive_seconds:.2f} s")
    print(f"ratio: {naive_requests / max(1, client_requests):.0f}x fewer requests, "
          f"{naive_seconds / max(elapsed, 1e-9):.1f}x faster (latency {args.latency} s)")
    goal = 15
    print(f"goal <= ~{goal} requests: {'met' if client_requests <= goal else 'NOT met'}")
    return 0 if client_requests <= goal and not result.failed else 1


if __name__ == "__main__":
    sys.exit(main())
