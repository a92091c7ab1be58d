"""push and pull against both remotes (a local folder and the Drive emulator)."""

from __future__ import annotations

import hashlib
import os

import pytest

from drivesync.errors import NotFound, UsageError
from drivesync.hashing import HashCache
from drivesync.sync import pull, push


def make_tree(root, shards=2, per=3, extra=True):
    files = {}
    for s in range(shards):
        for i in range(per):
            rel = f"data/imgs/{s:03d}/img{i}.jpg"
            files[rel] = f"{s}-{i}-".encode() * (i + 1)
    if extra:
        files["data/train.txt"] = b"data/imgs/000/img0.jpg\n"
        files["data/obj.data"] = b"classes=1\n"
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def remote_files(remote, path=""):
    """{path: [md5, ...]} of every file below path (duplicates show as longer lists)."""
    out = {}
    try:
        for e in remote.walk(path):
            if not e.is_dir:
                out.setdefault(e.path, []).append(e.md5)
    except NotFound:
        pass
    return out


def md5(b):
    return hashlib.md5(b).hexdigest()


def run_push(src, remote, **kw):
    kw.setdefault("hash_cache", HashCache(None))
    return push(src, remote=remote, **kw)


def test_push_then_noop_repush_reads_nothing(tmp_path, remote):
    src = tmp_path / "src"
    files = make_tree(src)
    cache = HashCache(tmp_path / "h.sqlite")
    res = run_push(src, remote, path="ds", hash_cache=cache)
    assert res.uploaded == len(files) and res.failed == 0 and not res.problems
    assert remote_files(remote, "ds") == {f"ds/{k}": [md5(v)] for k, v in files.items()}
    reads_before = cache.reads
    res2 = run_push(src, remote, path="ds", hash_cache=cache)
    assert res2.uploaded == 0 and res2.skipped == len(files)
    assert cache.reads == reads_before  # every md5 came from the cache
    if "drive" in remote.address:
        folders = 1 + 1 + 1 + 2  # ds, data, imgs, two shards
        assert res2.requests <= folders + 1
    d = res2.to_dict()
    assert d["skipped"] == len(files) and d["problems"] == []


def test_changed_file_replaced_without_duplicates_and_delete(tmp_path, remote):
    src = tmp_path / "src"
    make_tree(src)
    run_push(src, remote)
    (src / "data/train.txt").write_bytes(b"changed and longer\n")
    (src / "data/obj.data").write_bytes(b"classes=2\n")   # same size, other md5
    os.remove(src / "data/imgs/001/img2.jpg")
    res = run_push(src, remote, delete=True)
    assert res.uploaded == 2 and res.deleted >= 1
    got = remote_files(remote)
    assert got["data/train.txt"] == [md5(b"changed and longer\n")]
    assert got["data/obj.data"] == [md5(b"classes=2\n")]
    assert "data/imgs/001/img2.jpg" not in got


def test_dry_run_touches_nothing(tmp_path, remote):
    src = tmp_path / "src"
    files = make_tree(src)
    before = remote.stats.requests
    res = run_push(src, remote, path="x", dry_run=True, delete=True)
    assert res.dry_run and res.uploaded == 0
    assert res.plan["upload"] == len(files) and len(res.actions) > len(files)
    assert remote_files(remote) == {}
    assert remote.stats.requests - before <= 2  # the listing only


def test_excludes_internal_files_and_links_out(tmp_path, remote):
    src = tmp_path / "src"
    make_tree(src, shards=1, extra=False)
    (src / "notes.tmp").write_text("x")
    (src / ".drivesync-partial-x").write_text("x")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, src / "link.txt")
    os.symlink("missing", src / "broken")
    os.mkfifo(src / "fifo")
    res = run_push(src, remote, excludes=["*.tmp"])
    got = remote_files(remote)
    assert sorted(got) == [f"data/imgs/000/img{i}.jpg" for i in range(3)]
    warned = dict(res.warnings)
    assert "leaves the folder" in warned["link.txt"]
    assert "not a regular file" in warned["fifo"]
    # a link whose target cannot be read is a problem (exit 4), not only a warning
    assert "broken symlink" in dict(res.problems)["broken"]


def test_folder_limit_refusal(tmp_path, remote):
    src = tmp_path / "src"
    make_tree(src, shards=1, per=5, extra=False)
    with pytest.raises(UsageError, match="drivesync shard"):
        run_push(src, remote, max_files_per_folder=4)
    assert remote_files(remote) == {}
    assert run_push(src, remote, max_files_per_folder=4, allow_big_folders=True).uploaded == 5
    # packed, the 5 files become one tar + one manifest
    assert run_push(src, remote, path="p", max_files_per_folder=4, pack=True).packed == 1


def test_pack_round_trip_and_unchanged_shard_not_reuploaded(tmp_path, remote):
    src = tmp_path / "src"
    files = make_tree(src, shards=3)
    state = tmp_path / "state"
    res = run_push(src, remote, path="ds", pack=True, state_dir=state)
    assert res.packed == 3 and res.uploaded == 2
    got = remote_files(remote, "ds")
    assert sorted(got) == sorted(["ds/data/train.txt", "ds/data/obj.data"] + [
        f"ds/data/imgs/{s:03d}.tar{x}" for s in range(3) for x in ("", ".json")])
    # unchanged: nothing uploaded, even with a fresh state dir (reads the manifests)
    for st in (state, tmp_path / "state2"):
        again = run_push(src, remote, path="ds", pack=True, state_dir=st)
        assert again.packed == 0 and again.uploaded == 0 and again.skipped == 8
    # one shard changes: only that one is re-packed, the old tar removed
    (src / "data/imgs/001/img0.jpg").write_bytes(b"new content")
    files["data/imgs/001/img0.jpg"] = b"new content"
    res = run_push(src, remote, path="ds", pack=True, state_dir=state)
    assert res.packed == 1
    assert all(len(v) == 1 for v in remote_files(remote, "ds").values())
    dest = tmp_path / "dest"
    first_cache = HashCache(None)
    res = pull(remote, dest, path="ds", hash_cache=first_cache, state_dir=state)
    assert res.unpacked == 3 and res.downloaded == 2 and not res.problems
    reads = first_cache.reads
    again = pull(remote, dest, path="ds", hash_cache=first_cache, state_dir=state)
    assert again.skipped == 5 and first_cache.reads == reads  # md5s learned while pulling
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data
    assert not [n for n in os.listdir(state) if n.endswith(".tar")]  # temp tars removed
    pcache = HashCache(None)
    res = pull(remote, dest, path="ds", hash_cache=pcache, state_dir=state)
    assert res.unpacked == 0 and res.downloaded == 0 and res.skipped == 5
    assert pcache.reads == len(files)  # a fresh cache: every local file read once
    res = pull(remote, dest, path="ds", hash_cache=pcache, state_dir=state)
    assert res.skipped == 5 and pcache.reads == len(files)
    kept = pull(remote, tmp_path / "raw", path="ds", unpack=False, hash_cache=HashCache(None))
    assert kept.downloaded == 8 and (tmp_path / "raw/data/imgs/000.tar").is_file()


def test_pull_mirror_skips_identical_and_fixes_changed(tmp_path, remote):
    src = tmp_path / "src"
    files = make_tree(src, shards=1)
    run_push(src, remote)
    dest = tmp_path / "dest"
    res = pull(remote, dest, hash_cache=HashCache(None))
    assert res.downloaded == len(files)
    (dest / "data/train.txt").write_bytes(b"local edit")
    res = pull(remote, dest, hash_cache=HashCache(None))
    assert res.downloaded == 1 and res.skipped == len(files) - 1
    assert (dest / "data/train.txt").read_bytes() == files["data/train.txt"]
    dry = pull(remote, tmp_path / "none", dry_run=True)
    assert dry.plan["download"] == len(files) and not (tmp_path / "none").exists()


class RecordingProgress:
    """A fake subscriber (our own seam): records what push reports."""

    def __init__(self):
        self.started, self.files, self.bytes, self.done = None, 0, 0, 0

    def on_start(self, *, files, bytes, desc=""):
        self.started = (files, bytes)

    def on_progress(self, *, files=0, bytes=0):
        self.files += files
        self.bytes += bytes

    def on_done(self):
        self.done += 1


def test_progress_reports_files_and_bytes(tmp_path, remote):
    src = tmp_path / "src"
    files = make_tree(src, shards=1)
    prog = RecordingProgress()
    run_push(src, remote, progress=prog)
    total = sum(len(v) for v in files.values())
    assert prog.started == (len(files), total)
    assert prog.files == len(files) and prog.bytes == total and prog.done == 1


def test_pack_progress_total_is_the_tar_bytes_uploaded(tmp_path, remote):
    src = tmp_path / "src"
    make_tree(src, shards=2, extra=False)
    prog = RecordingProgress()
    res = run_push(src, remote, pack=True, progress=prog)
    tars = [e for e in remote.walk("") if e.path.endswith(".tar")]
    assert res.packed == 2 and len(tars) == 2
    total = sum(e.size for e in tars)
    assert prog.started == (2, total) and prog.bytes == total and res.bytes == total


def test_pull_never_follows_a_link_out_of_local(tmp_path, remote):
    src = tmp_path / "src"
    make_tree(src, shards=1, extra=False)
    run_push(src, remote)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "data")
    res = pull(remote, dest, hash_cache=HashCache(None))
    assert os.listdir(outside) == []
    assert res.failed >= 1 and res.problems
