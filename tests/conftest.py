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
from drivesync.progress import NullProgress

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


@pytest.fixture
def drive_service(emulator):
    """The real google-api-python-client pointed at the emulator, as the Drive remote points it."""
    import json

    import google.oauth2.credentials
    from googleapiclient.discovery import build_from_document
    from googleapiclient.discovery_cache import get_static_doc

    doc = json.loads(get_static_doc("drive", "v3"))
    doc["rootUrl"] = doc["mtlsRootUrl"] = emulator.url
    return build_from_document(doc, credentials=google.oauth2.credentials.Credentials(
        emulator.token))


@pytest.fixture
def drive_env(emulator, monkeypatch):
    """The CLI and the Python API pointed at the emulator through the environment alone."""
    monkeypatch.setenv("DRIVESYNC_API_ENDPOINT", emulator.url)
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    monkeypatch.setenv("DRIVESYNC_WRITE_RATE", "0")
    return emulator


# ---- object stores: real protocol servers on loopback (moto's S3, a GCS emulator) ----
@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server in a thread on 127.0.0.1; skipped without the s3 test extras."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path_factory):
    """Credentials for moto through botocore's standard chain (env), nothing from ~/.aws."""
    none = tmp_path_factory.mktemp("aws") / "none"
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_CONFIG_FILE", str(none)),
                       ("AWS_SHARED_CREDENTIALS_FILE", str(none))):
        monkeypatch.setenv(var, value)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env) -> str:
    """A fresh bucket per test (moto keeps state for the whole session)."""
    import boto3

    name = "ds-" + uuid.uuid4().hex[:16]
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_settings(s3_env) -> Settings:
    return Settings(api_endpoint=s3_env, backoff_base=0.01, backoff_cap=0.05, max_tries=5)


@pytest.fixture
def s3_remote(s3_bucket, s3_settings):
    from drivesync.remotes import open_remote

    remote = open_remote(f"s3://{s3_bucket}/space_Colab", settings=s3_settings)
    yield remote
    remote.close()


@pytest.fixture(scope="session")
def gcs_server():
    """gcp-storage-emulator (a GCS JSON API server) in a thread on 127.0.0.1."""
    pytest.importorskip("gcsfs")
    pytest.importorskip("gcp_storage_emulator")
    import logging

    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    host, port = server._api._httpd.server_address[:2]
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def gcs_env(gcs_server, monkeypatch):
    """The emulator as gcsfs finds one: STORAGE_EMULATOR_HOST."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    return gcs_server


@pytest.fixture
def gcs_bucket(gcs_env) -> str:
    import gcsfs.core

    name = "ds-" + uuid.uuid4().hex[:16]
    gcsfs.core.GCSFileSystem(endpoint_url=gcs_env, token="anon",
                        skip_instance_cache=True).mkdir(name)
    return name


@pytest.fixture
def gs_remote(gcs_bucket):
    from drivesync.remotes import open_remote

    settings = Settings(backoff_base=0.01, backoff_cap=0.05, max_tries=5)
    remote = open_remote(f"gs://{gcs_bucket}/space_Colab", settings=settings)
    yield remote
    remote.close()


class Heard(NullProgress):
    """A Progress channel that remembers what it was told (events, warnings, output):
    what a test checks where the CLI would print. Bars and questions: NullProgress's."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.warnings: list[str] = []
        self.output: list[str] = []

    def on_event(self, text: str) -> None:
        self.events.append(text)

    def on_warning(self, text: str) -> None:
        self.warnings.append(text)

    def on_output(self, text: str) -> None:
        self.output.append(text)
