"""What only the Drive remote does: duplicates, resumable resume, idempotent creates,
batched deletes, error classification and what each operation costs in requests.

Everything goes through google-api-python-client over HTTP to the emulator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time

import pytest

from drivesync.errors import AuthError, NotFound, QuotaExceeded, RemoteError, TransientError
from drivesync.remotes import open_remote
from drivesync.remotes.drive import FOLDER_MIME, DriveRemote
from drivesync.remotes.drive_support import IdPool

CHUNK = 256 * 1024


def blob(n: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (n // len(block) + 1))[:n]


def src(tmp_path, name: str, data: bytes):
    p = tmp_path / "src" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def live_files(emu, name=None):
    return [f for f in emu.state.all_files()
            if not f.get("trashed") and f["mimeType"] != FOLDER_MIME
            and (name is None or f["name"] == name)]


class InjectAfter:
    """A progress subscriber that arms an emulator fault once ``after`` bytes went up."""

    def __init__(self, emu, after: int, **inject):
        self.emu, self.after, self.inject, self.sent, self.armed = emu, after, inject, 0, False

    def on_start(self, **_):
        pass

    def on_progress(self, *, files=0, bytes=0):
        self.sent += bytes
        if not self.armed and self.sent >= self.after:
            self.armed = True
            self.emu.inject(**self.inject)

    def on_done(self):
        pass


def test_duplicate_folders_resolve_to_the_oldest_with_a_warning(drive_remote, drive_settings,
                                                                emulator, tmp_path, caplog):
    drive_remote.upload(src(tmp_path, "a", b"in the first"), "dup/a.txt")
    root_id = drive_remote.stat("").id
    time.sleep(0.01)
    emulator.add_file({"name": "dup", "mimeType": FOLDER_MIME, "parents": [root_id]})
    fresh = DriveRemote("space_Colab", settings=drive_settings)  # empty path cache
    with caplog.at_level(logging.WARNING, logger="drivesync"):
        assert [e.path for e in fresh.list("dup")] == ["dup/a.txt"]
        assert [e.path for e in fresh.list("dup")] == ["dup/a.txt"]  # cached: same choice
    assert any("drive:space_Colab/dup" in r.getMessage() and "2 items" in r.getMessage()
               for r in caplog.records)
    assert len([e for e in fresh.list("") if e.name == "dup"]) == 2  # list shows both


@pytest.mark.parametrize("kind", ["drop", "503", "429"])
def test_resumable_upload_resumes_after_a_failed_chunk(drive_remote, emulator, tmp_path, kind):
    data = blob(6 * CHUNK + 1000, 1)
    progress = InjectAfter(emulator, 2 * CHUNK, kind=kind, method="PUT")
    entry = drive_remote.upload(src(tmp_path, "big", data), "big.bin", progress=progress)
    assert entry.md5 == hashlib.md5(data).hexdigest()
    assert progress.armed and progress.sent == len(data)
    assert emulator.counters["faults"] == 1
    # httplib2 itself re-sends once when a connection closes before the answer;
    # an error status goes through our pacer, which asks the session where to resume.
    assert drive_remote.stats.retries == (0 if kind == "drop" else 1)
    assert [f["md5Checksum"] for f in live_files(emulator)] == [entry.md5]
    # Resumed, not restarted: at most one chunk was sent twice.
    assert emulator.counters["bytes_in"] < len(data) + 2 * CHUNK


def test_retried_create_that_landed_is_accepted_not_duplicated(drive_remote, emulator,
                                                               tmp_path):
    path = src(tmp_path, "x", b"payload")
    drive_remote.mkdir("d")
    # The create takes effect, its answer is lost: the retry (same pre-generated id) meets it.
    faults = emulator.counters["faults"]
    emulator.inject("lost", method="POST", path_contains="/upload/")
    first = drive_remote.upload(path, "d/x")
    assert emulator.counters["faults"] == faults + 1
    assert first.md5 == hashlib.md5(b"payload").hexdigest()
    assert len(live_files(emulator, "x")) == 1
    # An id already used by another item is never taken for ours.
    drive_remote._ids = IdPool(lambda n: [first.id])
    with pytest.raises(RemoteError, match="taken by another item"):
        drive_remote.upload(src(tmp_path, "y", b"other"), "d/y")


def test_copy_is_server_side_and_a_retried_copy_is_not_doubled(drive_remote, emulator,
                                                               tmp_path):
    first = drive_remote.upload(src(tmp_path, "w", b"w" * 200_000), "d/last.pt")
    sent = emulator.counters["bytes_in"]
    faults = emulator.counters["faults"]
    # The copy takes effect, its answer is lost: the retry (same pre-generated id) meets it.
    emulator.inject("lost", method="POST", path_contains="/copy")
    copied = drive_remote.copy(first, "d/best.pt")
    assert emulator.counters["bytes_in"] - sent < 2_000  # no byte of the file travelled
    assert emulator.counters["faults"] == faults + 1 and copied.md5 == first.md5
    assert len(live_files(emulator, "best.pt")) == 1

def test_modified_time_comes_from_the_local_file(drive_remote, tmp_path):
    p = src(tmp_path, "m", b"m")
    os.utime(p, (1_600_000_000.25, 1_600_000_000.25))
    assert drive_remote.upload(p, "m").modified == pytest.approx(1_600_000_000.25, abs=0.002)


def test_batch_delete_retries_only_failed_inner_calls(drive_remote, emulator, tmp_path):
    p = src(tmp_path, "f", b"f")
    for i in range(150):
        drive_remote.upload(p, f"b/{i:03d}")
    entries = drive_remote.list("b")
    emulator.inject("503", count=3, method="PATCH")  # inner trash calls of the first batch
    before = drive_remote.stats.requests
    assert drive_remote.delete_many(entries) == {}
    assert drive_remote.stats.requests - before == 3  # batch of 100, batch of 50, one retry
    assert drive_remote.stats.retries == 1
    assert drive_remote.list("b") == []
    assert sum(f["trashed"] for f in emulator.state.all_files()) == 150


def test_request_costs(drive_remote, emulator, tmp_path):
    r = drive_remote
    p = src(tmp_path, "c", b"c")
    r.upload(p, "t/a/1")
    r.upload(p, "t/b/2")
    start = r.stats.requests
    r.upload(p, "t/a/3")
    assert r.stats.requests - start == 1  # folder cached, ids pooled: one multipart POST
    start = r.stats.requests
    r.mkdir("t/a")
    assert r.stats.requests == start
    fresh = DriveRemote("space_Colab", settings=r.settings)
    paths = [e.path for e in fresh.walk("t")]
    assert paths == ["t/a", "t/b", "t/a/1", "t/a/3", "t/b/2"]
    assert fresh.stats.requests == 2 + 3  # resolve space_Colab and t, then one list per folder
    assert emulator.counters["requests"] >= r.stats.requests + fresh.stats.requests


def test_processes_creating_one_folder_at_once_end_up_in_the_same_one(drive_settings,
                                                                       emulator):
    """Two launchers (separate remotes, separate caches) creating --weights at the same
    moment: both use the oldest folder and the twin is removed, so both write where
    every later lookup will look (the lease race depends on it)."""
    for round_ in range(4):
        remotes = [DriveRemote("space_Colab", settings=drive_settings) for _ in range(3)]
        for r in remotes:
            r.mkdir("")
        start = threading.Barrier(len(remotes))
        ids: list = []

        def make(r: DriveRemote, start=start, ids=ids, name=f"w{round_}") -> None:
            start.wait()
            ids.append(r.mkdir(name).id)

        threads = [threading.Thread(target=make, args=(r,)) for r in remotes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        folders = [f for f in emulator.state.all_files()
                   if f["name"] == f"w{round_}" and not f.get("trashed")]
        assert len(set(ids)) == 1 and [f["id"] for f in folders] == ids[:1], (ids, folders)
        for r in remotes:
            r.close()


def test_each_thread_has_its_own_http(drive_remote):
    services = []
    threads = [threading.Thread(target=lambda: services.append(drive_remote._service()))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in services}) == 3
    assert len({id(s._http) for s in services}) == 3


def test_rate_limits_and_5xx_are_retried(drive_remote, emulator, tmp_path):
    for kind in ("429", "403rate", "500", "503", "drop"):
        emulator.inject(kind, method="POST", path_contains="upload")
    entry = drive_remote.upload(src(tmp_path, "r", b"retry me"), "r.txt")
    assert emulator.counters["faults"] == 5
    assert drive_remote.stats.retries == 4  # the drop is re-sent by httplib2 itself
    assert [f["id"] for f in live_files(emulator)] == [entry.id]


def test_dropped_download_is_resumed(drive_remote, emulator, tmp_path):
    data = blob(300_000, 2)
    drive_remote.upload(src(tmp_path, "d", data), "d.bin")
    emulator.inject("drop", method="GET", path_contains="alt=media")
    drive_remote.download("d.bin", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
    assert drive_remote.stats.retries == 1


@pytest.mark.parametrize("kind", ["quota", "403daily"])
def test_quota_errors_are_never_retried(drive_remote, emulator, tmp_path, kind):
    drive_remote.mkdir("")
    emulator.inject(kind, method="POST")
    with pytest.raises(QuotaExceeded):
        drive_remote.upload(src(tmp_path, "q", b"q" * 100), "q.bin")
    assert drive_remote.stats.retries == 0
    assert live_files(emulator) == []


def test_storage_limit_gives_quota_exceeded(drive_remote, emulator, tmp_path):
    emulator.configure(quota_limit=10_000)
    with pytest.raises(QuotaExceeded, match="storageQuotaExceeded"):
        drive_remote.upload(src(tmp_path, "big", blob(20_000)), "big.bin")
    assert drive_remote.quota().limit == 10_000


def test_wrong_token_is_an_auth_error_without_retries(drive_settings):
    remote = DriveRemote("space_Colab", settings=dataclasses.replace(drive_settings,
                                                                     token="wrong"))
    with pytest.raises(AuthError, match="auth login"):
        remote.list("")
    assert remote.stats.retries == 0


def test_unreachable_endpoint_says_so_after_retries(drive_settings):
    settings = dataclasses.replace(drive_settings, api_endpoint="http://127.0.0.1:9/",
                                   max_tries=3, backoff_base=0.001, backoff_cap=0.002)
    remote = open_remote("drive:space_Colab", settings=settings)
    with pytest.raises(TransientError, match=r"cannot reach http://127.0.0.1:9/.*3 tries"):
        remote.list("")
    assert remote.stats.retries == 2 and remote.stats.requests == 3


def test_missing_root_reads_not_found_and_writes_create_it(drive_settings, tmp_path, emulator):
    remote = open_remote("drive:space_Colab/x", settings=drive_settings)
    with pytest.raises(NotFound, match=r"^drive:space_Colab/x: no such folder$"):
        remote.list("")
    remote.upload(src(tmp_path, "w", b"w"), "w")
    assert [e.path for e in remote.list("")] == ["w"]
    assert sorted(f["name"] for f in emulator.state.all_files()) == ["space_Colab", "w", "x"]


def test_unusable_drive_names_are_shown_with_look_alikes_and_addressable(drive_remote, emulator,
                                                                         tmp_path):
    root_id = drive_remote.mkdir("").id
    for name in ("a/b", "..", "x\\y", "n\x00l", "a\uff0fb"):
        emulator.add_file({"name": name, "parents": [root_id]})
    odd = emulator.add_file({"name": ".", "parents": [root_id], "mimeType": FOLDER_MIME})["id"]
    emulator.add_file({"name": "in", "parents": [odd]})
    fresh = DriveRemote("space_Colab", settings=drive_remote.settings)
    listed = [e.path for e in fresh.list("")]
    assert listed == sorted(["a\uff0fb", "a\uff0fb", "\uff0e\uff0e", "x\uff3cy", "n\u2400l",
                             "\uff0e"])
    assert fresh.stat("x\uff3cy").id and fresh.stat("n\u2400l").id
    assert [e.path for e in fresh.list("\uff0e")] == ["\uff0e/in"]   # the folder "."
    assert [e.path for e in fresh.walk("")][-1] == "\uff0e/in"
    # Two items shown alike are same-named duplicates: the oldest is chosen.
    assert fresh.stat("a\uff0fb").id == min(
        (f for f in emulator.state.all_files() if f["name"] in ("a/b", "a\uff0fb")),
        key=lambda f: (f.get("createdTime") or "", f["id"]))["id"]


def test_a_file_that_changes_during_its_upload_leaves_no_copy(drive_remote, emulator, tmp_path):
    from drivesync.errors import ChecksumMismatch

    path = src(tmp_path, "grow.bin", blob(3 * CHUNK))

    class Writer:  # the trainer rewrites the file while the resumable upload is under way
        def on_progress(self, *, files=0, bytes=0):
            with open(path, "r+b") as f:
                f.seek(2 * CHUNK + 10)
                f.write(b"rewritten")

    with pytest.raises(ChecksumMismatch, match="changed while it was uploaded"):
        drive_remote.upload(path, "grow.bin", progress=Writer())
    assert live_files(emulator, "grow.bin") == []


def test_quota_feature_my_drive_reports_the_limit_a_shared_drive_has_none(drive_remote, emulator,
                                                                          drive_settings):
    emulator.configure(quota_limit=5_000_000)
    assert drive_remote.features.quota and drive_remote.quota().limit == 5_000_000
    emulator.state.create_drive("TeamData")
    shared = open_remote("drive:@TeamData/x", settings=drive_settings)
    assert not shared.features.quota and shared.quota().limit is None
    assert shared.features.server_side_copy and shared.features.batch_delete
