"""Mirror against the Drive emulator: a full Drive, leftovers of a kill, truncated files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from conftest import Heard

from drivesync.checkpoints.latest import complete_checkpoints
from drivesync.launch.mirror import UPLOAD_TEMP, Mirror
from drivesync.launch.weights import check_darknet

BATCH = 4
SIZE = 3000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _weights(path: Path, iteration: int, *, size: int = SIZE) -> Path:
    head = struct.pack("<iiiq", 0, 2, 0, iteration * BATCH)
    path.write_bytes(head + bytes([iteration % 251]) * (size - len(head)))
    return path


def _mirror(remote, tmp_path: Path, **kw) -> tuple[Mirror, list, list]:
    heard = Heard()
    m = Mirror(remote, watch_dir=tmp_path / "backup", path="backup", suffixes=(".weights",),
               check=lambda p: check_darknet(p, batch=BATCH), snapshot_dir=tmp_path / "snap",
               settle_polls=1, progress=heard, **kw)
    (tmp_path / "backup").mkdir(exist_ok=True)
    return m, heard.events, heard.warnings


def _on_drive(remote) -> dict:
    return {e.name: e for e in remote.list("backup")}


def test_drive_full_warns_once_keeps_training_and_resumes(drive_remote, emulator, tmp_path):
    clock = Clock()
    m, events, warnings = _mirror(drive_remote, tmp_path, quota_retry=30.0, clock=clock)
    m.start()
    last = tmp_path / "backup" / "yolo_last.weights"
    _weights(last, 10)
    assert [r.name for r in m.poll()] == ["yolo_last.weights"]
    used = sum(int(f.get("size") or 0) for f in emulator.state.all_files())
    emulator.configure(quota_limit=used + 100)  # no room for a second copy
    _weights(last, 20)
    assert m.poll() == []
    assert len(warnings) == 1 and "Drive is full, yolo_last.weights not mirrored" in warnings[0]
    assert "mirroring resumes by itself" in warnings[0] and m.blocked()
    # while blocked, nothing is tried (no request), and no new warning
    before = emulator.counters["requests"]
    _weights(tmp_path / "backup" / "yolo_30.weights", 30)
    clock.now += 10
    assert m.poll() == [] and emulator.counters["requests"] == before and len(warnings) == 1
    # Drive keeps the complete copy it had
    assert check_darknet(_download(drive_remote, tmp_path, "yolo_last.weights"),
                         batch=BATCH).iteration == 10
    # space freed, the pause ends: both files go up, and the resumption is said
    emulator.configure(quota_limit=None)
    clock.now += 30
    assert sorted(r.name for r in m.poll()) == ["yolo_30.weights", "yolo_last.weights"]
    assert any("mirroring resumed" in e for e in events)
    assert check_darknet(_download(drive_remote, tmp_path, "yolo_last.weights"),
                         batch=BATCH).iteration == 20


def test_finish_gives_up_promptly_when_drive_is_full(drive_remote, emulator, tmp_path):
    m, _events, warnings = _mirror(drive_remote, tmp_path, quota_retry=30.0)
    m.start()
    emulator.configure(quota_limit=100)
    _weights(tmp_path / "backup" / "yolo_last.weights", 10)
    sleeps: list = []
    assert m.finish(interval=0.01, sleep=sleeps.append) == []
    assert len(sleeps) <= 3  # no waiting out the 600 s deadline
    assert "yolo_last.weights: not mirrored (Drive is full)" in warnings[-1]


def _download(remote, tmp_path: Path, name: str) -> Path:
    dest = tmp_path / "dl" / name
    remote.download(remote.stat(f"backup/{name}"), dest)
    return dest


def test_leftover_temp_of_a_killed_run_is_removed_and_never_a_checkpoint(drive_remote,
                                                                        emulator, tmp_path):
    _weights(tmp_path / "good.weights", 10)
    drive_remote.upload(tmp_path / "good.weights", "backup/yolo_last.weights")
    _weights(tmp_path / "half", 20, size=SIZE // 2)  # killed between upload and rename
    drive_remote.upload(tmp_path / "half", f"backup/{UPLOAD_TEMP}")
    assert [c.entry.name for c in complete_checkpoints(drive_remote.list("backup"))] == \
        ["yolo_last.weights"]
    m, _e, _w = _mirror(drive_remote, tmp_path)
    m.start()
    names = [f["name"] for f in emulator.state.all_files() if not f["trashed"]]
    assert UPLOAD_TEMP not in names and "yolo_last.weights" in names


def test_truncated_darknet_file_never_replaces_a_complete_one(drive_remote, tmp_path):
    m, _events, warnings = _mirror(drive_remote, tmp_path)
    m.start()
    last = tmp_path / "backup" / "yolo_last.weights"
    _weights(last, 10)
    assert len(m.poll()) == 1
    # darknet killed while rewriting it: the header parses, the file is short
    full = _weights(tmp_path / "full", 20).read_bytes()
    last.write_bytes(full[: SIZE // 3])
    assert m.poll() == [] and m.stats.rejected == 1
    assert "truncated" in warnings[-1] and f"have {SIZE}" in warnings[-1]
    assert _on_drive(drive_remote)["yolo_last.weights"].size == SIZE
    # the next complete write is mirrored again
    last.write_bytes(full)
    assert [r.info.iteration for r in m.poll()] == [20]


@pytest.mark.parametrize("kind", ["500", "drop"])
def test_transient_errors_are_retried_by_the_next_poll(drive_remote, emulator, tmp_path, kind):
    m, _events, _warnings = _mirror(drive_remote, tmp_path)
    m.start()
    _weights(tmp_path / "backup" / "yolo_last.weights", 10)
    emulator.inject(kind, count=30, method="POST")
    try:
        m.poll()
    except Exception:  # noqa: BLE001 - the runner turns this into a warning
        pass
    emulator.reset()
    assert [r.name for r in m.poll()] == ["yolo_last.weights"]
    assert list(_on_drive(drive_remote)) == ["yolo_last.weights"]


def test_a_closed_quiet_file_is_mirrored_on_first_sight_a_fresh_one_waits(local_remote,
                                                                           tmp_path):
    # a last.pt rewritten every few seconds is never the same over two polls;
    # closed (no trainer has it open) and untouched for settle_seconds is enough
    import os
    import time

    m, _events, _warnings = _mirror(local_remote, tmp_path)
    m.settle_polls = 2
    m.start()
    quiet = _weights(tmp_path / "backup" / "yolo_last.weights", 10)
    old = time.time() - 10
    os.utime(quiet, (old, old))
    fresh = _weights(tmp_path / "backup" / "yolo_20.weights", 20)
    assert [r.name for r in m.poll()] == ["yolo_last.weights"]
    os.utime(fresh, (old, old))
    assert [r.name for r in m.poll()] == ["yolo_20.weights"]


def test_cfg_size_guards_the_first_checkpoint_of_a_run(drive_remote, tmp_path):
    """No checkpoint mirrored yet: the size the cfg fixes is the reference."""
    m, _events, warnings = _mirror(drive_remote, tmp_path, expected_size=SIZE)
    m.start()
    full = _weights(tmp_path / "full", 10).read_bytes()
    (tmp_path / "backup" / "yolo_last.weights").write_bytes(full[: SIZE - 4096])
    assert m.poll() == [] and m.stats.rejected == 1
    assert f"the cfg makes every checkpoint {SIZE} bytes: truncated" in warnings[-1]
    assert not drive_remote.exists("backup/yolo_last.weights")
    (tmp_path / "backup" / "yolo_last.weights").write_bytes(full)
    assert [r.name for r in m.poll()] == ["yolo_last.weights"]


def test_two_files_of_one_size_overrule_a_wrong_cfg_size(drive_remote, tmp_path):
    """A cfg computation that is off (a layer darknet writes differently) must not stop
    mirroring for the whole run: a second file of the same size wins, and the first
    refused one is mirrored after all."""
    m, _events, warnings = _mirror(drive_remote, tmp_path, expected_size=SIZE + 512)
    m.start()
    _weights(tmp_path / "backup" / "yolo_1000.weights", 1000)
    assert m.poll() == [] and "truncated" in warnings[-1]
    _weights(tmp_path / "backup" / "yolo_last.weights", 1000)
    assert [r.name for r in m.poll()] == ["yolo_last.weights"]
    assert "trusting the trainer's files" in warnings[-1] and m.expected_size is None
    assert [r.name for r in m.poll()] == ["yolo_1000.weights"]
    assert sorted(_on_drive(drive_remote)) == ["yolo_1000.weights", "yolo_last.weights"]


def test_a_file_with_bytes_already_on_drive_is_copied_there_not_uploaded(drive_remote,
                                                                         emulator, tmp_path):
    """best is written as the very bytes of the last just mirrored (Ultralytics does so
    every time it improves): the mirror makes a copy on Drive instead of uploading them
    again, and falls back to an upload when that file is gone meanwhile."""
    m, events, _warnings = _mirror(drive_remote, tmp_path)
    m.start()
    last = _weights(tmp_path / "backup" / "yolo_last.weights", 10)
    assert [r.copied_from for r in m.poll()] == [None]
    sent = emulator.counters["bytes_in"]
    (tmp_path / "backup" / "yolo_best.weights").write_bytes(last.read_bytes())
    (got,) = m.poll()
    assert got.copied_from == "yolo_last.weights" and "nothing uploaded" in events[-1]
    assert emulator.counters["bytes_in"] - sent < SIZE // 2
    on = _on_drive(drive_remote)
    assert on["yolo_best.weights"].md5 == on["yolo_last.weights"].md5 == got.md5
    for e in on.values():  # gone behind the mirror's back (another prune, the user)
        drive_remote.delete(e, permanent=True)
    (tmp_path / "backup" / "yolo_final.weights").write_bytes(last.read_bytes())
    (again,) = m.poll()
    assert again.copied_from is None
    assert _on_drive(drive_remote)["yolo_final.weights"].md5 == got.md5


def test_an_empty_file_is_waited_for_not_refused(drive_remote, tmp_path):
    """A trainer may leave a checkpoint at 0 bytes, closed, for a while before it fills
    it (seen with the real Ultralytics): that is not a checkpoint yet, so no warning,
    and once it is filled it is mirrored."""
    m, _events, warnings = _mirror(drive_remote, tmp_path)
    m.start()
    best = tmp_path / "backup" / "yolo_best.weights"
    best.write_bytes(b"")
    assert m.poll() == [] and m.poll() == [] and m.pending() == []
    assert warnings == [] and m.stats.rejected == 0
    _weights(best, 10)
    assert [r.name for r in m.poll()] == ["yolo_best.weights"]


def test_a_local_folder_gets_the_bytes_from_the_snapshot_not_a_copy(local_remote, tmp_path):
    """On a folder (the Colab mount) a "copy" would read the bytes back through the
    mount: uploading the local snapshot is cheaper, so no copy is made there."""
    m, _events, _warnings = _mirror(local_remote, tmp_path)
    m.start()
    last = _weights(tmp_path / "backup" / "yolo_last.weights", 10)
    m.poll()
    (tmp_path / "backup" / "yolo_best.weights").write_bytes(last.read_bytes())
    assert [r.copied_from for r in m.poll()] == [None]
    assert (local_remote.root / "backup" / "yolo_best.weights").read_bytes() == last.read_bytes()
