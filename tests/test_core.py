"""Core pieces: pacer (retry + rate limit), settings precedence, md5 cache."""

from __future__ import annotations

import os
import random

import pytest

from drivesync.config import Settings, load_settings
from drivesync.errors import ConfigError, QuotaExceeded, RateLimited, TransientError
from drivesync.hashing import HashCache, md5_file
from drivesync.pacer import Pacer, RateLimiter
from drivesync.types import Quota, join


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)


def test_pacer_retries_retryable_then_succeeds():
    clock = FakeClock()
    seen = []
    pacer = Pacer(max_tries=5, base=1.0, cap=8.0, clock=clock, rng=random.Random(1),
                  on_retry=lambda exc, n, d: seen.append(n))
    calls = iter([RateLimited("slow down"), TransientError("503"), "ok"])

    def fn():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert pacer.call(fn) == "ok"
    assert seen == [1, 2]
    # truncated exponential backoff with jitter below one base unit
    assert 1.0 <= clock.sleeps[0] < 2.0 and 2.0 <= clock.sleeps[1] < 3.0


def test_pacer_never_retries_quota_and_caps_attempts():
    clock = FakeClock()
    pacer = Pacer(max_tries=3, clock=clock)
    with pytest.raises(QuotaExceeded):
        pacer.call(lambda: (_ for _ in ()).throw(QuotaExceeded("full")))
    assert clock.sleeps == []
    attempts = []

    def always_503():
        attempts.append(1)
        raise TransientError("503")

    with pytest.raises(TransientError):
        pacer.call(always_503)
    assert len(attempts) == 3


def test_backoff_is_truncated_at_cap():
    pacer = Pacer(base=1.0, cap=32.0, rng=random.Random(0))
    assert all(pacer.backoff(n) <= 32.0 for n in range(1, 20))
    assert pacer.backoff(10) == 32.0


def test_rate_limiter_holds_the_sustained_rate():
    clock = FakeClock()
    limiter = RateLimiter(rate=3.0, burst=1.0, clock=clock)
    for _ in range(31):
        limiter.acquire()
    # 31 acquisitions at 3/s with one token up front take 10 s of (fake) time
    assert clock.t == pytest.approx(10.0, abs=1e-6)


def test_rate_limiter_disabled():
    clock = FakeClock()
    limiter = RateLimiter(rate=0, clock=clock)
    for _ in range(100):
        limiter.acquire()
    assert clock.t == 0.0


def test_settings_precedence_flag_env_file(tmp_path, monkeypatch):
    cfg = tmp_path / "config.ini"
    cfg.write_text("[drivesync]\nfolder = from_file\njobs = 3\nwrite_rate = 1.5\n")
    env = {"DRIVESYNC_FOLDER": "from_env", "DRIVESYNC_JOBS": "5"}
    s = load_settings({"folder": "from_flag", "jobs": None}, env=env, config_file=cfg)
    assert s.folder == "from_flag"      # flag beats env and file
    assert s.jobs == 5                  # env beats file
    assert s.write_rate == 1.5          # file beats default
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}       # the default file may be absent
    monkeypatch.setenv("XDG_CONFIG_HOME", xdg["XDG_CONFIG_HOME"])
    assert load_settings({}, env=xdg) == Settings()


def test_settings_bad_values_are_config_errors(tmp_path):
    cfg = tmp_path / "config.ini"
    cfg.write_text("[drivesync]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        load_settings({}, env={}, config_file=cfg)
    empty = tmp_path / "empty.ini"
    empty.write_text("")
    with pytest.raises(ConfigError, match="DRIVESYNC_JOBS: setting jobs: expected a whole number"):
        load_settings({}, env={"DRIVESYNC_JOBS": "many"}, config_file=empty)


@pytest.mark.parametrize("content, expected", [
    (b"[drivesync\njobs = 4\n", "bad.ini, line 1: expected a section header"),
    (b"jobs = 4\n", "bad.ini, line 1: expected a section header"),
    (b"[drivesync]\n  jobs\nfoo\n", "bad.ini, line 2: expected 'key = value', got 'jobs'"),
    (b"[drivesync]\njobs = 1\njobs = 2\n",
     "bad.ini, line 3: setting 'jobs' in [drivesync] appears twice"),
    (b"[drivesync]\njobs = abc\n",
     "bad.ini: setting jobs: expected a whole number >= 1, got 'abc'"),
    (b"\xff\xfe\x00[", "bad.ini: not UTF-8 text"),
    (None, "bad.ini: no such file"),
])
def test_a_bad_config_file_is_named_with_its_line(tmp_path, content, expected):
    """Each is a ConfigError (exit 2) naming the file: no internal error, no silent default."""
    cfg = tmp_path / "bad.ini"
    if content is not None:
        cfg.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_settings({}, env={}, config_file=cfg)
    msg = str(info.value)
    assert expected in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="not a file"):
        load_settings({}, env={}, config_file=tmp_path)
    with pytest.raises(ConfigError, match="nope.ini: no such file"):
        load_settings({}, env={"DRIVESYNC_CONFIG": str(tmp_path / "nope.ini")})


def test_a_percent_sign_in_the_config_file_is_literal(tmp_path):
    cfg = tmp_path / "config.ini"
    cfg.write_text("[drivesync]\ntoken = ab%cd\nstate_dir = /tmp/100%\n")
    s = load_settings({}, env={}, config_file=cfg)
    assert (s.token, s.state_dir) == ("ab%cd", "/tmp/100%")


def test_hash_cache_reads_each_file_once_until_it_changes(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * 1000)
    cache = HashCache(tmp_path / "h.sqlite")
    assert cache.md5(f) == md5_file(f)
    assert cache.md5(f) == md5_file(f)
    assert cache.reads == 1
    cache.close()
    again = HashCache(tmp_path / "h.sqlite")   # persisted
    again.md5(f)
    assert again.reads == 0
    f.write_bytes(b"y" * 1001)
    assert again.md5(f) == md5_file(f)
    assert again.reads == 1


def test_quota_free_and_join():
    assert Quota(limit=100, usage=30, trash=10).free == 70
    assert Quota(limit=None, usage=5).free is None
    assert join("a/", "", "/b/c") == "a/b/c"
    assert join("", "") == ""


class _VanishingCache(HashCache):
    """Deletes the file it is asked to hash first: a trainer or prune removing a
    checkpoint between the folder scan and the hash."""

    def md5(self, file, *, st=None):  # type: ignore[override]
        if str(file).endswith("gone.weights"):
            os.unlink(file)
        return super().md5(file, st=st)


def test_local_list_leaves_out_a_file_removed_while_listing(tmp_path):
    from drivesync.remotes.local import LocalRemote

    for name in ("a.weights", "gone.weights", "z.weights"):
        (tmp_path / name).write_bytes(name.encode())
    remote = LocalRemote(tmp_path, hash_cache=_VanishingCache(None))
    assert [e.path for e in remote.list("")] == ["a.weights", "z.weights"]


class _RemovingCache(HashCache):
    """Hashing ``trigger`` removes folder ``a``: a run folder deleted mid-walk."""

    def md5(self, file, *, st=None):  # type: ignore[override]
        if str(file).endswith("trigger"):
            import shutil

            shutil.rmtree(os.path.join(os.path.dirname(str(file)), "a"))
        return super().md5(file, st=st)


def test_walk_skips_a_folder_removed_while_walking(tmp_path):
    from drivesync.remotes.local import LocalRemote

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.pt").write_bytes(b"x")
    (tmp_path / "trigger").write_bytes(b"t")
    remote = LocalRemote(tmp_path, hash_cache=_RemovingCache(None))
    assert [e.path for e in remote.walk("")] == ["a", "trigger"]


@pytest.mark.parametrize("var, raw", [("JOBS", "0"), ("JOBS", "-3"), ("WRITE_RATE", "-1"),
                                      ("MAX_TRIES", "0"), ("CHUNK_SIZE", "-5"),
                                      ("WRITE_RATE", "nan")])
def test_settings_out_of_range_are_config_errors(var, raw, tmp_path):
    """They were silently clamped or ignored (jobs=-3 ran with the default)."""
    empty = tmp_path / "empty.ini"
    empty.write_text("")
    with pytest.raises(ConfigError, match=f"DRIVESYNC_{var}: setting .* >= .*got '{raw}'"):
        load_settings({}, env={f"DRIVESYNC_{var}": raw}, config_file=empty)
    assert load_settings({}, env={"DRIVESYNC_WRITE_RATE": "0"}, config_file=empty).write_rate == 0
