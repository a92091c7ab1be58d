"""What protects the user's files: the output lock, refusing OUT inside SRC, dry runs
that write nothing, placement across filesystems, check against the manifest, and
forked workers that die with their parent."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from drivesync.api import convert as convert_dataset
from drivesync.api import prepare
from drivesync.api import shard as shard_dataset
from drivesync.cli import main
from drivesync.datasets.lock import out_lock
from drivesync.datasets.place import Executor
from drivesync.datasets.report import Report
from drivesync.datasets.sample import make_sample_voc, png_bytes
from drivesync.errors import EXIT_LOCKED, LockedError
from drivesync.hashing import md5_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return make_sample_voc(tmp_path_factory.mktemp("voc") / "VOC", images=12)


def make_flat(d: Path, n: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (d / f"im{i:04d}.png").write_bytes(png_bytes(4 + i % 5, 4, [(0, 0, 1, 1, (i, 0, 0))]))
        (d / f"im{i:04d}.txt").write_text(f"0 0.5 0.5 0.{i % 9 + 1} 0.5\n")


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): md5_file(p) for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- lock


def test_second_run_on_the_same_out_is_refused(voc, tmp_path, capsys):
    out = tmp_path / "out"
    with out_lock(str(out)):  # another run holds OUT
        with pytest.raises(LockedError, match="another drivesync run"):
            prepare(voc, out, fmt="voc", name="ds")
        assert main(["prepare", str(voc), str(out), "-f", "voc", "-q"]) == EXIT_LOCKED
        assert main(["configs", str(out), "-q"]) in (3, EXIT_LOCKED)  # no manifest yet: 3
        assert "another drivesync run" in capsys.readouterr().err
        assert not (out / "manifest.jsonl").exists()  # the refused run wrote nothing
        # a dry run takes no lock: it writes nothing at all
        assert prepare(voc, out, fmt="voc", name="ds", dry_run=True).placed == 12
    assert prepare(voc, out, fmt="voc", name="ds").ok  # released: the next run works
    with out_lock(str(out)):
        assert main(["configs", str(out), "-q"]) == EXIT_LOCKED


# ---------------------------------------------------------------- source tree


def test_out_inside_src_or_src_inside_out_is_refused(voc, tmp_path, capsys):
    before = tree(voc)
    for out in (voc / "out", voc / "JPEGImages" / "x", voc):
        assert main(["prepare", str(voc), str(out), "-f", "voc", "--mode", "move"]) == 2
    assert "inside the source" in capsys.readouterr().err
    assert main(["prepare", str(voc / "Annotations"), str(voc), "-f", "voc"]) == 2
    link = tmp_path / "link"
    link.symlink_to(voc)  # the same tree under another name
    assert main(["shard", str(link), str(voc / "out")]) == 2
    coco = voc / "ann.json"  # a COCO file: its folder is the source tree
    assert main(["prepare", str(coco), str(voc / "o"), "-f", "coco"]) in (2, 3)
    assert tree(voc) == before


def test_dry_run_writes_nothing_not_even_the_report(voc, tmp_path, capsys):
    out = tmp_path / "out"
    for verb in (["prepare", "-f", "voc"], ["convert", "-f", "voc"]):
        argv = [verb[0], str(voc), str(out), *verb[1:], "--dry-run", "--json"]
        assert main(argv) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["placed"] == 12 and doc["report_path"] is None
        assert not out.exists()
    prepare(voc, out, fmt="voc", name="ds")
    before = tree(out)
    make_sample_voc(tmp_path / "more", images=15)
    res = prepare(tmp_path / "more", out, fmt="voc", name="ds", dry_run=True)
    assert res.placed == 3 and res.kept == 12 and tree(out) == before


# ---------------------------------------------------------------- across filesystems


def other_fs(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no /dev/shm")
    if os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem as the temp folder")
    return Path(tempfile.mkdtemp(prefix="drivesync-test-", dir=shm))


@pytest.mark.parametrize("mode", ["link", "move"])
def test_link_and_move_across_filesystems(tmp_path, mode):
    src = other_fs(tmp_path)
    try:
        make_flat(src / "flat", 5)
        before = tree(src / "flat")
        res = shard_dataset(src / "flat", tmp_path / "out", mode=mode, name="ds", max_files=4)
        assert res.ok and res.images == 5, [p.line() for p in res.report.problems]
        assert sorted(tree(tmp_path / "out" / "ds").values()) == sorted(before.values())
        if mode == "link":  # no hard link possible: independent copies, source untouched
            assert tree(src / "flat") == before
            a, b = src / "flat" / "im0000.png", tmp_path / "out" / "ds" / "000" / "im0000.png"
            assert not os.path.samefile(a, b)
        else:
            assert not list((src / "flat").iterdir())
        assert not list((tmp_path / "out").rglob(".drivesync-partial-*"))
        again = shard_dataset(src / "flat", tmp_path / "out", mode=mode, name="ds", max_files=4)
        assert again.ok and again.placed == 0 and again.kept == 5
    finally:
        subprocess.run(["rm", "-rf", str(src)], check=True)



def test_link_across_filesystems_copies_as_a_copy_and_sees_a_changed_image(tmp_path):
    """No hard link can cross file systems: the run says so and copies with md5s, so a
    re-run after a source image changed (same size, other bytes) copies it again."""
    src = other_fs(tmp_path)
    try:
        make_flat(src / "flat", 3)
        res = shard_dataset(src / "flat", tmp_path / "out", mode="link", name="ds", max_files=4)
        assert res.ok and res.mode == "copy"
        assert any("hard links cannot cross file systems" in p.line()
                   for p in res.report.problems)
        manifest = [json.loads(line) for line in
                    (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[1:]]
        assert all(e["files"][0]["md5"] for e in manifest)  # recorded: a copy
        image = src / "flat" / "im0000.png"
        data = bytearray(image.read_bytes())
        data[-20] ^= 0xFF
        image.write_bytes(bytes(data))
        again = shard_dataset(src / "flat", tmp_path / "out", mode="link", name="ds",
                              max_files=4)
        assert again.ok and (again.placed, again.kept) == (1, 2)
        placed = next((tmp_path / "out" / "ds").rglob("im0000.png"))
        assert placed.read_bytes() == bytes(data)
    finally:
        subprocess.run(["rm", "-rf", str(src)], check=True)

def test_move_across_filesystems_after_a_crash_between_copy_and_unlink(tmp_path):
    src = other_fs(tmp_path)
    try:
        f = src / "a.png"
        f.write_bytes(png_bytes(3, 3))
        size, md5 = f.stat().st_size, md5_file(f)
        (tmp_path / "out" / "ds").mkdir(parents=True)
        (tmp_path / "out" / "ds" / "a.png").write_bytes(f.read_bytes())  # copy done, then killed
        ex = Executor(str(tmp_path / "out"), "move", Report())
        assert ex.run((str(f), "ds/a.png", size, md5, None))
        assert not f.exists() and md5_file(tmp_path / "out" / "ds" / "a.png") == md5
        # a different file at the destination is never replaced, and the source stays
        g = src / "b.png"
        g.write_bytes(png_bytes(4, 4))
        (tmp_path / "out" / "ds" / "b.png").write_bytes(b"someone else's")
        rep = Report()
        ex = Executor(str(tmp_path / "out"), "move", rep)
        assert not ex.run((str(g), "ds/b.png", g.stat().st_size, md5_file(g), None))
        assert g.exists() and "other contents" in rep.problems[0].reason
    finally:
        subprocess.run(["rm", "-rf", str(src)], check=True)


def test_unknown_md5_is_never_taken_as_already_placed(tmp_path):
    """md5 "" (a link or move shard hashes no image): a destination counts as this
    file only when its bytes are the source's; otherwise nothing is lost or replaced."""
    out = tmp_path / "out"
    (out / "ds").mkdir(parents=True)
    data = png_bytes(6, 6, [(0, 0, 3, 3, (200, 10, 10))])
    other = bytearray(data)
    other[-20] ^= 0xFF  # same size, other bytes
    src = tmp_path / "a.png"
    # move: a same-size stranger at the destination is refused, both files stay as they are
    src.write_bytes(data)
    (out / "ds" / "a.png").write_bytes(bytes(other))
    rep = Report()
    assert not Executor(str(out), "move", rep).run((str(src), "ds/a.png", len(data), "", None))
    assert src.read_bytes() == data and (out / "ds" / "a.png").read_bytes() == bytes(other)
    assert "other contents" in rep.problems[0].reason
    # move: an identical copy (a cross-filesystem copy killed before the unlink) is finished
    (out / "ds" / "a.png").write_bytes(data)
    ex = Executor(str(out), "move", Report())
    assert ex.run((str(src), "ds/a.png", len(data), "", None))
    assert not src.exists() and (out / "ds" / "a.png").read_bytes() == data
    # copy / link fallback: a same-size stranger is rewritten from the source, not "kept"
    for mode in ("copy", "link"):
        src.write_bytes(data)
        (out / "ds" / "b.png").write_bytes(bytes(other))
        ex = Executor(str(out), mode, Report())
        assert ex.run((str(src), "ds/b.png", len(data), "", None))
        assert (out / "ds" / "b.png").read_bytes() == data and ex.copied == 1, mode
        assert ex.run((str(src), "ds/b.png", len(data), "", None))  # now identical: no copy
        assert ex.copied == 1 and src.read_bytes() == data
    # the source gone: what is at the destination stays as it is
    src.unlink()
    ex = Executor(str(out), "copy", Report())
    assert ex.run((str(src), "ds/b.png", len(data), "", None))
    assert (out / "ds" / "b.png").read_bytes() == data and ex.copied == 0


# ---------------------------------------------------------------- check vs manifest


def test_check_compares_files_with_the_manifest(voc, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare(voc, out, fmt="voc", name="ds", mode="copy").ok
    ds = out / "ds" / "000"
    (ds / "img_0000.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # valid, but not what was placed
    (ds / "img_0001.png").unlink()
    (ds / "img_0001.txt").unlink()
    img = ds / "img_0002.png"
    data = bytearray(img.read_bytes())
    data[-20] ^= 0xFF  # same size, other bytes (the IEND chunk's neighbourhood)
    img.write_bytes(bytes(data))
    code = main(["check", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    text = "\n".join(doc["problems"])
    assert code == 4
    assert "img_0001.png: listed in the manifest but missing" in text
    assert "img_0001.txt: listed in the manifest but missing" in text
    assert "img_0000.txt" in text and "the manifest says" in text
    assert "img_0002.png" not in text  # same size: trusted without --verify (fast)
    main(["check", str(out), "--json", "--verify"])
    doc = json.loads(capsys.readouterr().out)
    assert any(
        "img_0002.png: md5" in p and "differs from the manifest" in p for p in doc["problems"]
    )
    # a re-run puts back what is missing or has another size
    res = prepare(voc, out, fmt="voc", name="ds", mode="copy")
    assert res.placed == 2 and (ds / "img_0001.png").is_file()
    assert main(["check", str(out), "-q"]) == 0


def _photo(i: int) -> bytes:
    """A JPEG-like image of ~100 KB whose size depends on i (a header, then unique bytes)."""
    sof = b"\xff\xc0\x00\x0b\x08" + (100 + i).to_bytes(2, "big") + (200).to_bytes(2, "big")
    body = random.Random(i).randbytes(100_000 + 97 * i)
    return b"\xff\xd8" + sof + b"\x01\x01\x11\x00" + b"\xff\xda" + body + b"\xff\xd9"


def _rchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/self/io")
def test_check_hashes_only_images_that_share_a_size(tmp_path):
    from drivesync.datasets.check import check_dataset

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(10):
        (src / f"p{i}.jpg").write_bytes(_photo(i))
        (src / f"p{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert shard_dataset(src, out, name="ds", mode="link", max_files=100).ok
    t = _rchar()
    res = check_dataset(str(out))
    assert res.ok and res.images == 10 and res.duplicates == 0
    assert _rchar() - t < 200_000  # ten headers and labels, not 1 MB of images
    ds = out / "ds" / "000"
    (ds / "copy.jpg").write_bytes(_photo(3))  # identical to p3 (same size): hashed, found
    (ds / "copy.txt").write_text("")
    (ds / "other.jpg").write_bytes(_photo(5)[:-9] + b"different")  # same size as p5, not equal
    (ds / "other.txt").write_text("")
    t = _rchar()
    res = check_dataset(str(out))
    read = _rchar() - t
    notes = [p.line() for p in res.report.problems]
    assert res.duplicates == 1 and any("copy.jpg" in n and "same image as" in n for n in notes)
    assert not any("other.jpg" in n and "same image" in n for n in notes)
    assert 4 * 100_000 < read < 6 * 100_000  # only the four images with a shared size


def test_check_verify_compares_recorded_md5s_only(tmp_path, capsys):
    """--verify: a copy's recorded md5 catches a same-size change; a link's "" (unknown)
    is never compared (the image there is the source itself), only read."""
    for mode in ("copy", "link"):
        src, out = tmp_path / mode / "src", tmp_path / mode / "out"
        make_flat(src, 3)
        assert shard_dataset(src, out, name="ds", mode=mode).ok
        img = out / "ds" / "000" / "im0001.png"
        data = bytearray(img.read_bytes())
        data[-20] ^= 0xFF
        img.unlink()  # a new file: a link's source is not touched
        img.write_bytes(bytes(data))
        assert main(["check", str(out), "-q"]) == 0  # same size: trusted without --verify
        code = main(["check", str(out), "--json", "--verify"])
        doc = json.loads(capsys.readouterr().out)
        changed = [p for p in doc["problems"] if "im0001.png: md5" in p]
        if mode == "copy":
            assert code == 4 and changed and "differs from the manifest" in changed[0]
        else:
            assert code == 0 and not changed, doc["problems"]
        (out / "ds" / "000" / "im0002.png").write_bytes(b"\x89PNG garbage")  # now unreadable
        code = main(["check", str(out), "--json", "--verify"])
        doc = json.loads(capsys.readouterr().out)
        assert code == 4 and any("im0002.png: unreadable image" in p for p in doc["problems"])


# ---------------------------------------------------------------- user-level fixes


def test_convert_yolo_and_dry_run_keep_the_classes(tmp_path, capsys):
    make_flat(tmp_path / "y", 3)
    (tmp_path / "y" / "im0001.txt").write_text("2 0.5 0.5 0.1 0.1\n")
    res = convert_dataset(tmp_path / "y", tmp_path / "flat", fmt="yolo")
    assert (tmp_path / "flat" / "classes.txt").read_text() == "class0\nclass1\nclass2\n"
    assert res.classes == ["class0", "class1", "class2"]
    code = main(["prepare", str(tmp_path / "y"), str(tmp_path / "o"), "-f", "yolo", "--dry-run"])
    assert code == 0 and not (tmp_path / "o").exists()
    capsys.readouterr()


def test_boxes_count_the_dataset_on_a_rerun_after_move(voc, tmp_path):
    import shutil

    src = tmp_path / "VOC"
    shutil.copytree(voc, src)
    first = prepare(src, tmp_path / "out", fmt="voc", mode="move", name="ds")
    again = prepare(src, tmp_path / "out", fmt="voc", mode="move", name="ds")
    assert first.boxes > 0 and again.boxes == first.boxes and again.images == 12


# ---------------------------------------------------------------- forked workers

CHILD = """
import sys, time
import drivesync.datasets.workers as w
w.PARALLEL_MIN = 1  # forked workers even for a small set
from drivesync.api import shard as shard_dataset
from drivesync.progress import NullProgress
class Slow(NullProgress):  # told after each placed pair
    def on_progress(self, *, files=0, bytes=0):
        time.sleep(0.02)  # 120 pairs: >2 s, so a loaded machine still finds the run going
try:
    shard_dataset(sys.argv[1], sys.argv[2], max_files=6, mode="move", name="ds", progress=Slow())
except KeyboardInterrupt:
    sys.exit(130)
"""


def alive_in_group(pgid: int) -> list:
    """Processes of a group that are not zombies (zombies are dead, waiting to be reaped)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(d))
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="workers need 2 CPUs")
@pytest.mark.parametrize("how", ["SIGKILL parent", "Ctrl-C"])
def test_workers_die_with_the_run_and_a_rerun_finishes(tmp_path, how):
    src, out = tmp_path / "src", tmp_path / "out"
    make_flat(src, 120)
    before = sorted(tree(src).values())
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(src), str(out)],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        start_new_session=True,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while len(alive_in_group(p.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # wait for the workers
    assert len(alive_in_group(p.pid)) >= 2 and p.poll() is None
    time.sleep(0.1)
    if how == "Ctrl-C":
        os.killpg(p.pid, signal.SIGINT)  # the terminal signals the whole group
        assert p.wait(10) == 130
        assert b"Traceback" not in p.stderr.read()  # no worker prints a KeyboardInterrupt
    else:
        p.kill()
        p.wait(10)
    deadline = time.monotonic() + 5
    while alive_in_group(p.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive_in_group(p.pid) == []
    # The workers inherited the run's flock; the kernel drops it a moment after
    # the last of them is gone (seen to lag the zombie state here), so the re-run
    # waits for it as a user would ("wait for it to finish").
    deadline = time.monotonic() + 5
    while True:
        try:
            res = shard_dataset(src, out, max_files=6, mode="move", name="ds")
            break
        except LockedError:
            assert time.monotonic() < deadline, "the killed run's lock was never released"
            time.sleep(0.05)
    assert res.ok and res.images == 120, [x.line() for x in res.report.problems]
    assert sorted(tree(out / "ds").values()) == before and not list(src.iterdir())
