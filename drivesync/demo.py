"""The embedded default job: the whole desktop -> Drive -> Colab loop, offline.

A generated VOC dataset is prepared, pushed through the real Drive code path
(google-api-python-client over HTTP) into an in-process Drive emulator, pushed
again (nothing to do), packed, pulled back as Colab would stage it, and a
checkpoint folder is pruned and its newest complete checkpoint found. No Google
account is needed. Each step is announced through the one channel
(``progress.on_event``), so the library never prints.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

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


@dataclass
class _Demo:
    """What every step of one demo shares: its folder, the Drive remote, caches, the channel."""

    work: Path
    remote: object
    settings: Settings
    hashes: object
    progress: Progress
    result: DemoResult

    @property
    def state(self) -> Path:  # md5 cache, pack state, temporary files: never ~/.cache
        return self.work / "state"

    def push(self, src: Path, path: str, **kw):
        from .sync import push

        return push(src, remote=self.remote, path=path, hash_cache=self.hashes,
                    state_dir=self.state, **kw)


def run_demo(*, workdir: Optional[Path] = None, images: int = 60, max_files: int = 40,
             latency: float = 0.0, progress: Progress = NULL_PROGRESS) -> DemoResult:
    """The six steps against an in-process emulator; the work folder goes unless kept or failed."""
    from .emulator import Emulator
    from .hashing import HashCache, cache_path
    from .remotes import open_remote

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
        hashes = HashCache(cache_path(settings.resolved_state_dir()))
        with open_remote("drive:space_Colab", settings=settings) as remote:
            demo = _Demo(work, remote, settings, hashes, progress, result)
            _prepare_step(demo, images=images, max_files=max_files)
            _push_step(demo, url)
            _pull_step(demo)
            _prune_step(demo)
            _latest_step(demo, emu)
        hashes.close()
    finally:
        emu.stop()
        if own_dir and result.ok:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _prepare_step(demo: _Demo, *, images: int, max_files: int) -> None:
    from .api import prepare
    from .datasets.sample import make_sample_voc

    work, say = demo.work, demo.progress.on_event
    say(f"1/6 generating a sample PASCAL VOC dataset ({images} images) in {work / 'voc'}")
    src = make_sample_voc(work / "voc", images=images)
    say(f"2/6 prepare: VOC -> YOLO labels, shards of <= {max_files} files, darknet + "
        "Ultralytics configs")
    prep = prepare(src, work / "prepared", fmt="voc", max_files=max_files, name="demo",
                   progress=demo.progress)
    demo.result.add("prepare", f"{prep.images} images, {prep.boxes} boxes, "
                    f"{len(prep.classes)} classes, {prep.shards} shards, "
                    f"{prep.train}/{prep.valid} train/valid, root {prep.root}", _facts(prep))
    demo.result.ok &= prep.ok


def _push_step(demo: _Demo, url: str) -> None:
    """Push, push again (nothing to do: the md5 cache and the listing agree), push packed."""
    demo.progress.on_event(
        f"3/6 push to drive:space_Colab/demo through the Drive v3 API (emulator at {url}, "
        f"{DEMO_WRITE_RATE:g} new files/s allowed)")
    prepared, result = demo.work / "prepared", demo.result
    first = demo.push(prepared, "demo", jobs=4, progress=demo.progress)
    result.add("push", _sync_line(first), _facts(first))
    again = demo.push(prepared, "demo", jobs=4)
    result.add("re-push", _sync_line(again), _facts(again))
    packed = demo.push(prepared, "demo-packed", jobs=4, pack=True, progress=demo.progress)
    result.add("push --pack", _sync_line(packed), _facts(packed))
    result.ok &= not (first.failed or again.failed or packed.failed or again.uploaded)


def _pull_step(demo: _Demo) -> None:
    from .sync import pull

    demo.progress.on_event("4/6 pull the packed dataset back, as the Colab launcher stages it "
                           "on local disk")
    staged = demo.work / "colab-local"
    pulled = pull(demo.remote, staged, path="demo-packed", jobs=4, progress=demo.progress,
                  hash_cache=demo.hashes, state_dir=demo.state)
    same = _same_tree(demo.work / "prepared", staged)
    demo.result.add("pull", _sync_line(pulled) + f"; identical to the prepared copy: {same}",
                    _facts(pulled), identical=same)
    demo.result.ok &= same and not pulled.failed


def _fake_backup(ckpt_dir: Path) -> None:
    """Twelve checkpoints as a trainer writes them: one every 100 iterations, `last` newest."""
    ckpt_dir.mkdir(exist_ok=True)
    for it in range(100, 1100, 100):
        _fake_weights(ckpt_dir / f"yolo-obj_{it}.weights", it, 4096)
    _fake_weights(ckpt_dir / "yolo-obj_best.weights", 800, 4096)
    _fake_weights(ckpt_dir / "yolo-obj_last.weights", 1050, 4096)
    now = time.time()
    for age, name in enumerate(["yolo-obj_last.weights", "yolo-obj_1000.weights",
                                "yolo-obj_900.weights", "yolo-obj_800.weights"]):
        os.utime(ckpt_dir / name, (now - 60 * age, now - 60 * age))
    os.utime(ckpt_dir / "yolo-obj_best.weights", (now - 180, now - 180))


def _prune_step(demo: _Demo) -> None:
    """Prune twice: the second run must find nothing left to delete."""
    from .checkpoints.policy import PrunePolicy
    from .checkpoints.prune import prune

    demo.progress.on_event("5/6 prune a checkpoint folder on Drive (keep the newest 2, every "
                           "1000th, last, best)")
    _fake_backup(demo.work / "weights")
    demo.push(demo.work / "weights", "backup")
    policy = PrunePolicy(keep_last=2, keep_every=1000)
    pruned = prune(demo.remote, "backup", policy=policy, lock_dir=demo.state)
    again_pruned = prune(demo.remote, "backup", policy=policy, lock_dir=demo.state)
    demo.result.add("prune", f"deleted {len(pruned.deleted)} of 12 checkpoints "
                    f"({pruned.bytes_freed} bytes), kept {len(pruned.plan.keep)}; "
                    f"a second run deleted {len(again_pruned.deleted)}",
                    deleted=[d.entry.path for d in pruned.plan.delete],
                    kept=[k.entry.path for k in pruned.plan.keep])
    demo.result.ok &= not again_pruned.deleted


def _latest_step(demo: _Demo, emu) -> None:
    from .checkpoints.latest import find_latest

    demo.progress.on_event("6/6 find the newest complete checkpoint (what launch resumes from)")
    newest = find_latest(demo.remote, "backup")
    demo.result.add("latest", newest.entry.path, path=newest.entry.path)
    demo.result.add("drive", f"{emu.counters['requests']} requests in all, "
                    f"{emu.counters.get('rate_limited', 0)} rate-limit errors",
                    requests=emu.counters["requests"],
                    rate_limited=emu.counters.get("rate_limited", 0))


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
