"""Shared fixtures: an isolated home for state, the Drive emulator, and remotes.

The emulator runs in a thread on 127.0.0.1 for the whole session and is reset
before each test that asks for it; the real google-api-python-client talks HTTP
to it (nothing from the Google libraries is mocked).
"""

from __future__ import annotations

import os
import uuid

import pytest

from drivesync.config import Settings, load_settings

TOKEN = "test-token"
# Read before the autouse fixture below clears the environment: live tests use
# the developer's real credentials (DRIVESYNC_TOKEN, a cached login, ADC...).
_LIVE_ENV = dict(os.environ)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep md5 caches, tokens and config of tests away from the real home."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("DRIVESYNC_STATE_DIR", str(home / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    for var in ("DRIVESYNC_TOKEN", "DRIVESYNC_API_ENDPOINT", "DRIVESYNC_CREDENTIALS",
                "DRIVESYNC_SERVICE_ACCOUNT", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    yield home


@pytest.fixture(scope="session")
def emulator_server():
    from drivesync.emulator import Emulator

    emu = Emulator(token=TOKEN)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def emulator(emulator_server):
    """A clean emulator: no files, no faults, no latency, no limits."""
    emulator_server.reset()
    yield emulator_server
    emulator_server.reset()


@pytest.fixture
def drive_settings(emulator) -> Settings:
    """Settings that point the Drive remote at the emulator, with fast retries."""
    return Settings(api_endpoint=emulator.url, token=TOKEN, write_rate=0.0,
                    backoff_base=0.01, backoff_cap=0.05, max_tries=12,
                    chunk_size=256 * 1024, resumable_threshold=512 * 1024)


@pytest.fixture
def drive_remote(drive_settings):
    from drivesync.remotes import open_remote

    remote = open_remote("drive:space_Colab", settings=drive_settings)
    yield remote
    remote.close()


@pytest.fixture
def local_remote(tmp_path):
    from drivesync.remotes.local import LocalRemote

    remote = LocalRemote(tmp_path / "remote-root")
    remote.root.mkdir()
    yield remote


@pytest.fixture(params=["local", "drive"])
def remote(request):
    """The same test against both Remote implementations (the contract suite)."""
    return request.getfixturevalue(f"{request.param}_remote")


@pytest.fixture
def live_remote():
    """A fresh folder on the developer's real Drive; only with DRIVESYNC_LIVE=1.

    Everything is written under ``drivesync-live-test/<random>`` and deleted for
    good afterwards.
    """
    if _LIVE_ENV.get("DRIVESYNC_LIVE") != "1":
        pytest.skip("live Drive tests run only with DRIVESYNC_LIVE=1")
    from drivesync.remotes import open_remote

    settings = load_settings({}, env=_LIVE_ENV)
    name = uuid.uuid4().hex[:12]
    parent = open_remote("drive:drivesync-live-test", settings=settings)
    remote = open_remote(f"drive:drivesync-live-test/{name}", settings=settings)
    yield remote
    remote.close()
    parent.delete(name, permanent=True)
    parent.close()
