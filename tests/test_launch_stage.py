"""Staging a dataset onto local disk: unpacked and packed, and a re-run skips."""

from __future__ import annotations

import pytest

from drivesync.hashing import HashCache
from drivesync.launch.stage import MARKER, read_marker, stage_dataset
from drivesync.remotes.local import LocalRemote
from drivesync.sync import push


def _dataset(root):
    for shard in ("000", "001"):
        d = root / "images" / shard
        d.mkdir(parents=True)
        for i in range(3):
            (d / f"img{i}.jpg").write_bytes(f"{shard}-{i}".encode() * 50)
            (d / f"img{i}.txt").write_text(f"0 0.5 0.5 0.1 0.{i}\n")
    (root / "obj.names").write_text("person\n")


@pytest.mark.parametrize("pack", [False, True])
def test_stage_then_skip_then_restage_on_change(tmp_path, pack):
    src = tmp_path / "src"
    _dataset(src)
    remote = LocalRemote(tmp_path / "drive", hash_cache=HashCache(None))
    remote.root.mkdir()
    push(src, remote=remote, path="data", pack=pack, state_dir=tmp_path / "state")
    names = {e.name for e in remote.walk("data")}
    assert ("000.tar" in names) == pack
    dest = tmp_path / "content" / "data"
    first = stage_dataset(remote, dest, path="data")
    assert not first.skipped
    for shard in ("000", "001"):
        for i in range(3):
            got = dest / "images" / shard / f"img{i}.jpg"
            assert got.read_bytes() == f"{shard}-{i}".encode() * 50
    assert (dest / "obj.names").read_text() == "person\n"
    assert read_marker(dest)["digest"] == first.digest
    again = stage_dataset(remote, dest, path="data")
    assert again.skipped and again.digest == first.digest
    # a change on the remote makes the next run stage again
    (src / "obj.names").write_text("person\ncar\n")
    push(src, remote=remote, path="data", pack=pack, state_dir=tmp_path / "state")
    third = stage_dataset(remote, dest, path="data")
    assert not third.skipped and third.digest != first.digest
    assert (dest / "obj.names").read_text() == "person\ncar\n"
    assert (dest / MARKER).exists()
