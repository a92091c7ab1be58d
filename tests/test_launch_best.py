"""_best on the remote stays the best across restarts (mAP / best_fitness in a sidecar)."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

from conftest import Heard

from drivesync.launch.best import pt_best_fitness, read_record, sidecar_name
from drivesync.launch.mirror import Mirror
from drivesync.launch.weights import check_darknet, check_pt

BATCH = 2


def _weights(path: Path, iteration: int, fill: float) -> Path:
    path.write_bytes(struct.pack("<iiiq", 0, 2, 0, iteration * BATCH)
                     + struct.pack("<200f", *[fill] * 200))
    return path


def _mirror(remote, tmp_path: Path, metric: dict, warnings: list) -> Mirror:
    (tmp_path / "backup").mkdir(exist_ok=True)
    heard = Heard()
    heard.warnings = warnings
    return Mirror(remote, watch_dir=tmp_path / "backup", path="backup", suffixes=(".weights",),
                  check=lambda p: check_darknet(p, batch=BATCH),
                  snapshot_dir=tmp_path / "snap", settle_polls=1,
                  progress=heard,
                  best_metric=lambda snap, name: metric.get("map"))


def test_a_worse_best_after_a_restart_never_replaces_the_remote_best(drive_remote, tmp_path):
    warnings: list = []
    metric = {"map": ("mAP@0.50", 0.0052)}
    m = _mirror(drive_remote, tmp_path, metric, warnings)
    m.start()
    best = _weights(tmp_path / "backup" / "yolo_best.weights", 100, 0.5)
    assert [r.name for r in m.poll()] == ["yolo_best.weights"]
    good = {e.name: e.md5 for e in drive_remote.list("backup")}["yolo_best.weights"]
    rec = read_record(drive_remote, "backup", "yolo_best.weights")
    assert rec and rec.metric == 0.0052 and rec.md5 == good
    assert sidecar_name("yolo_best.weights") not in {e.name for e in drive_remote.list("backup")}

    # a new runtime: darknet forgot its best, says "New best mAP!" at 0.074 %
    warnings.clear()
    metric["map"] = ("mAP@0.50", 0.00074)
    m2 = _mirror(drive_remote, tmp_path, metric, warnings)
    m2.start()
    _weights(best, 200, 0.25)
    assert m2.poll() == []
    assert "not mirroring yolo_best.weights: its mAP@0.50 0.00074 is not above" in warnings[0]
    assert "0.0052 of the copy on the remote" in warnings[0]
    assert {e.name: e.md5 for e in drive_remote.list("backup")}["yolo_best.weights"] == good

    # a real improvement replaces it, and the record follows
    metric["map"] = ("mAP@0.50", 0.01)
    _weights(best, 300, 0.125)
    assert [r.name for r in m2.poll()] == ["yolo_best.weights"]
    rec = read_record(drive_remote, "backup", "yolo_best.weights")
    assert rec.metric == 0.01
    assert rec.md5 == {e.name: e.md5 for e in drive_remote.list("backup")}["yolo_best.weights"]


def test_junk_sidecar_counts_as_no_record(local_remote, tmp_path):
    (local_remote.root / "backup").mkdir()
    (local_remote.root / "backup" / sidecar_name("yolo_best.weights")).write_text("[1, 2")
    assert read_record(local_remote, "backup", "yolo_best.weights") is None
    (local_remote.root / "backup" / sidecar_name("yolo_best.weights")).write_text(
        '{"md5": "x", "metric": "NaN-ish"}')
    assert read_record(local_remote, "backup", "yolo_best.weights") is None


def _numpy_float64_pickle(value: float) -> bytes:
    """What pickle writes for numpy.float64(value) (numpy itself is not installed here)."""
    return (b"cnumpy.core.multiarray\nscalar\nq\x00cnumpy\ndtype\nq\x01X\x02\x00\x00\x00f8q\x02"
            b"\x89\x88\x87q\x03Rq\x04(K\x03X\x01\x00\x00\x00<q\x05NNNJ\xff\xff\xff\xff"
            b"J\xff\xff\xff\xffK\x00tq\x06bC\x08" + struct.pack("<d", value)
            + b"q\x07\x86q\x08Rq\x09")


def _best_pt(path: Path, fitness: float) -> Path:
    body = pickle.dumps({"epoch": 3, "optimizer": {}}, protocol=2)
    # {"epoch": 3, "optimizer": {}, "best_fitness": numpy.float64(fitness)}
    pkl = body[:-1] + b"X\x0c\x00\x00\x00best_fitness" + _numpy_float64_pickle(fitness) + b"s."
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("best/data.pkl", pkl)
    return path


def test_ultralytics_best_fitness_is_read_without_numpy(tmp_path):
    p = _best_pt(tmp_path / "best.pt", 0.734)
    assert pt_best_fitness(p) == 0.734
    assert check_pt(p, load=False).epoch == 3
    with zipfile.ZipFile(tmp_path / "plain.pt", "w") as z:
        z.writestr("a/data.pkl", pickle.dumps({"epoch": 1, "best_fitness": 0.5}, protocol=2))
    assert pt_best_fitness(tmp_path / "plain.pt") == 0.5
