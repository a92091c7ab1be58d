"""One Settings resolution (issue 11 item 3): every documented DRIVESYNC_* variable
reaches the place it configures through Settings, and a flag beats the environment,
which beats the config file. Nothing here is mocked: the Drive side is the emulator."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import drivesync
from drivesync import hashing
from drivesync.cli import main
from drivesync.config import Settings, load_settings
from drivesync.errors import AuthError
from drivesync.remotes import open_remote

TOKEN = "test-token"  # as in conftest.py
ROOT = Path(__file__).resolve().parents[1]

# a value per field for each source, distinct from each other and from the defaults
_STR = {"api_endpoint": "http://127.0.0.{}:1/", "token": "tok-{}", "credentials": "/c{}.json",
        "service_account": "/sa{}.json", "token_file": "/tf{}.json", "folder": "space_{}",
        "state_dir": "/state{}", "log_file": "/log{}.txt"}


def _value(name: str, source: int) -> str:
    """The text source 1 (file), 2 (environment) or 3 (flag) gives setting ``name``."""
    if name in _STR:
        return _STR[name].format(source)
    default = getattr(Settings(), name)
    return str(type(default)(default + source * 3))


def _typed(name: str, text: str):
    default = getattr(Settings(), name)
    return text if default is None or isinstance(default, str) else type(default)(text)


def _documented_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"DRIVESYNC_[A-Z_]+", section))


def test_every_setting_is_documented_with_its_variable():
    names = {f.name for f in dataclasses.fields(Settings)}
    documented = _documented_variables()
    table = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1]
    for name in names:
        assert f"`{name}`" in table, f"setting {name} missing from README 'Configuration'"
    # every variable the section names configures a setting (or names the file)
    assert {v for v in documented if v != "DRIVESYNC_CONFIG"} <= {
        "DRIVESYNC_" + n.upper() for n in names}
    assert "DRIVESYNC_LOG_FILE" in documented


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Settings)])
def test_flag_beats_environment_beats_config_file(name, tmp_path):
    cfg = tmp_path / "config.ini"
    cfg.write_text(f"[drivesync]\n{name} = {_value(name, 1)}\n")
    var = "DRIVESYNC_" + name.upper()
    assert getattr(load_settings(env={}, config_file=cfg), name) == _typed(name, _value(name, 1))
    env = {var: _value(name, 2)}
    assert getattr(load_settings(env=env, config_file=cfg), name) == _typed(name, _value(name, 2))
    flags = {name: _value(name, 3)}
    got = load_settings(flags, env=env, config_file=cfg)
    assert getattr(got, name) == _typed(name, _value(name, 3))
    # a flag left unset (None) does not hide the environment
    assert getattr(load_settings({name: None}, env=env, config_file=cfg), name) == \
        _typed(name, _value(name, 2))


# ---- the state directory: one place decides it, the md5 cache follows -------------

def _hash_a_local_folder(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    (folder / "a.txt").write_bytes(b"a")
    assert [e.md5 for e in drivesync.ls(f"local:{folder}")] == [
        "0cc175b9c0f1b6a831c399e269772661"]


def test_state_dir_from_the_environment_holds_the_md5_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIVESYNC_STATE_DIR", str(tmp_path / "env-state"))
    _hash_a_local_folder(tmp_path)
    assert (tmp_path / "env-state" / "hashes.sqlite").is_file()
    assert hashing.default_cache_path() == tmp_path / "env-state" / "hashes.sqlite"


def test_state_dir_from_the_config_file_holds_the_md5_cache(tmp_path, monkeypatch):
    """hashing read DRIVESYNC_STATE_DIR / XDG_CACHE_HOME itself: ``state_dir =`` in the
    config file moved push's state but not a local remote's md5 cache."""
    monkeypatch.delenv("DRIVESYNC_STATE_DIR")
    cfg = tmp_path / "config.ini"
    cfg.write_text(f"[drivesync]\nstate_dir = {tmp_path / 'file-state'}\n")
    monkeypatch.setenv("DRIVESYNC_CONFIG", str(cfg))
    _hash_a_local_folder(tmp_path)
    assert (tmp_path / "file-state" / "hashes.sqlite").is_file()
    assert hashing.default_cache_path() == tmp_path / "file-state" / "hashes.sqlite"
    assert not (Path(os.environ["XDG_CACHE_HOME"]) / "drivesync").exists()


def test_given_settings_decide_the_state_dir(tmp_path):
    settings = Settings(state_dir=str(tmp_path / "given"))
    with open_remote(f"local:{tmp_path}", settings=settings) as remote:
        remote.mkdir("made")              # no hashing: no cache file yet
        assert not (tmp_path / "given").exists()
        (tmp_path / "made" / "b.txt").write_bytes(b"b")
        assert [e.path for e in remote.list("made")] == ["made/b.txt"]
    assert hashing.default_cache_path(settings) == tmp_path / "given" / "hashes.sqlite"
    assert (tmp_path / "given" / "hashes.sqlite").is_file()


# ---- credentials: auth reads the settings, the settings read the environment -----

def test_token_from_the_environment_reaches_auth_with_given_settings(emulator, monkeypatch):
    """A caller's own Settings without a token still authenticate with DRIVESYNC_TOKEN."""
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    settings = Settings(api_endpoint=emulator.url, write_rate=0)
    drivesync.mkdir("drive:via_env_token", settings=settings)
    assert [e.name for e in drivesync.ls("drive:", settings=settings)] == ["via_env_token"]
    given = Settings(api_endpoint=emulator.url, token="wrong")   # given beats the environment
    with pytest.raises(AuthError):
        drivesync.ls("drive:", settings=given)


def test_token_from_the_config_file_reaches_auth_status(emulator, tmp_path, monkeypatch,
                                                        capsys):
    cfg = tmp_path / "config.ini"
    cfg.write_text(f"[drivesync]\ntoken = {TOKEN}\napi_endpoint = {emulator.url}\n")
    assert main(["auth", "status", "--json", "--config", str(cfg)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["source"], doc["accepted"], doc["endpoint"]) == ("token", True, emulator.url)
    monkeypatch.setenv("DRIVESYNC_TOKEN", "wrong-token")     # the environment beats the file
    assert main(["auth", "status", "--json", "--config", str(cfg)]) == 5
    assert TOKEN not in capsys.readouterr().out


def test_service_account_and_client_file_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DRIVESYNC_SERVICE_ACCOUNT", str(tmp_path / "no-key.json"))
    assert main(["auth", "status"]) == 5
    assert f"{tmp_path / 'no-key.json'}: service-account key file not found" in \
        capsys.readouterr().err
    monkeypatch.setenv("DRIVESYNC_CREDENTIALS", str(tmp_path / "no-client.json"))
    assert main(["auth", "login", "--console"]) == 5
    assert f"{tmp_path / 'no-client.json'}: OAuth client file not found" in \
        capsys.readouterr().err


# ---- the log file: --log-file, DRIVESYNC_LOG_FILE, log_file = ------------------------

def test_log_file_from_each_source(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    cfg = tmp_path / "config.ini"
    cfg.write_text(f"[drivesync]\nlog_file = {tmp_path / 'file.log'}\n")
    monkeypatch.setenv("DRIVESYNC_CONFIG", str(cfg))
    assert main(["ls", str(tmp_path / "d"), "-q"]) == 0
    monkeypatch.setenv("DRIVESYNC_LOG_FILE", str(tmp_path / "env.log"))
    assert main(["ls", str(tmp_path / "d"), "-q"]) == 0
    assert main(["ls", str(tmp_path / "d"), "-q", "--log-file", str(tmp_path / "flag.log")]) == 0
    for name in ("file.log", "env.log", "flag.log"):
        lines = (tmp_path / name).read_text().splitlines()
        assert len([x for x in lines if "end: exit code 0" in x]) == 1, name
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600


# ---- the emulator verb takes the token setting --------------------------------------

def test_emulator_serves_the_configured_token_without_printing_it(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), DRIVESYNC_TOKEN="env-secret-token")
    proc = subprocess.Popen([sys.executable, "-m", "drivesync", "emulator", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[1]
        hint = proc.stdout.readline() + proc.stdout.readline()
        assert 'DRIVESYNC_TOKEN="$DRIVESYNC_TOKEN"' in hint and "env-secret" not in hint
        files = f"{url}drive/v3/files"
        ok = requests.get(files, headers={"Authorization": "Bearer env-secret-token"})
        assert ok.status_code == 200
        assert requests.get(files, headers={"Authorization": "Bearer demo"}).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---- the CLI's setting flags join the one resolution ---------------------------------

def _cli_settings(*argv: str) -> Settings:
    from drivesync.cli import build_parser, hoist_global_options
    from drivesync.cli.context import make_context

    args = build_parser().parse_args(hoist_global_options(list(argv)))
    return make_context(args).settings


def test_push_flags_beat_the_environment_in_the_settings_its_remote_is_built_with(
        monkeypatch, tmp_path):
    cfg = tmp_path / "config.ini"
    cfg.write_text("[drivesync]\nwrite_rate = 1\njobs = 2\n")
    monkeypatch.setenv("DRIVESYNC_CONFIG", str(cfg))
    s = _cli_settings("push", "src", "drive:x")
    assert (s.write_rate, s.jobs) == (1.0, 2)                        # the config file
    monkeypatch.setenv("DRIVESYNC_WRITE_RATE", "2")
    monkeypatch.setenv("DRIVESYNC_JOBS", "5")
    s = _cli_settings("push", "src", "drive:x")
    assert (s.write_rate, s.jobs) == (2.0, 5)                        # the environment
    s = _cli_settings("push", "src", "drive:x", "--write-rate", "0.5", "-j", "3")
    assert (s.write_rate, s.jobs) == (0.5, 3)                        # the flags
    with open_remote("drive:x", settings=s) as remote:               # built with them
        assert remote._writes.rate == 0.5
    assert _cli_settings("pull", "drive:x", "dst", "--jobs", "7").jobs == 7


def test_the_emulators_own_write_rate_is_not_the_clients(monkeypatch):
    monkeypatch.setenv("DRIVESYNC_WRITE_RATE", "2")
    assert _cli_settings("emulator", "--write-rate", "9").write_rate == 2.0


def test_a_drive_remote_built_directly_still_takes_the_token_from_the_environment(
        emulator, monkeypatch):
    """auth read DRIVESYNC_TOKEN itself; now the remote's settings carry it."""
    from drivesync.remotes.drive import DriveRemote

    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    remote = DriveRemote("direct", settings=Settings(api_endpoint=emulator.url, write_rate=0))
    try:
        remote.mkdir("")
        assert remote.settings.token == TOKEN
    finally:
        remote.close()
