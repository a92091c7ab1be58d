"""The one contract every Remote keeps: a local folder, Drive, S3 and GCS.

The Drive leg talks HTTP to the emulator through google-api-python-client;
nothing is mocked. With DRIVESYNC_LIVE=1 (and real credentials) the same suite
also runs against a scratch folder on real Drive: ``pytest -m live``.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from drivesync.errors import ChecksumMismatch, NotFound, UsageError
from drivesync.types import FOLDER, temp_name


class Boom(Exception):
    """Raised by a progress subscriber to interrupt a transfer."""


class CountingProgress:
    def __init__(self, fail_after_bytes: int | None = None):
        self.bytes = 0
        self.fail_after_bytes = fail_after_bytes

    def on_start(self, *, files: int, bytes: int, desc: str = "") -> None:
        pass

    def on_progress(self, *, files: int = 0, bytes: int = 0) -> None:
        self.bytes += bytes
        if self.fail_after_bytes is not None and self.bytes >= self.fail_after_bytes:
            raise Boom("interrupted")

    def on_done(self) -> None:
        pass


def payload(n: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (n // len(block) + 1))[:n]


def write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / "src" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.fixture
def shared_remote(emulator, drive_settings):
    """A folder in a shared drive (``drive:@TeamData/...``): every files call with
    supportsAllDrives, lists with corpora=drive (the emulator refuses them otherwise)."""
    from drivesync.remotes import open_remote

    emulator.state.create_drive("TeamData")
    remote = open_remote("drive:@TeamData/space_Colab", settings=drive_settings)
    yield remote
    remote.close()


@pytest.fixture(params=["local", "drive", "shared", "s3", "gs",
                        pytest.param("live", marks=pytest.mark.live)])
def r(request):
    """The remote with its root folder made (Drive creates it on the first write)."""
    remote = request.getfixturevalue(f"{request.param}_remote")
    remote.mkdir("")
    return remote


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_mkdir_is_idempotent_and_listed(r):
    a = r.mkdir("a/b")
    b = r.mkdir("a/b")
    assert a.id == b.id and a.is_dir
    assert [(e.path, e.kind) for e in r.list("a")] == [("a/b", FOLDER)]
    assert r.stat("a/b").is_dir
    assert r.list("a/b") == []


def test_copy_makes_an_independent_verified_file(r, tmp_path):
    data = payload(300_000, seed=5)
    source = write(tmp_path, "last.pt", data)
    os.utime(source, (1_600_000_000, 1_600_000_000))  # Drive keeps it; a folder says now
    src = r.upload(source, "w/last.pt")
    time.sleep(0.05)  # so "now" at the copy differs from the source's time
    made = r.copy(src, "w/sub/best.pt")
    assert (made.path, made.size, made.md5) == ("w/sub/best.pt", len(data), md5(data))
    assert made.id != src.id
    assert made.modified == pytest.approx(src.modified, abs=0.002)
    r.delete("w/last.pt", permanent=True)
    r.download("w/sub/best.pt", tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == data
    with pytest.raises(UsageError):
        r.copy(r.stat("w/sub"), "w/other")
    with pytest.raises(NotFound):
        r.copy("w/missing.pt", "w/x.pt")

def test_list_takes_a_folder_entry(r, tmp_path):
    r.upload(write(tmp_path, "f.txt", b"f"), "d/f.txt")
    folder = r.stat("d")
    assert [e.path for e in r.list(folder)] == [e.path for e in r.list("d")] == ["d/f.txt"]


def test_upload_download_round_trip(r, tmp_path):
    data = payload(3000, 1)
    entry = r.upload(write(tmp_path, "x.bin", data), "d/x.bin")
    assert (entry.path, entry.size, entry.md5) == ("d/x.bin", 3000, md5(data))
    assert r.stat("d/x.bin") == entry
    assert [e.path for e in r.list("d")] == ["d/x.bin"]
    dest = tmp_path / "out" / "x.bin"
    got = r.download("d/x.bin", dest)
    assert dest.read_bytes() == data and got.md5 == md5(data)
    assert sorted(os.listdir(dest.parent)) == ["x.bin"]  # no temp file left behind


def test_large_upload_round_trip(r, tmp_path):
    """Above the resumable threshold of the test settings (several chunks on Drive)."""
    data = payload(1_300_000, 2)
    entry = r.upload(write(tmp_path, "big.bin", data), "big.bin")
    assert entry.md5 == md5(data) and entry.size == len(data)
    r.download(entry, tmp_path / "big.out")
    assert (tmp_path / "big.out").read_bytes() == data


def test_empty_file(r, tmp_path):
    entry = r.upload(write(tmp_path, "empty", b""), "empty")
    assert entry.size == 0 and entry.md5 == md5(b"")
    r.download("empty", tmp_path / "empty.out")
    assert (tmp_path / "empty.out").read_bytes() == b""


def test_download_resumes_from_partial_temp_file(r, tmp_path):
    data = payload(200_000, 3)
    r.upload(write(tmp_path, "p.bin", data), "p.bin")
    dest = tmp_path / "out" / "p.bin"
    dest.parent.mkdir()
    (dest.parent / temp_name(dest.name)).write_bytes(data[:150_000])
    progress = CountingProgress()
    r.download("p.bin", dest, progress=progress)
    assert dest.read_bytes() == data
    assert progress.bytes == 50_000  # only the missing tail was fetched
    assert not (dest.parent / temp_name(dest.name)).exists()


def test_corrupt_partial_is_discarded_and_dest_untouched(r, tmp_path):
    data = payload(100_000, 4)
    r.upload(write(tmp_path, "c.bin", data), "c.bin")
    dest = tmp_path / "c.bin"
    dest.write_bytes(b"old content")
    tmp = dest.parent / temp_name(dest.name)
    tmp.write_bytes(b"\0" * 60_000)
    with pytest.raises(ChecksumMismatch):
        r.download("c.bin", dest)
    assert not tmp.exists()
    assert dest.read_bytes() == b"old content"
    r.download("c.bin", dest)
    assert dest.read_bytes() == data


def test_interrupted_download_never_half_writes_dest(r, tmp_path):
    data = payload(1_500_000, 5)
    r.upload(write(tmp_path, "i.bin", data), "i.bin")
    dest = tmp_path / "i.bin"
    dest.write_bytes(b"previous version")
    with pytest.raises(Boom):
        r.download("i.bin", dest, progress=CountingProgress(fail_after_bytes=1))
    assert dest.read_bytes() == b"previous version"
    r.download("i.bin", dest)  # resumes from what the first run left
    assert dest.read_bytes() == data


def test_move_and_rename(r, tmp_path):
    data = payload(500, 6)
    src = r.upload(write(tmp_path, "m", data), "a/m.txt")
    moved = r.move(src, "b/c/n.txt")
    assert moved.path == "b/c/n.txt" and moved.md5 == md5(data)
    assert r.list("a") == []
    assert r.stat("b/c/n.txt").md5 == md5(data)
    renamed = r.move("b/c/n.txt", "b/c/o.txt")
    assert [e.path for e in r.list("b/c")] == ["b/c/o.txt"] and renamed.md5 == md5(data)
    with pytest.raises(NotFound):
        r.stat("a/m.txt")


def test_move_onto_a_file_replaces_it(r, tmp_path):
    r.upload(write(tmp_path, "1", b"new"), "t.tmp")
    r.upload(write(tmp_path, "2", b"old"), "t")
    r.move("t.tmp", "t")
    assert [(e.path, e.md5) for e in r.list("")] == [("t", md5(b"new"))]


def test_move_folder_keeps_its_contents(r, tmp_path):
    r.upload(write(tmp_path, "z", b"zz"), "f/sub/z")
    r.list("f/sub")  # warm any path cache
    r.move("f", "g")
    assert r.stat("g/sub/z").md5 == md5(b"zz")
    with pytest.raises(NotFound):
        r.list("f/sub")


def test_delete_to_trash_then_empty_trash(r, tmp_path):
    data = payload(40_000, 7)
    r.upload(write(tmp_path, "t", data), "trash/me.bin")
    before = r.quota()
    r.delete("trash/me.bin")
    with pytest.raises(NotFound):
        r.stat("trash/me.bin")
    after = r.quota()
    assert after.trash >= before.trash + len(data)
    r.empty_trash()
    assert r.quota().trash == 0


def test_permanent_delete_skips_trash(r, tmp_path):
    r.empty_trash()
    r.upload(write(tmp_path, "t", payload(30_000, 8)), "gone.bin")
    r.delete("gone.bin", permanent=True)
    assert r.quota().trash == 0
    with pytest.raises(NotFound):
        r.stat("gone.bin")


def test_delete_folder_and_refuse_root(r, tmp_path):
    r.upload(write(tmp_path, "q", b"q"), "dir/inner/q")
    r.delete("dir")
    assert r.list("") == []
    with pytest.raises(UsageError):
        r.delete("")


def test_delete_many_reports_the_missing(r, tmp_path):
    for i in range(3):
        r.upload(write(tmp_path, f"{i}", b"x%d" % i), f"many/{i}")
    entries = r.list("many")
    failed = r.delete_many([entries[0], "many/1", "many/nope"], permanent=True)
    assert list(failed) == ["many/nope"] and isinstance(failed["many/nope"], NotFound)
    assert [e.path for e in r.list("many")] == ["many/2"]


def test_copy_feature_says_whether_bytes_travel(r, tmp_path):
    src = r.upload(write(tmp_path, "c", payload(50_000, 9)), "feat/c.bin")
    before = (r.stats.bytes_up, r.stats.bytes_down)
    r.copy(src, "feat/copy.bin")
    moved = (r.stats.bytes_up, r.stats.bytes_down) != before
    assert moved is not r.features.server_side_copy


def test_batch_delete_feature_says_deletes_share_requests(r, tmp_path):
    for i in range(4):
        r.upload(write(tmp_path, f"b{i}", b"b%d" % i), f"batch/{i}")
    entries = r.list("batch")              # entries with ids: no lookups in delete_many
    before = r.stats.requests
    assert r.delete_many(entries, permanent=True) == {}
    sent = r.stats.requests - before
    assert sent < len(entries) if r.features.batch_delete else sent >= len(entries)
    assert r.list("batch") == []


def test_quota_feature_says_whether_a_limit_is_reported(r):
    q = r.quota()
    assert q.usage >= 0
    if not r.features.quota:
        assert q.limit is None             # a bucket, a shared drive: no limit to report
    elif r.address.startswith("local:"):
        assert q.limit is not None         # the file system's size (Drive's comes from the
        #                                    account: test_drive_remote sets one)


def test_live_writes_feature_matches_the_min_age_default(r, tmp_path):
    """A remote that lists files while another program writes them (a local folder)
    gets prune/latest's --min-age guard by default; an API store does not."""
    from drivesync.checkpoints.latest import default_min_age

    assert (default_min_age(r) > 0) is r.features.live_writes
    if r.features.live_writes:            # a trainer still writing: listed, half-written
        with open(r.root / "growing.pt", "wb") as f:
            f.write(b"x" * 1000)
            f.flush()
            assert [(e.name, e.size) for e in r.list("")] == [("growing.pt", 1000)]


@pytest.mark.parametrize("call", [
    lambda r, t: r.stat("nope"),
    lambda r, t: r.stat("nope/deeper"),
    lambda r, t: r.list("nope"),
    lambda r, t: r.download("nope", t / "x"),
    lambda r, t: r.move("nope", "x"),
    lambda r, t: r.delete("nope"),
    lambda r, t: list(r.walk("nope")),
], ids=["stat", "stat-deep", "list", "download", "move", "delete", "walk"])
def test_missing_paths_raise_not_found(r, tmp_path, call):
    with pytest.raises(NotFound):
        call(r, tmp_path)
    assert r.exists("nope") is False


def test_list_of_a_file_is_not_found(r, tmp_path):
    r.upload(write(tmp_path, "f", b"f"), "file")
    assert r.exists("file") is True
    with pytest.raises(NotFound):
        r.list("file")


def test_replace_leaves_one_file(r, tmp_path):
    r.upload(write(tmp_path, "v1", b"version one"), "cfg/m.txt")
    new = r.replace(write(tmp_path, "v2", b"version two"), "cfg/m.txt")
    listed = r.list("cfg")
    assert [(e.path, e.md5) for e in listed] == [("cfg/m.txt", md5(b"version two"))]
    assert listed[0].id == new.id


def test_walk_is_breadth_first_parents_first(r, tmp_path):
    for rel in ["b/y", "a/x", "a/sub/z", "top"]:
        r.upload(write(tmp_path, rel.replace("/", "_"), rel.encode()), rel)
    paths = [e.path for e in r.walk()]
    assert paths == ["a", "b", "top", "a/sub", "a/x", "b/y", "a/sub/z"]
    assert [e.path for e in r.walk("a")] == ["a/sub", "a/x", "a/sub/z"]


def test_internal_names_are_hidden(r, tmp_path):
    r.upload(write(tmp_path, "v", b"visible"), "keep.txt")
    r.upload(write(tmp_path, "h", b"in flight"), temp_name("keep.txt"))
    r.mkdir(".drivesync-state")
    assert [e.path for e in r.list("")] == ["keep.txt"]
    assert [e.path for e in r.walk()] == ["keep.txt"]


def test_list_internal_shows_exactly_what_list_hides(r, tmp_path):
    """Leases are found this way (checkpoints/lease.py)."""
    r.upload(write(tmp_path, "v", b"visible"), "d/keep.txt")
    made = r.upload(write(tmp_path, "l", b'{"owner": "x"}'), "d/.drivesync-lease-x")
    assert [e.path for e in r.list("d")] == ["d/keep.txt"]
    got = r.list_internal("d")
    assert [(e.path, e.md5, e.size) for e in got] == [("d/.drivesync-lease-x", made.md5, 14)]
    r.download(got[0], tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b'{"owner": "x"}'
    r.delete(got[0], permanent=True)
    assert r.list_internal("d") == []
    with pytest.raises(NotFound):
        r.list_internal("nowhere")


@pytest.mark.parametrize("name", ["my data/it's a file.txt", "Ünïcødé/文件 名.bin",
                                  'quote "double"/x'])
def test_paths_with_spaces_quotes_and_unicode(r, tmp_path, name):
    data = name.encode()
    entry = r.upload(write(tmp_path, "u", data), name)
    assert entry.path == name
    parent, base = name.rsplit("/", 1)
    assert [e.name for e in r.list(parent)] == [base]
    r.download(name, tmp_path / "u.out")
    assert (tmp_path / "u.out").read_bytes() == data


def test_stat_root_is_a_folder(r):
    assert r.stat("").is_dir


def test_paths_cannot_escape_the_root(r, tmp_path):
    with pytest.raises(UsageError):
        r.upload(write(tmp_path, "e", b"e"), "../escape")


@pytest.mark.parametrize("tail", [b"\r", b"\r\n", b"\n\r"])
def test_bytes_ending_in_carriage_return_survive(r, tmp_path, tail):
    """One binary file in 256 ends with 0x0D; multipart framing must not eat it."""
    data = b"binary" + tail
    entry = r.upload(write(tmp_path, "cr", data), "cr.bin")
    assert entry.md5 == md5(data)
