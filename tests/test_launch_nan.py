"""Weights full of NaN (a diverged run) never replace a good checkpoint nor get resumed."""

from __future__ import annotations

import io
import math
import os
import pickle
import random
import struct
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import Heard

from drivesync.checkpoints.latest import pull_latest
from drivesync.cli import main
from drivesync.launch.mirror import Mirror
from drivesync.launch.weights import (
    BF16,
    F16,
    F32,
    F64,
    NonFiniteWeights,
    check_darknet,
    check_pt,
    count_nonfinite,
    scan_floats,
)

BATCH = 4
FAKE = Path(__file__).parent / "fake_trainer.py"
NAN32 = struct.pack("<f", math.nan)


def _reference(data: bytes, fmt: str, size: int) -> int:
    """The obvious (slow) count: unpack every value and ask math."""
    n = len(data) // size
    return sum(1 for v in struct.unpack(f"<{n}{fmt}", data[: n * size]) if not math.isfinite(v))


@pytest.mark.parametrize("layout,fmt,size", [(F32, "f", 4), (F16, "e", 2), (F64, "d", 8)])
def test_count_nonfinite_agrees_with_struct_and_math(layout, fmt, size):
    rng = random.Random(7)
    data = bytes(rng.getrandbits(8) for _ in range(40000 * size // 4))  # random bits: some NaN
    assert count_nonfinite(data, layout) == _reference(data, fmt, size) > 0
    finite = struct.pack("<1000" + fmt, *[rng.uniform(-1e3, 1e3) for _ in range(1000)])
    assert count_nonfinite(finite, layout) == 0
    mixed = finite + struct.pack("<3" + fmt, math.inf, -math.inf, math.nan)
    assert count_nonfinite(mixed, layout) == 3


def test_bfloat16_is_the_top_half_of_a_float32():
    values = [1.5, -2.0, math.inf, math.nan, 3e38, -math.inf, 0.0]
    raw = b"".join(struct.pack("<f", v)[2:] for v in values)
    assert count_nonfinite(raw, BF16) == 3


def test_scan_floats_in_chunks_with_odd_reads(monkeypatch):
    """A value split across two chunk reads is still seen whole."""
    import drivesync.launch.weights as w

    monkeypatch.setattr(w, "_SCAN_CHUNK", 24)
    data = struct.pack("<5f", 1, 2, 3, 4, 5) + NAN32 + struct.pack("<4f", 1, 2, 3, 4) + NAN32

    class Trickle(io.BytesIO):
        def readinto(self, b):  # short reads, as a pipe or a zip member may give
            return super().readinto(memoryview(b)[:7])

    assert scan_floats(Trickle(data), F32) == (2, 11)
    assert scan_floats(io.BytesIO(b"\x00" * 10 + NAN32), F32, limit=8) == (0, 2)


def _weights(path: Path, iteration: int, *, nan: int = 0, floats: int = 500) -> Path:
    vals = [0.25] * (floats - nan) + [math.nan] * nan
    path.write_bytes(struct.pack("<iiiq", 0, 2, 0, iteration * BATCH)
                     + struct.pack(f"<{floats}f", *vals))
    return path


def test_darknet_weights_with_nan_are_refused_with_the_count(tmp_path):
    assert check_darknet(_weights(tmp_path / "y_last.weights", 3), batch=BATCH).iteration == 3
    with pytest.raises(NonFiniteWeights, match="7 of 500 weights are NaN or infinite"):
        check_darknet(_weights(tmp_path / "y_last.weights", 3, nan=7), batch=BATCH)
    assert check_darknet(tmp_path / "y_last.weights", batch=BATCH, scan=False).iteration == 3


def _torch_zip(path: Path, tensors: dict) -> Path:
    """A .pt as torch.save lays it out: data.pkl naming storages, raw data/<key> members."""

    class Storage:
        def __init__(self, kind, key, n):
            self.kind, self.key, self.n = kind, key, n

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", obj.kind, obj.key, "cpu", obj.n)
            return None

    buf = io.BytesIO()
    state = {"epoch": 4, "best_fitness": 0.5, "optimizer": {}, "model": {
        k: Storage(kind, k, len(raw)) for k, (kind, raw) in tensors.items()}}
    P(buf, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("last/data.pkl", buf.getvalue())
        for key, (_kind, raw) in tensors.items():
            z.writestr(f"last/data/{key}", raw)
    return path


def test_pt_tensors_are_scanned_by_their_storage_dtype(tmp_path):
    half_ok = struct.pack("<100e", *[0.5] * 100)
    ints = struct.pack("<50q", *[-1] * 50)  # all bits set: NaN if read as floats, but ints
    good = _torch_zip(tmp_path / "good.pt", {"0": ("HalfStorage", half_ok),
                                             "1": ("LongStorage", ints)})
    assert check_pt(good, load=False).epoch == 4
    half_nan = struct.pack("<100e", *([0.5] * 98 + [math.nan, math.inf]))
    bad = _torch_zip(tmp_path / "bad.pt", {"0": ("HalfStorage", half_nan),
                                           "1": ("FloatStorage", struct.pack("<4f", 1, 2, 3, 4)),
                                           "2": ("LongStorage", ints)})
    with pytest.raises(NonFiniteWeights, match="2 of 104 tensor values"):
        check_pt(bad, load=False)


def test_mirror_keeps_the_good_remote_copy_and_says_why(drive_remote, tmp_path):
    heard = Heard()
    (tmp_path / "backup").mkdir()
    m = Mirror(drive_remote, watch_dir=tmp_path / "backup", path="backup",
               suffixes=(".weights",), check=lambda p: check_darknet(p, batch=BATCH),
               snapshot_dir=tmp_path / "snap", settle_polls=1, progress=heard)
    m.start()
    last = _weights(tmp_path / "backup" / "yolo_last.weights", 10)
    assert len(m.poll()) == 1
    good_md5 = {e.name: e.md5 for e in drive_remote.list("backup")}["yolo_last.weights"]
    _weights(last, 20, nan=480)
    os.utime(last, (time.time() + 5, time.time() + 5))
    _weights(tmp_path / "backup" / "yolo_final.weights", 30, nan=500)
    assert m.poll() == [] and m.stats.rejected == 2
    text = "\n".join(heard.warnings)
    assert "not mirroring yolo_last.weights" in text and "480 of 500 weights are NaN" in text
    assert "the copy already on the remote is kept" in text
    on_drive = {e.name: e.md5 for e in drive_remote.list("backup")}
    assert on_drive == {"yolo_last.weights": good_md5}


def test_latest_pull_skips_a_nan_checkpoint(local_remote, tmp_path):
    root = local_remote.root
    _weights(root / "yolo_last.weights", 10)
    os.utime(root / "yolo_last.weights", (time.time() - 100, time.time() - 100))
    _weights(root / "yolo_final.weights", 20, nan=500)  # newest, and poisoned
    said: list = []
    got = pull_latest(local_remote, dest=str(tmp_path / "out") + "/", on_skip=said.append)
    assert got.entry.name == "yolo_last.weights"
    assert "skipping yolo_final.weights" in said[0] and "NaN" in said[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["yolo_last.weights"]


def test_launch_resumes_past_nan_and_never_mirrors_nan(tmp_path, local_remote, capsys,
                                                       monkeypatch):
    root = local_remote.root
    backup = tmp_path / "backup"
    (tmp_path / "obj.data").write_text(f"classes = 1\nbackup = {backup}\n")
    (tmp_path / "yolo.cfg").write_text(f"[net]\nbatch={BATCH}\nmax_batches=6\n")
    darknet = tmp_path / "darknet"
    darknet.write_text(f'#!/bin/sh\nexec "{sys.executable}" -u "{FAKE}" darknet "$@"\n')
    _weights(root / "yolo_last.weights", 2, floats=10000)
    good = (root / "yolo_last.weights").read_bytes()
    os.utime(root / "yolo_last.weights", (time.time() - 100, time.time() - 100))
    _weights(root / "yolo_final.weights", 4, nan=9000, floats=10000)
    monkeypatch.setenv("FAKE_INTERVAL", "0.0")
    monkeypatch.setenv("FAKE_NAN", "1")  # the run diverges: everything it saves is NaN
    argv = ["launch", "darknet", "--data", str(tmp_path / "obj.data"), "--cfg",
            str(tmp_path / "yolo.cfg"), "--darknet", str(darknet), "--weights", str(root),
            "--work-dir", str(tmp_path / "work"), "--interval", "0.03", "--no-mount", "-v"]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "skipping checkpoint yolo_final.weights" in cap.err and "NaN" in cap.err
    assert "FAKE resumed from yolo_last.weights at iteration 2" in cap.out
    assert "not mirroring yolo_last.weights" in cap.err
    assert (root / "yolo_last.weights").read_bytes() == good
    assert not (root / "yolo_6.weights").exists()
