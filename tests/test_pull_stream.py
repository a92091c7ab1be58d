"""Downloads as one streamed request per file (issue 12 item 1), and what a pull leaves
on a full disk or with the longest names (issue 9 items 4 and 7).

The Drive remote talks HTTP to the emulator with the real client libraries; the
local disk is our own seam (``Remote.disk``): a test stands in a disk with few
free bytes, or one whose writes fail with ENOSPC.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile

import pytest

from drivesync.errors import EXIT_ERROR, DiskFull
from drivesync.hashing import HashCache
from drivesync.localdisk import LocalDisk
from drivesync.remotes.partial import BLOCK
from drivesync.sync import pull, push
from drivesync.sync.pack import Member, unpack_stream, write_tar
from drivesync.types import TEMP_PREFIX, temp_name


def blob(n: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (n // len(block) + 1))[:n]


def put(remote, tmp_path, rel: str, data: bytes, mtime: float = 1_600_000_000.25):
    src = tmp_path / "src" / rel
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    os.utime(src, (mtime, mtime))
    return remote.upload(src, rel)


def media_gets(emulator) -> int:
    return emulator.counters["ops"].get("files.get", 0)


def leftovers(root) -> list[str]:
    """Every file or folder drivesync made for itself below ``root`` (partials, staging)."""
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
            if n.startswith(TEMP_PREFIX)]


class FakeDisk(LocalDisk):
    """A disk with ``free`` bytes free, whose writes fail with ENOSPC past ``room`` bytes."""

    def __init__(self, *, free: int = 1 << 40, room: int | None = None):
        self.free = free
        self.room = room
        self.written = 0

    def free_bytes(self, path) -> int:
        return self.free

    def open_append(self, path):
        f = super().open_append(path)
        return f if self.room is None else _FillingFile(f, self)

    def open_new(self, path):
        f = super().open_new(path)
        return f if self.room is None else _FillingFile(f, self)


class _FillingFile:
    def __init__(self, f, disk: FakeDisk):
        self._f, self._disk = f, disk

    def write(self, data: bytes) -> int:
        if self._disk.written + len(data) > self._disk.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._disk.written += len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


# ---- one request per file, Range only to resume ------------------------------------------
def test_download_is_one_request_without_faults(drive_remote, emulator, tmp_path):
    data = blob(3 * BLOCK + 12_345, 1)
    entry = put(drive_remote, tmp_path, "big.bin", data)
    gets = media_gets(emulator)
    drive_remote.download(entry, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
    assert media_gets(emulator) - gets == 1  # was 1 per 8 MiB piece
    assert drive_remote.stats.retries == 0


def test_drop_mid_body_resumes_with_range_and_fetches_nothing_twice(drive_remote, emulator,
                                                                    tmp_path):
    data = blob(2 * BLOCK + 777, 2)
    entry = put(drive_remote, tmp_path, "d.bin", data)
    emulator.inject("drop", method="GET", path_contains="alt=media")  # half the body, then cut
    gets, sent = media_gets(emulator), emulator.counters["bytes_out"]
    drive_remote.download(entry, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
    assert media_gets(emulator) - gets == 2
    assert emulator.counters["bytes_out"] - sent == len(data)  # the 2nd GET asked for the rest
    assert drive_remote.stats.retries == 1  # through the pacer
    assert leftovers(tmp_path) == []


def test_remote_modified_time_is_kept(remote, tmp_path):
    entry = put(remote, tmp_path, "w/last.pt", blob(5000, 3), mtime=1_600_000_000.25)
    if remote.features.server_side_copy:  # Drive keeps the uploaded file's time as modifiedTime
        assert abs(entry.modified - 1_600_000_000.25) < 0.002
    remote.download(entry, tmp_path / "one.pt")
    assert abs(os.stat(tmp_path / "one.pt").st_mtime - entry.modified) < 0.002
    res = pull(remote, tmp_path / "pulled", path="w", hash_cache=HashCache(None),
               state_dir=tmp_path / "state")
    assert res.downloaded == 1
    assert abs(os.stat(tmp_path / "pulled" / "last.pt").st_mtime - entry.modified) < 0.002


def test_names_of_255_bytes_pull_fine(remote, tmp_path):
    name = "é" * 125 + "x.jpg"  # 255 bytes in UTF-8: the partial name must stay shorter
    assert len(name.encode()) == 255 and len(temp_name(name).encode()) < 255
    put(remote, tmp_path, f"long/{name}", b"long name")
    res = pull(remote, tmp_path / "pulled", path="long", hash_cache=HashCache(None),
               state_dir=tmp_path / "state")
    assert res.downloaded == 1 and not res.problems
    assert (tmp_path / "pulled" / name).read_bytes() == b"long name"


# ---- a full disk ---------------------------------------------------------------------------
def test_pull_refuses_to_start_without_the_free_space_it_needs(remote, tmp_path):
    put(remote, tmp_path, "ds/a.bin", blob(6000, 4))
    put(remote, tmp_path, "ds/b.bin", blob(4000, 5))
    remote.disk = FakeDisk(free=7000)
    dest = tmp_path / "pulled"
    with pytest.raises(DiskFull) as err:
        pull(remote, dest, path="ds", hash_cache=HashCache(None), state_dir=tmp_path / "st")
    msg = str(err.value)
    assert "needed 9.8 KiB (10000 bytes)" in msg and "(7000 bytes) free" in msg
    assert str(dest) in msg and err.value.exit_code == EXIT_ERROR
    assert not dest.exists()           # nothing written, not even the folder
    dry = pull(remote, dest, path="ds", dry_run=True, hash_cache=HashCache(None),
               state_dir=tmp_path / "st")
    assert any("not enough free space" in why for _, why in dry.warnings)
    remote.disk = FakeDisk(free=10_000)
    assert pull(remote, dest, path="ds", hash_cache=HashCache(None),
                state_dir=tmp_path / "st").downloaded == 2


def test_one_download_checks_the_free_space_too(remote, tmp_path):
    """``latest --pull`` and the launcher download single files, without a pull plan."""
    entry = put(remote, tmp_path, "w.bin", blob(5000, 9))
    remote.disk = FakeDisk(free=4000)
    with pytest.raises(DiskFull, match=r"needed 4.9 KiB \(5000 bytes\), 3.9 KiB \(4000 bytes\) "
                                       "free; nothing was written"):
        remote.download(entry, tmp_path / "dl" / "w.bin")
    assert os.listdir(tmp_path / "dl") == []


def test_enospc_mid_download_removes_the_partial_and_stops_the_pull(remote, tmp_path):
    put(remote, tmp_path, "ds/big.bin", blob(3 * BLOCK, 6))
    put(remote, tmp_path, "ds/small.bin", blob(10, 7))
    remote.disk = FakeDisk(room=BLOCK + 100)  # the space check passes; the disk fills later
    dest = tmp_path / "pulled"
    with pytest.raises(DiskFull, match="no space left.*the partial file was removed"):
        pull(remote, dest, path="ds", jobs=1, hash_cache=HashCache(None),
             state_dir=tmp_path / "st")
    assert leftovers(dest) == []           # the disk is not kept full by our partial
    assert not (dest / "big.bin").exists()


# ---- packed shards: streamed into extraction ------------------------------------------------
def _packed(remote, tmp_path, files: dict[str, bytes]):
    src = tmp_path / "src"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    res = push(src, remote=remote, path="ds", pack=True, hash_cache=HashCache(None),
               state_dir=tmp_path / "push-state")
    assert res.packed == 1


def test_packed_shard_is_streamed_into_place_and_resumed_after_a_drop(drive_remote, emulator,
                                                                      tmp_path):
    files = {f"imgs/000/{i}.jpg": blob(300_000 + i, i) for i in range(4)}
    _packed(drive_remote, tmp_path, files)
    emulator.inject("drop", method="GET", path_contains="alt=media")  # hits the manifest
    emulator.inject("drop", count=1, method="GET", path_contains="alt=media")
    state = tmp_path / "pull-state"
    res = pull(drive_remote, tmp_path / "pulled", path="ds", hash_cache=HashCache(None),
               state_dir=state)
    assert res.unpacked == 1 and not res.problems
    for rel, data in files.items():
        assert (tmp_path / "pulled" / rel).read_bytes() == data
    assert leftovers(tmp_path / "pulled") == []
    assert not any(n.endswith(".tar") for _d, _s, fs in os.walk(state) for n in fs)


def test_enospc_while_unpacking_leaves_nothing_staged(drive_remote, tmp_path):
    files = {f"imgs/000/{i}.jpg": blob(300_000, i) for i in range(4)}
    _packed(drive_remote, tmp_path, files)
    drive_remote.disk = FakeDisk(room=500_000)  # the manifest fits, two members do not
    dest = tmp_path / "pulled"
    with pytest.raises(DiskFull, match="while unpacking shard 000.*the staged part was removed"):
        pull(drive_remote, dest, path="ds", hash_cache=HashCache(None), state_dir=tmp_path / "s")
    assert leftovers(dest) == [] and not (dest / "imgs" / "000" / "0.jpg").exists()


def test_remotes_without_a_stream_read_through_a_temporary_file(local_remote, tmp_path):
    from drivesync.remotes.base import Remote

    put(local_remote, tmp_path, "f.bin", b"fallback bytes")
    entry, reader = Remote.open_read(local_remote, "f.bin")  # the generic fallback
    with reader:
        assert reader.read() == b"fallback bytes" and entry.size == 14


def test_archive_with_a_wrong_md5_leaves_no_file_that_looks_valid(tmp_path):
    src = tmp_path / "a.txt"
    src.write_bytes(b"member bytes are right")
    man = write_tar("000", [Member("a.txt", 0, None, str(src))], tmp_path / "000.tar")
    raw = bytearray((tmp_path / "000.tar").read_bytes())
    raw[-1] ^= 0xFF  # the end padding: every member still matches, the archive does not
    dest = tmp_path / "out" / "000"
    dest.mkdir(parents=True)
    problems = unpack_stream(io.BytesIO(bytes(raw)), man, dest)
    assert [n for n, _ in problems] == [""] and "nothing of it was unpacked" in problems[0][1]
    assert os.listdir(dest) == [] and leftovers(tmp_path / "out") == []
    assert unpack_stream(io.BytesIO((tmp_path / "000.tar").read_bytes()), man, dest) == []
    assert (dest / "a.txt").read_bytes() == b"member bytes are right"
    assert tarfile.is_tarfile(tmp_path / "000.tar")


def test_read_ahead_gives_the_same_bytes_passes_errors_and_closes_mid_stream():
    from drivesync.readahead import ReadAhead

    data = blob(100_000, 11)
    with ReadAhead(io.BytesIO(data), block=4096, depth=2) as ahead:
        got = [ahead.read(n) for n in (1, 5000, 0, 70_000)] + [ahead.read()]
        assert b"".join(got) == data and ahead.read(10) == b""

    class Broken(io.BytesIO):
        def read(self, n=-1):
            if self.tell() >= 8192:
                raise DiskFull("boom")
            return super().read(n)

    with ReadAhead(Broken(data), block=4096) as ahead:
        assert len(ahead.read(8192)) == 8192
        with pytest.raises(DiskFull, match="boom"):
            ahead.read(1)
    ahead = ReadAhead(io.BytesIO(data), block=1024, depth=1)
    ahead.read(10)
    ahead.close()  # the thread waits on a full queue: close must still return
