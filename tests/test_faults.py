"""The issue's fault test: many uploads through a flaky Drive arrive exactly once.

2,000 small files and 5 files above the resumable threshold are uploaded by 8
threads sharing one DriveRemote to an emulator that fails 10% of requests with
a mix of 5xx, 429, 403 rate limits and dropped connections.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from drivesync.remotes.drive import FOLDER_MIME

SMALL = 2000
LARGE = 5


def content(i: int, size: int) -> bytes:
    seed = hashlib.sha256(str(i).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def label(i: int) -> bytes:
    """A YOLO label file: one line per box (text, ends with a newline)."""
    h = hashlib.sha256(str(i).encode()).digest()
    lines = [f"{h[k] % 80} {h[k + 1] / 255:.6f} {h[k + 2] / 255:.6f} "
             f"{h[k + 3] / 255:.6f} {h[k + 4] / 255:.6f}" for k in range(0, 5 * (1 + i % 5), 5)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.slow
def test_flaky_drive_gets_every_file_exactly_once(drive_remote, emulator, tmp_path):
    local = tmp_path / "src"
    local.mkdir()
    jobs: list[tuple[str, str]] = []
    want: dict[str, str] = {}
    for i in range(SMALL):
        data = label(i)
        name = f"img_{i:05d}.txt"
        (local / name).write_bytes(data)
        rel = f"small/{i % 4}/{name}"
        jobs.append((str(local / name), rel))
        want[rel] = hashlib.md5(data).hexdigest()
    for i in range(LARGE):
        data = content(10_000 + i, 1_000_000 + i * 150_000)  # 2-5 chunks above threshold
        name = f"weights_{i}.bin"
        (local / name).write_bytes(data)
        jobs.append((str(local / name), f"large/{name}"))
        want[f"large/{name}"] = hashlib.md5(data).hexdigest()

    emulator.configure(fail_rate=0.1, fault_kinds=("500", "503", "429", "403rate", "drop"),
                       seed=7)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: drive_remote.upload(*job), jobs))
    assert {e.path: e.md5 for e in results} == want
    assert emulator.counters["faults"] > 100
    assert drive_remote.stats.retries > 50

    # Exactly once, as Drive itself sees it: no duplicate files or folders.
    files = [f for f in emulator.state.all_files() if not f["trashed"]]
    folders = [f for f in files if f["mimeType"] == FOLDER_MIME]
    blobs = [f for f in files if f["mimeType"] != FOLDER_MIME]
    assert len(blobs) == SMALL + LARGE
    assert Counter(f["name"] for f in blobs).most_common(1)[0][1] == 1
    assert sorted(f["name"] for f in folders) == sorted(
        ["space_Colab", "small", "large", "0", "1", "2", "3"])
    assert sorted(f["md5Checksum"] for f in blobs) == sorted(want.values())

    # The listing (paged, under the same faults) agrees.
    listed = {e.path: e.md5 for e in drive_remote.walk() if not e.is_dir}
    assert listed == want


@pytest.mark.parametrize("at_chunk", [0, 2])
def test_expired_resumable_session_starts_again(drive_remote, emulator, tmp_path, at_chunk):
    """Drive answers 404 when a session expired: start a new one with the same file id."""
    data = content(1, 5 * 256 * 1024 + 77)
    p = tmp_path / "big.bin"
    p.write_bytes(data)

    class ExpireAfter:
        armed = False

        def on_start(self, **_):
            pass

        def on_progress(self, *, files=0, bytes=0):
            if not self.armed:
                self.armed = True
                emulator.inject("expire_session")

        def on_done(self):
            pass

    progress = ExpireAfter()
    if at_chunk == 0:  # expire the very first chunk PUT
        progress.armed = True
        emulator.inject("expire_session")
    entry = drive_remote.upload(p, "ckpt/big.bin", progress=progress)
    assert entry.md5 == hashlib.md5(data).hexdigest()
    files = [f for f in emulator.state.all_files() if f["name"] == "big.bin"]
    assert [(f["id"], f["md5Checksum"]) for f in files] == [(entry.id, entry.md5)]
    assert drive_remote.stats.retries == 1
