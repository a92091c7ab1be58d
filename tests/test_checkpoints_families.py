"""Name recognition, completeness and "newest" ordering (pure, table-driven)."""

from __future__ import annotations

import pytest

from drivesync.checkpoints.families import classify, parse_checkpoint
from drivesync.checkpoints.latest import complete_checkpoints, local_target, safe_local_name
from drivesync.types import FOLDER, Entry


@pytest.mark.parametrize("path, family, role, number", [
    ("yolov3.backup", "yolov3", "last", None),
    ("backup/yolov3-tiny_last.weights", "yolov3-tiny", "last", None),
    ("yolov4_final.weights", "yolov4", "final", None),
    ("yolov4_best.weights", "yolov4", "best", None),
    ("yolov4_ema.weights", "yolov4", "ema", None),
    ("yolov4-tiny_12000.weights", "yolov4-tiny", "numbered", 12000),
    ("runs/train/exp/weights/last.pt", "weights", "last", None),
    ("runs/train/exp/weights/best.pt", "weights", "best", None),
    ("runs/train/exp/weights/epoch40.pt", "weights", "numbered", 40),
    ("last.pt", "", "last", None),
    ("lightning/epoch=3-step=1200.ckpt", "lightning", "numbered", 1200),
    ("model_1200.pt", "model", "numbered", 1200),
    ("ckpt-300.ckpt", "ckpt", "numbered", 300),
    ("net.0007.safetensors", "net", "numbered", 7),
    ("Model_500.PTH", "Model", "numbered", 500),
    ("detector_best.h5", "detector", "best", None),
    ("run_1_200.keras", "run_1", "numbered", 200),
])
def test_recognised_names(path, family, role, number):
    c = parse_checkpoint(Entry(path, size=1))
    assert c is not None, path
    assert (c.family, c.role, c.number) == (family, role, number)


@pytest.mark.parametrize("path", [
    "yolov3.weights",            # pretrained: digit glued to the stem is not an iteration
    "yolov5s.pt", "yolov8n.pt", "darknet53.conv.74", "obj.data", "yolov3.cfg",
    "notes.txt", "train_1000.txt", "model_1000.onnx", "_1000.weights", ".backup",
    ".drivesync-partial-yolov3_last.weights", ".drivesync-trash",
])
def test_other_files_are_not_checkpoints(path):
    assert parse_checkpoint(Entry(path, size=10)) is None


def test_folders_are_not_checkpoints():
    assert parse_checkpoint(Entry("x_100.weights", kind=FOLDER)) is None
    assert classify([Entry("a_1.pt", size=1), Entry("notes.md"), Entry("b.pt")]) == [
        parse_checkpoint(Entry("a_1.pt", size=1))]


def E(path, size=100, modified=0.0, md5=None):  # noqa: N802 - short table helper
    return Entry(path, size=size, modified=modified, md5=md5 or path)


def names(checkpoints):
    return [c.entry.path for c in checkpoints]


def test_final_wins_within_its_family():
    entries = [E("y_1000.weights", modified=10), E("y_last.weights", modified=30),
               E("y_final.weights", modified=20)]
    assert names(complete_checkpoints(entries))[0] == "y_final.weights"


def test_numbered_order_by_number_even_when_mtimes_disagree():
    # copies can reset mtimes; the iteration number is the truth among numbered files
    entries = [E("y_1000.weights", modified=50), E("y_3000.weights", modified=10),
               E("y_2000.weights", modified=20)]
    assert names(complete_checkpoints(entries)) == [
        "y_3000.weights", "y_2000.weights", "y_1000.weights"]


def test_between_roles_modified_time_decides():
    entries = [E("y_2000.weights", modified=100), E("y_last.weights", modified=150),
               E("y_best.weights", modified=90)]
    assert names(complete_checkpoints(entries)) == [
        "y_last.weights", "y_2000.weights", "y_best.weights"]
    newer_numbered = [E("y_2000.weights", modified=200), E("y_last.weights", modified=150)]
    assert names(complete_checkpoints(newer_numbered))[0] == "y_2000.weights"


def test_best_written_just_after_last_does_not_beat_it():
    # darknet -map and Ultralytics write best right after last, same iteration
    entries = [E("y_last.weights", modified=100.0), E("y_best.weights", modified=100.4),
               E("w/last.pt", modified=50.0), E("w/best.pt", modified=50.2)]
    assert names(complete_checkpoints(entries, family="y")) == [
        "y_last.weights", "y_best.weights"]
    assert names(complete_checkpoints(entries))[:2] == ["y_last.weights", "y_best.weights"]
    ultra = [c for c in complete_checkpoints(entries) if c.entry.path.startswith("w/")]
    assert names(ultra) == ["w/last.pt", "w/best.pt"]
    # with no `last` at all, best is the newest thing there is
    assert names(complete_checkpoints([E("y_1000.weights", modified=1),
                                       E("y_best.weights", modified=2)]))[0] == "y_best.weights"


def test_equal_times_prefer_last_over_numbered_over_best():
    entries = [E("y_best.weights", modified=5), E("y_1000.weights", modified=5),
               E("y_last.weights", modified=5)]
    assert names(complete_checkpoints(entries)) == [
        "y_last.weights", "y_1000.weights", "y_best.weights"]


def test_incomplete_files_are_skipped():
    entries = [
        E("y_1000.weights", modified=1), E("y_2000.weights", modified=2),
        E("y_3000.weights", size=0, modified=3),           # zero-size
        E("y_last.weights", size=60, modified=4),           # truncated darknet write
        E(".drivesync-partial-y_4000.weights", modified=5),  # upload in flight
    ]
    assert names(complete_checkpoints(entries)) == ["y_2000.weights", "y_1000.weights"]


def test_variable_size_formats_have_a_tolerance_and_named_roles_compare_separately():
    entries = [
        E("w/epoch10.pt", size=3000, modified=10), E("w/epoch20.pt", size=2990, modified=20),
        E("w/epoch30.pt", size=1500, modified=30),          # truncated
        E("w/last.pt", size=1000, modified=40),             # optimizer stripped: fine
    ]
    assert names(complete_checkpoints(entries)) == ["w/last.pt", "w/epoch20.pt", "w/epoch10.pt"]


def test_family_filter_and_families_per_folder():
    entries = [E("a_100.pt", modified=1), E("b_100.pt", modified=9),
               E("x/last.pt", modified=5), E("y/last.pt", size=10, modified=6)]
    assert names(complete_checkpoints(entries, family="a")) == ["a_100.pt"]
    # y/last.pt is not compared with x/last.pt: different folders, different families
    assert names(complete_checkpoints(entries)) == ["b_100.pt", "y/last.pt", "x/last.pt",
                                                    "a_100.pt"]
    assert complete_checkpoints(entries, family="nope") == []


def test_local_names_from_the_remote_are_sanitised(tmp_path):
    assert safe_local_name("..") == "checkpoint"
    assert safe_local_name("a/../b") == "a_.._b"
    assert safe_local_name(".drivesync-partial-x").startswith("checkpoint_")
    c = parse_checkpoint(E("sub/y_last.weights"))
    assert local_target(tmp_path, c) == tmp_path / "y_last.weights"
    assert local_target(str(tmp_path / "new") + "/", c) == tmp_path / "new" / "y_last.weights"
    assert local_target(tmp_path / "w.weights", c) == tmp_path / "w.weights"


def test_a_numbered_copy_of_last_does_not_beat_it():
    """Ultralytics writes epoch<N>.pt as the bytes of last.pt just after it: a resume
    names last.pt; a numbered file with other bytes still wins by its time."""
    same = [E("w/last.pt", modified=100.0, md5="a"), E("w/epoch1.pt", modified=100.3, md5="a"),
            E("w/best.pt", modified=100.2, md5="a"), E("w/epoch0.pt", modified=90.0, md5="b")]
    assert names(complete_checkpoints(same)) == [
        "w/last.pt", "w/epoch1.pt", "w/best.pt", "w/epoch0.pt"]
    newer = [E("w/last.pt", modified=100.0, md5="a"), E("w/epoch2.pt", modified=130.0, md5="c")]
    assert names(complete_checkpoints(newer))[0] == "w/epoch2.pt"
