"""Losing the network ends quickly and clearly (issue 9, item 2).

One circuit breaker per command: when nothing succeeded for ``outage_window``
seconds and connections keep failing, every worker stops, the run says what
finished and that a re-run continues, and exits 7. Tests use a 1 s window.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import Heard

from drivesync.cli import main
from drivesync.config import Settings
from drivesync.emulator import Emulator
from drivesync.errors import EXIT_NETWORK, ConnectionFailed, NetworkDown, NotFound
from drivesync.hashing import HashCache
from drivesync.pacer import Breaker, Pacer
from drivesync.remotes import open_remote
from drivesync.sync import push

TOKEN = "test-token"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


def test_breaker_trips_only_after_the_window_without_success():
    clock = FakeClock()
    b = Breaker(60, clock=clock)
    assert not b.failure(ConnectionFailed("refused"))
    clock.t = 59
    assert not b.failure(ConnectionFailed("refused"))
    b.success()                                  # an answer: the clock starts again
    clock.t = 100
    assert not b.failure(NotFound("404 is an answer"))   # any answer counts as success
    clock.t = 161
    assert b.failure(ConnectionFailed("refused")) and b.tripped
    with pytest.raises(NetworkDown, match="nothing succeeded for 61s"):
        b.check()
    clock.t = 222                                # one probe per window gets through
    b.check()
    with pytest.raises(NetworkDown):
        b.check()


def test_pacer_with_a_breaker_stops_a_long_backoff_early():
    """A worker asleep in a 32 s backoff wakes to NetworkDown once another trips it."""
    clock = FakeClock()
    breaker = Breaker(60, clock=clock)
    pacer = Pacer(max_tries=100, base=32, cap=32, clock=clock, breaker=breaker)
    calls = []

    def fail():
        calls.append(clock.t)
        raise ConnectionFailed("connection refused")

    with pytest.raises(NetworkDown):
        pacer.call(fail)
    assert clock.t < 60 + 33 + 1 and len(calls) == 3   # t=0, ~32, ~64: tripped there


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    monkeypatch.setenv("DRIVESYNC_OUTAGE_WINDOW", "1")
    monkeypatch.setenv("DRIVESYNC_MAX_TRIES", "1000")   # only the breaker may end it
    monkeypatch.setenv("DRIVESYNC_BACKOFF_BASE", "0.05")
    monkeypatch.setenv("DRIVESYNC_BACKOFF_CAP", "0.2")
    monkeypatch.setenv("DRIVESYNC_WRITE_RATE", "0")


def make_files(root, n):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"f{i:03d}.txt").write_text(f"file {i}")
    return root


class StopAfter:
    """A progress subscriber that stops the server after ``n`` files, and records
    the status lines (what failed, next try in N s)."""

    def __init__(self, emu: Emulator, n: int):
        self.emu, self.n, self.files, self.status = emu, n, 0, []
        self.lock = threading.Lock()

    def on_start(self, *, files, bytes, desc=""):  # noqa: A002 - the Progress protocol
        pass

    def on_progress(self, *, files=0, bytes=0):  # noqa: A002
        with self.lock:
            self.files += files
            stop = files and self.files == self.n
        if stop:
            threading.Thread(target=self.emu.stop).start()

    def on_done(self):
        pass

    def on_status(self, text):
        self.status.append(text)


def test_push_stops_when_the_server_goes_away(tmp_path):
    src = make_files(tmp_path / "src", 40)
    emu = Emulator(token=TOKEN)
    emu.start()
    settings = Settings(api_endpoint=emu.url, token=TOKEN, write_rate=0.0, outage_window=1.0,
                        max_tries=1000, backoff_base=0.05, backoff_cap=0.2)
    progress = StopAfter(emu, 5)
    t0 = time.monotonic()
    try:
        with open_remote("drive:space_Colab", settings=settings) as remote:
            with pytest.raises(NetworkDown) as info:
                push(src, remote=remote, path="ds", jobs=4, progress=progress,
                     hash_cache=HashCache(None), state_dir=tmp_path / "state")
    finally:
        emu.stop()
    took = time.monotonic() - t0
    assert took < 15, took
    result = info.value.outcome
    assert 5 <= result.uploaded < 40 and result.left_files == 40 - result.uploaded
    assert "re-run the same command once the network is back" in str(info.value).lower()
    assert any("next try in" in s for s in progress.status)


@pytest.mark.parametrize("verb", ["push", "pull", "dedupe", "prune", "latest"])
def test_every_verb_exits_7_when_every_connection_drops(tmp_path, emulator, env, capsys, verb):
    src = make_files(tmp_path / "src", 3)
    assert main(["push", str(src), "drive:space_Colab/ds", "-q",
                 "--endpoint", emulator.url]) == 0
    emulator.configure(fail_rate=1.0, fault_kinds=("drop", "reset"))
    argv = {"push": ["push", str(make_files(tmp_path / "more", 6)), "drive:space_Colab/ds"],
            "pull": ["pull", "drive:space_Colab/ds", str(tmp_path / "dest")],
            "dedupe": ["dedupe", "drive:space_Colab/ds", "--yes"],
            "prune": ["prune", "drive:space_Colab/ds", "--yes"],
            "latest": ["latest", "drive:space_Colab/ds"]}[verb]
    t0 = time.monotonic()
    code = main([*argv, "--endpoint", emulator.url])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == EXIT_NETWORK, err
    assert "the network is down" in err and took < 15


def test_a_short_outage_is_ridden_out(tmp_path, emulator, env, capsys, monkeypatch):
    """The server comes back before the window ends: the push goes on, no duplicates."""
    monkeypatch.setenv("DRIVESYNC_OUTAGE_WINDOW", "30")
    src = make_files(tmp_path / "src", 8)
    emulator.configure(fail_rate=1.0, fault_kinds=("drop",))
    timer = threading.Timer(0.8, lambda: emulator.configure(fail_rate=0.0))
    timer.start()
    try:
        code = main(["push", str(src), "drive:space_Colab/ds", "--endpoint", emulator.url])
    finally:
        timer.cancel()
    assert code == 0, capsys.readouterr().err
    names = [f["name"] for f in emulator.state.all_files()
             if not f["trashed"] and f["name"].endswith(".txt")]
    assert sorted(names) == sorted(f"f{i:03d}.txt" for i in range(8))


def test_launch_mirror_pauses_with_one_warning_when_the_network_is_gone(tmp_path, emulator):
    """In launch the trainer keeps running: the mirror warns once, pauses, and resumes
    (the breaker lets a probe through) when the server answers again."""
    import struct

    from drivesync.launch.mirror import Mirror
    from drivesync.launch.weights import check_darknet

    def weights(path, iteration):
        head = struct.pack("<iiiq", 0, 2, 0, iteration * 4)
        path.write_bytes(head + bytes([iteration]) * 3000)

    now = [1000.0]
    settings = Settings(api_endpoint=emulator.url, token=TOKEN, write_rate=0.0,
                        outage_window=0.5, max_tries=1000, backoff_base=0.05, backoff_cap=0.1)
    heard = Heard()
    events, warnings = heard.events, heard.warnings
    (tmp_path / "backup").mkdir()
    with open_remote("drive:space_Colab", settings=settings) as remote:
        m = Mirror(remote, watch_dir=tmp_path / "backup", path="backup", suffixes=(".weights",),
                   check=lambda p: check_darknet(p, batch=4), snapshot_dir=tmp_path / "snap",
                   settle_polls=1, progress=heard,
                   quota_retry=30.0, clock=lambda: now[0])
        m.start()
        last = tmp_path / "backup" / "yolo_last.weights"
        weights(last, 10)
        assert [r.name for r in m.poll()] == ["yolo_last.weights"]
        emulator.configure(fail_rate=1.0, fault_kinds=("drop",))
        weights(last, 20)
        assert m.poll() == [] and m.blocked()
        weights(tmp_path / "backup" / "yolo_30.weights", 30)
        now[0] += 10
        assert m.poll() == [] and len(warnings) == 1
        assert "the network is down" in warnings[0] and "training continues" in warnings[0]
        emulator.configure(fail_rate=0.0)
        now[0] += 30
        time.sleep(0.6)  # the breaker's window: one probe gets through
        assert sorted(r.name for r in m.poll()) == ["yolo_30.weights", "yolo_last.weights"]
        assert any("mirroring resumed" in e for e in events) and len(warnings) == 1
