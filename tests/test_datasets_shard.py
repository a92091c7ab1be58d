"""Sharding: planner invariants (hypothesis), real-file runs, and move-mode crash recovery."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesync.api import shard as shard_dataset
from drivesync.datasets.sample import png_bytes
from drivesync.datasets.shard import JOURNAL, load_manifest, plan_shards

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- pure planner

names = st.text(alphabet="abAB", min_size=1, max_size=3)
keys = st.lists(st.tuples(st.sampled_from(["", "d1/", "d2/", "D1/"]), names), max_size=40)


def as_items(pairs):
    return [(f"{d}{s}.jpg", s) for d, s in pairs]


def check_plan(slots, items, max_files, existing=None):
    by = {s.key: s for s in slots}
    assert sorted(by) == sorted({k for k, _ in items})  # every input exactly once
    per = Counter(s.shard for s in slots)
    if existing:
        per.update(sh for k, (sh, _) in existing.items() if k not in by)
    assert all(n * 2 <= max_files for n in per.values())  # limit (pairs: image + label)
    stems = [s.stem.casefold() for s in slots]
    assert len(stems) == len(set(stems))  # collisions resolved, case-insensitively
    return by


@settings(max_examples=60, deadline=None)
@given(keys, st.integers(min_value=2, max_value=9))
def test_plan_limit_uniqueness_and_determinism(pairs, max_files):
    items = as_items(pairs)
    slots = plan_shards(items, max_files=max_files)
    check_plan(slots, items, max_files)
    again = {s.key: s for s in plan_shards(list(reversed(items)), max_files=max_files)}
    assert again == {s.key: s for s in slots}  # input order does not matter
    # shards are filled in order: only the last used shard may have room left
    per = Counter(s.shard for s in slots)
    if per:
        assert sorted(per) == list(range(len(per)))
        assert all(per[i] == max_files // 2 for i in range(len(per) - 1))


@settings(max_examples=60, deadline=None)
@given(keys, keys, st.integers(min_value=2, max_value=9))
def test_plan_stable_under_additions(first, more, max_files):
    a = as_items(first)
    old = {s.key: (s.shard, s.stem) for s in plan_shards(a, max_files=max_files)}
    both = a + as_items(more)
    slots = plan_shards(both, existing=old, max_files=max_files)
    by = check_plan(slots, both, max_files)
    for k, (shard, stem) in old.items():
        assert (by[k].shard, by[k].stem) == (shard, stem)  # nothing already placed moves


def test_plan_fills_room_then_new_shards_and_respects_foreign_files():
    old = {"a.jpg": (0, "a"), "b.jpg": (1, "b")}
    slots = plan_shards(
        [("a.jpg", "a"), ("c.jpg", "c"), ("d.jpg", "d"), ("e.jpg", "a")],
        existing=old,
        foreign={0: 1},
        taken={"X"},
        max_files=4,
    )
    got = {s.key: (s.shard, s.stem) for s in slots}
    # shard 0 holds a (2 files) + 1 foreign file: no room; shard 1 has b and room for one pair
    assert got == {"a.jpg": (0, "a"), "c.jpg": (1, "c"), "d.jpg": (2, "d"), "e.jpg": (2, "a_1")}


# ---------------------------------------------------------------- real files


def md5(p):
    return hashlib.md5(Path(p).read_bytes()).hexdigest()


def make_flat(root: Path, n: int, *, start: int = 0, sub: str = ""):
    d = root / sub if sub else root
    d.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        (d / f"im{i:04d}.png").write_bytes(png_bytes(4 + i % 5, 4, [(0, 0, 1, 1, (i % 256, 0, 0))]))
        (d / f"im{i:04d}.txt").write_text(f"0 0.5 0.5 0.{i % 9 + 1} 0.5\n")


def tree(root: Path):
    return {str(p.relative_to(root)): md5(p) for p in root.rglob("*") if p.is_file()}


def shard_files(out: Path, name: str):
    files = {}
    for d in sorted((out / name).iterdir()):
        if d.is_dir() and d.name.isdigit():
            for f in d.iterdir():
                files[f"{d.name}/{f.name}"] = md5(f)
    return files


def test_link_mode_layout_collisions_and_source_untouched(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_flat(src, 3, sub="a")
    make_flat(src, 3, sub="b")  # same names in another folder: a/im0000 and b/im0000
    before = tree(src)
    res = shard_dataset(src, out, max_files=4, name="ds")
    assert res.ok, [p.line() for p in res.report.problems]
    files = shard_files(out, "ds")
    assert len(files) == 12 and res.shards == 3
    for shard in ("000", "001", "002"):
        stems = [Path(f).stem for f in files if f.startswith(shard)]
        assert Counter(stems) == {s: 2 for s in set(stems)}  # image and label side by side
    assert sorted(Path(f).stem for f in files if f.endswith(".png")) == [
        "im0000",
        "im0000_1",
        "im0001",
        "im0001_1",
        "im0002",
        "im0002_1",
    ]
    assert Counter(files.values()) == Counter(before.values())  # every file once, same bytes
    assert tree(src) == before
    m = load_manifest(str(out))
    assert len(m.entries) == 6 and all(len(f) == 2 for _, _, f in m.entries.values())
    shard, stem, (img, lab) = m.entries["b/im0001.png"]
    assert img[1] == f"ds/{shard:03d}/{stem}.png"
    assert img[3] == ""  # a link records no image md5 (unknown): it is the same file
    assert lab[3] == before["b/im0001.txt"]  # labels are read whole anyway: md5 kept
    assert os.path.samefile(src / "b" / "im0001.png", out / img[1])  # hard link


def test_rerun_with_new_images_keeps_old_places(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_flat(src, 5)
    shard_dataset(src, out, max_files=4, mode="copy", name="ds")
    first = shard_files(out, "ds")
    make_flat(src, 4, start=5)
    res = shard_dataset(src, out, max_files=4, mode="copy", name="ds")
    assert (res.kept, res.placed) == (5, 4)
    second = shard_files(out, "ds")
    assert all(second[k] == v for k, v in first.items())  # nothing moved or changed
    # shard 002 had one pair and room for one more: the first new one fills it
    assert "002/im0005.png" in second and "003/im0006.png" in second
    res = shard_dataset(src, out, max_files=4, mode="copy", name="ds")
    assert (res.kept, res.placed) == (9, 0)


def test_dry_run_writes_nothing(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_flat(src, 3)
    res = shard_dataset(src, out, max_files=2, dry_run=True, name="ds")
    assert res.placed == 3 and res.shards == 3 and not out.exists()


# ---------------------------------------------------------------- move mode crashes

CHILD = """
import os, sys, time
import drivesync.datasets.workers
from drivesync.api import shard as shard_dataset
crash = int(sys.argv[3])
if len(sys.argv) > 4:
    drivesync.datasets.workers.PARALLEL_MIN = 1  # forked workers, even for a small test set
from drivesync.progress import NullProgress
class Crash(NullProgress):  # told after each placed item: dies right after the Nth
    n = 0
    def on_progress(self, *, files=0, bytes=0):
        self.n += 1
        if self.n == crash:
            os._exit(9)
        if crash < 0:
            time.sleep(0.002)  # widen the window a random SIGKILL can hit
shard_dataset(sys.argv[1], sys.argv[2], max_files=6, mode="move", name="ds", progress=Crash())
"""


def child(src, out, crash=0, parallel=False, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = [str(src), str(out), str(crash)] + (["parallel"] if parallel else [])
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **kw,
    )


def assert_all_once(src: Path, out: Path, before: dict):
    after_src = tree(src)
    shards = shard_files(out, "ds")
    assert not after_src, f"left in the source: {sorted(after_src)[:5]}"
    assert Counter(shards.values()) == Counter(before.values())
    assert not (out / JOURNAL).exists()
    m = load_manifest(str(out))
    assert len(m.entries) == len(before) // 2


def test_move_crash_after_k_items_then_rerun(tmp_path):
    for k in (1, 4, 11):
        src, out = tmp_path / f"src{k}", tmp_path / f"out{k}"
        make_flat(src, 12)
        before = tree(src)
        assert child(src, out, crash=k).wait() == 9
        assert (out / JOURNAL).exists()
        moved = sum(1 for _ in src.glob("*.png"))
        assert moved == 12 - k
        if k == 4:  # also a crash between link and unlink: one inode under both names
            m_src = sorted(src.glob("*.png"))[0]
            journal = [json.loads(x) for x in (out / JOURNAL).read_text().splitlines()[1:]]
            dst = next(f["dst"] for e in journal for f in e["files"] if f["src"] == str(m_src))
            (out / dst).parent.mkdir(parents=True, exist_ok=True)
            os.link(m_src, out / dst)
        res = shard_dataset(src, out, max_files=6, mode="move", name="ds")
        assert res.recovered == 12 and res.ok
        assert_all_once(src, out, before)


@pytest.mark.parametrize("parallel", [False, True])
def test_move_killed_at_random_points(tmp_path, parallel):
    rng = random.Random(1)
    src, out = tmp_path / "src", tmp_path / "out"
    make_flat(src, 150)
    before = tree(src)
    mid_run = 0
    for _ in range(6):
        p = child(src, out, crash=-1, parallel=parallel)
        # the random moment counts from the child's first write (its start-up varies
        # with the machine's load), so a kill can land while files are being moved
        deadline = time.monotonic() + 30
        while p.poll() is None and not (out / JOURNAL).exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.3))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            mid_run += (out / JOURNAL).exists()
        p.wait()
    res = shard_dataset(src, out, max_files=6, mode="move", name="ds")
    assert res.ok, [p.line() for p in res.report.problems]
    assert_all_once(src, out, before)
    assert mid_run >= 1  # at least one kill landed while files were being moved


def test_move_leaves_bad_pairs_in_place_and_writes_background_labels(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_flat(src, 3)
    (src / "bg.png").write_bytes(png_bytes(5, 5))  # no label: background image
    (src / "bad.png").write_bytes(png_bytes(5, 5))
    (src / "bad.txt").write_text("0 0.5 0.5 1.5 0.5\n")  # w > 1
    (src / "broken.png").write_bytes(b"")  # zero-byte image
    (src / "broken.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    res = shard_dataset(src, out, mode="move", name="ds")
    assert not res.ok and res.images == 4 and res.skipped_items == 2
    assert sorted(p.name for p in src.iterdir()) == [
        "bad.png",
        "bad.txt",
        "broken.png",
        "broken.txt",
    ]
    files = shard_files(out, "ds")
    assert files["000/bg.txt"] == hashlib.md5(b"").hexdigest()
    lines = [p.line() for p in res.report.problems]
    assert any("bad.txt:line 1: values must be in [0, 1]" in x for x in lines)
    assert any("broken.png" in x and "0 bytes" in x for x in lines)
    assert any("bg.png" in x and "background" in x for x in lines)


# ---------------------------------------------------------------- image md5s by mode


def photo(i: int, kb: int = 200) -> bytes:
    """A JPEG-like photo of about ``kb`` KB (a real header, then unique bytes), size varies."""
    rng = random.Random(i)
    sof = b"\xff\xc0\x00\x0b\x08" + (480 + i).to_bytes(2, "big") + (640).to_bytes(2, "big")
    body = rng.randbytes(kb * 1024 + 37 * i)
    return b"\xff\xd8" + sof + b"\x01\x01\x11\x00" + b"\xff\xda" + body + b"\xff\xd9"


def make_photos(root: Path, n: int, **kw) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"ph{i:03d}.jpg").write_bytes(photo(i, **kw))
        (root / f"ph{i:03d}.txt").write_text(f"0 0.5 0.5 0.{i % 9 + 1} 0.5\n")


def rchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


needs_io = pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/self/io")


@needs_io
@pytest.mark.parametrize("mode", ["link", "move", "copy"])
def test_only_a_copy_reads_and_hashes_whole_images(tmp_path, mode):
    src, out = tmp_path / "src", tmp_path / "out"
    make_photos(src, 8)
    before = tree(src)
    t = rchar()
    res = shard_dataset(src, out, mode=mode, name="ds", max_files=6)
    read = rchar() - t
    assert res.ok and res.images == 8, [p.line() for p in res.report.problems]
    images = 8 * 200 * 1024
    if mode == "copy":
        assert read >= images  # every image hashed (and copied)
    else:
        assert read < images // 10, read  # headers and labels only
    m = load_manifest(str(out))
    for key, (_, _, (img, lab)) in m.entries.items():
        assert img[3] == ("" if mode != "copy" else before[key]), (mode, key, img)
        assert lab[3] == before[key[:-4] + ".txt"]  # labels: always a real md5
    assert Counter(shard_files(out, "ds").values()) == Counter(before.values())


@pytest.mark.parametrize("mode", ["link", "move", "copy"])
def test_general_path_records_image_md5_only_for_a_copy(tmp_path, mode):
    """VOC/COCO/CrowdHuman and the flat convert go through write_shards: same rule."""
    from drivesync.api import convert as convert_dataset

    src, out = tmp_path / "src", tmp_path / "flat"
    make_photos(src, 3, kb=20)
    before = tree(src)
    res = convert_dataset(src, out, fmt="yolo", mode=mode)
    assert res.ok and res.images == 3
    m = load_manifest(str(out))
    got = {key: img[3] for key, (_, _, (img, _)) in m.entries.items()}
    assert got == {k: (before[k] if mode == "copy" else "") for k in got} and len(got) == 3
    again = convert_dataset(src, out, fmt="yolo", mode=mode)
    assert again.ok and again.placed == 0 and again.kept == 3


@pytest.mark.parametrize("mode", ["link", "move"])
def test_rerun_of_link_and_move_keeps_everything(tmp_path, mode):
    src, out = tmp_path / "src", tmp_path / "out"
    make_photos(src, 6, kb=20)
    shard_dataset(src, out, mode=mode, name="ds", max_files=4)
    placed = shard_files(out, "ds")
    res = shard_dataset(src, out, mode=mode, name="ds", max_files=4)
    assert res.ok and (res.kept, res.placed) == (6, 0)
    assert shard_files(out, "ds") == placed
    assert load_manifest(str(out)).entries["ph000.jpg"][2][0][3] == ""


def test_move_rerun_never_takes_a_put_back_image_on_its_size(tmp_path):
    """md5 "" is unknown: a source image back under a moved key, same size, other bytes,
    is not "kept" and does not replace the placed one; an identical one is finished."""
    src, out = tmp_path / "src", tmp_path / "out"
    make_photos(src, 3, kb=20)
    before = tree(src)
    shard_dataset(src, out, mode="move", name="ds", max_files=100)
    placed = shard_files(out, "ds")
    other = bytearray(photo(0, kb=20))
    other[-100] ^= 0xFF  # same size, same header, other bytes
    (src / "ph000.jpg").write_bytes(bytes(other))
    (src / "ph000.txt").write_text("0 0.5 0.5 0.1 0.5\n")  # its label, as it was
    (src / "ph001.jpg").write_bytes(photo(1, kb=20))  # an identical copy put back
    (src / "ph001.txt").write_text("0 0.5 0.5 0.2 0.5\n")
    res = shard_dataset(src, out, mode="move", name="ds", max_files=100)
    assert shard_files(out, "ds") == placed  # nothing placed was replaced
    text = "\n".join(p.line() for p in res.report.problems)
    assert "other contents" in text and "ph000.jpg" in text
    assert md5(src / "ph000.jpg") == hashlib.md5(bytes(other)).hexdigest()  # left in place
    assert (src / "ph000.txt").exists()  # with its label: the pair is not split
    assert not (src / "ph001.jpg").exists() and not (src / "ph001.txt").exists()
    assert Counter(placed.values()) == Counter(before.values())


@pytest.mark.parametrize("mode", ["move", "link"])
def test_an_image_back_without_its_label_never_empties_the_placed_label(tmp_path, mode):
    """After a move the placed label is the only copy: an image put back in the source
    without it is not made a background image (an empty label over the real one)."""
    src, out = tmp_path / "src", tmp_path / "out"
    make_photos(src, 2, kb=20)
    shard_dataset(src, out, mode=mode, name="ds", max_files=100)
    placed = shard_files(out, "ds")
    label = next(p for p in (out / "ds").rglob("ph000.txt"))
    text = label.read_text()
    assert text.strip()
    (src / "ph000.txt").unlink(missing_ok=True)
    if mode == "move":
        (src / "ph000.jpg").write_bytes(photo(0, kb=20))  # an identical copy put back
    res = shard_dataset(src, out, mode=mode, name="ds", max_files=100)
    assert label.read_text() == text
    assert not res.ok and "holds one: kept" in "\n".join(p.line() for p in res.report.problems)
    assert shard_files(out, "ds") == placed
    entry = load_manifest(str(out)).entries["ph000.jpg"]
    assert entry[2][1][2] == len(text.encode())  # the manifest still records the real label


def test_a_yolo_dry_run_walks_the_real_runs_path(tmp_path):
    """Issue 11: a dry run once planned YOLO input with write_shards while the real run
    used the pair fast path; both now go through shard_yolo, only the Apply differs."""
    from drivesync.api import prepare
    from drivesync.progress import NullProgress

    class Steps(NullProgress):
        def __init__(self):
            self.descs, self.items = [], 0

        def on_start(self, *, files, bytes, desc=""):
            self.descs.append(desc)

        def on_progress(self, *, files=0, bytes=0):
            self.items += 1

    src = tmp_path / "src"
    make_flat(src, 7)
    (src / "im0003.txt").write_text("9 0.5 0.5 2 0.5\n")      # a bad label: one skipped item
    (src / "im0005.txt").write_text("")                       # a background image
    runs = {}
    for dry in (True, False):
        steps = Steps()
        res = prepare(src, tmp_path / "out", fmt="yolo", classes="a", name="ds", max_files=4,
                      mode="copy", dry_run=dry, check=False, progress=steps)
        runs[dry] = (res, steps)
    (dry, dsteps), (real, rsteps) = runs[True], runs[False]
    assert dsteps.descs == rsteps.descs == ["validate and copy"]
    assert dsteps.items == rsteps.items == 7
    same = ("placed", "kept", "shards", "images", "train", "valid", "skipped_items",
            "skipped_boxes", "problems", "classes")
    assert [getattr(dry, k) for k in same] == [getattr(real, k) for k in same]
    assert (dry.placed, dry.shards, dry.skipped_items) == (6, 4, 1) and not dry.ok
    assert dry.dry_run and not real.dry_run and dry.report_path is None
