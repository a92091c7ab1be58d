"""The embedded default job: the whole desktop -> Drive -> Colab loop, offline.

A generated VOC dataset is prepared, pushed through the real Drive code path
(google-api-python-client over HTTP) into an in-process Drive emulator, pushed
again (nothing to do), packed, pulled back as Colab would stage it, and a
checkpoint folder is pruned and its newest complete checkpoint found. No Google
account is needed. Each step reports through ``say`` so the library never prints.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .config import Settings
from .progress import NULL_PROGRESS, Progress

DEMO_TOKEN = "demo-token"
DEMO_WRITE_RATE = 30.0  # new files per second: real Drive's ~3, scaled 10x


@dataclass
class DemoResult:
    workdir: str
    steps: list[dict] = field(default_factory=list)
    ok: bool = True

    def add(self, step: str, summary: str, facts: Optional[dict] = None, **more) -> dict:
        """Record one step: a one-line ``summary`` for people, all facts for --json."""
        row = {"step": step, "summary": summary, **(facts or {}), **more}
        self.steps.append(row)
        return row


def _fake_weights(path: Path, iteration: int, size: int) -> None:
    """A darknet-style weights file: major, minor, revision, seen (int64), payload."""
    header = struct.pack("<iiiq", 0, 2, 0, iteration * 64)
    body = (iteration.to_bytes(4, "little") * (size // 4 + 1))[: max(0, size - len(header))]
    path.write_bytes(header + body)


def run_demo(*, workdir: Optional[Path] = None, images: int = 60, max_files: int = 40,
             latency: float = 0.0, say: Callable[[str], None] = lambda _m: None,
             progress: Progress = NULL_PROGRESS) -> DemoResult:
    from .checkpoints.latest import find_latest
    from .checkpoints.policy import PrunePolicy
    from .checkpoints.prune import prune
    from .datasets.prepare import prepare
    from .datasets.sample import make_sample_voc
    from .emulator import Emulator
    from .hashing import HashCache
    from .remotes import open_remote
    from .sync import pull, push

    own_dir = workdir is None
    work = Path(workdir or tempfile.mkdtemp(prefix="drivesync-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    result = DemoResult(workdir=str(work))
    emu = Emulator(token=DEMO_TOKEN)
    url = emu.start()
    try:
        # Real Drive: ~50 ms a request, ~3 new files/s. The demo runs 10x faster
        # in both, so the ratios (and the pacing) are those of the real thing.
        emu.configure(latency=latency, write_rate=DEMO_WRITE_RATE, write_burst=5)
        settings = Settings(api_endpoint=url, token=DEMO_TOKEN, state_dir=str(work / "state"),
                            write_rate=DEMO_WRITE_RATE * 0.93)
        state = work / "state"  # md5 cache, pack state, temporary files: never ~/.cache
        hashes = HashCache(state / "hashes.sqlite")

        say(f"1/6 generating a sample PASCAL VOC dataset ({images} images) in {work / 'voc'}")
        src = make_sample_voc(work / "voc", images=images)

        say(f"2/6 prepare: VOC -> YOLO labels, shards of <= {max_files} files, darknet + "
            "Ultralytics configs")
        prep = prepare(src, work / "prepared", fmt="voc", max_files=max_files, name="demo",
                       progress=progress)
        result.add("prepare", f"{prep.images} images, {prep.boxes} boxes, "
                   f"{len(prep.classes)} classes, {prep.shards} shards, "
                   f"{prep.train}/{prep.valid} train/valid, root {prep.root}", _facts(prep))
        result.ok &= prep.ok

        remote = open_remote("drive:space_Colab", settings=settings)
        say(f"3/6 push to drive:space_Colab/demo through the Drive v3 API (emulator at {url}, "
            f"{DEMO_WRITE_RATE:g} new files/s allowed)")
        first = push(work / "prepared", remote=remote, path="demo", jobs=4, hash_cache=hashes,
                     write_rate=settings.write_rate, progress=progress, state_dir=state)
        result.add("push", _sync_line(first), _facts(first))
        again = push(work / "prepared", remote=remote, path="demo", jobs=4, hash_cache=hashes,
                     write_rate=settings.write_rate, state_dir=state)
        result.add("re-push", _sync_line(again), _facts(again))
        packed = push(work / "prepared", remote=remote, path="demo-packed", jobs=4, pack=True,
                      hash_cache=hashes, write_rate=settings.write_rate, progress=progress,
                      state_dir=state)
        result.add("push --pack", _sync_line(packed), _facts(packed))
        result.ok &= not (first.failed or again.failed or packed.failed or again.uploaded)

        say("4/6 pull the packed dataset back, as the Colab launcher stages it on local disk")
        staged = work / "colab-local"
        pulled = pull(remote, staged, path="demo-packed", jobs=4, progress=progress,
                      hash_cache=hashes, state_dir=state)
        same = _same_tree(work / "prepared", staged)
        result.add("pull", _sync_line(pulled) + f"; identical to the prepared copy: {same}",
                   _facts(pulled), identical=same)
        result.ok &= same and not pulled.failed

        say("5/6 prune a checkpoint folder on Drive (keep the newest 2, every 1000th, last, best)")
        ckpt_dir = work / "weights"
        ckpt_dir.mkdir(exist_ok=True)
        for it in range(100, 1100, 100):
            _fake_weights(ckpt_dir / f"yolo-obj_{it}.weights", it, 4096)
        _fake_weights(ckpt_dir / "yolo-obj_best.weights", 800, 4096)
        _fake_weights(ckpt_dir / "yolo-obj_last.weights", 1050, 4096)
        # as a trainer writes them: one file every 100 iterations, `last` newest
        now = time.time()
        for age, name in enumerate(["yolo-obj_last.weights", "yolo-obj_1000.weights",
                                    "yolo-obj_900.weights", "yolo-obj_800.weights"]):
            os.utime(ckpt_dir / name, (now - 60 * age, now - 60 * age))
        os.utime(ckpt_dir / "yolo-obj_best.weights", (now - 180, now - 180))
        push(ckpt_dir, remote=remote, path="backup", hash_cache=hashes,
             write_rate=settings.write_rate, state_dir=state)
        policy = PrunePolicy(keep_last=2, keep_every=1000)
        pruned = prune(remote, "backup", policy=policy, lock_dir=work / "state")
        again_pruned = prune(remote, "backup", policy=policy, lock_dir=work / "state")
        result.add("prune", f"deleted {len(pruned.deleted)} of 12 checkpoints "
                   f"({pruned.bytes_freed} bytes), kept {len(pruned.plan.keep)}; "
                   f"a second run deleted {len(again_pruned.deleted)}",
                   deleted=[d.entry.path for d in pruned.plan.delete],
                   kept=[k.entry.path for k in pruned.plan.keep])
        result.ok &= not again_pruned.deleted

        say("6/6 find the newest complete checkpoint (what launch resumes from)")
        newest = find_latest(remote, "backup")
        result.add("latest", newest.entry.path, path=newest.entry.path)
        result.add("drive", f"{emu.counters['requests']} requests in all, "
                   f"{emu.counters.get('rate_limited', 0)} rate-limit errors",
                   requests=emu.counters["requests"],
                   rate_limited=emu.counters.get("rate_limited", 0))
        hashes.close()
        remote.close()
    finally:
        emu.stop()
        if own_dir and result.ok:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _sync_line(r) -> str:
    moved = r.uploaded or r.downloaded
    verb = "downloaded" if r.downloaded else "uploaded"
    extra = f", {r.packed} shards packed" if r.packed else ""
    extra += f", {r.unpacked} shards unpacked" if r.unpacked else ""
    return (f"{moved} files {verb}, {r.skipped} unchanged, {r.failed} failed{extra}; "
            f"{r.requests} requests, {r.retries} retries, {r.seconds:.1f} s")


def _facts(obj) -> dict:
    to_dict = getattr(obj, "to_dict", None)
    return to_dict() if callable(to_dict) else {"result": str(obj)}


def _same_tree(a: Path, b: Path) -> bool:
    """Every file under the shard folders of ``a`` exists in ``b`` with the same bytes."""
    from .hashing import md5_file

    for dirpath, _dirs, files in os.walk(a):
        for name in files:
            src = Path(dirpath) / name
            dst = b / src.relative_to(a)
            if name.startswith(".drivesync") or not dst.is_file():
                if name.startswith(".drivesync"):
                    continue
                return False
            if md5_file(src) != md5_file(dst):
                return False
    return True
