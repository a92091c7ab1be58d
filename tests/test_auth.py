"""Credentials: source order, the 0600 token cache, login's copy-paste flow, auth verbs.

Nothing from google.auth / oauthlib is mocked: ADC reads a real file, the login
flow exchanges its code over HTTP with a small local token endpoint.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import stat
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from google.oauth2.credentials import Credentials

from drivesync import auth
from drivesync.cli import main
from drivesync.config import Settings, resolve_settings
from drivesync.errors import EXIT_AUTH, AuthError

SECRET = "ya29.super-secret-access-token"


@pytest.fixture(autouse=True)
def _no_metadata_server(monkeypatch):
    """Keep google.auth.default() from probing a GCE metadata server (slow off GCE)."""
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("CLOUDSDK_CONFIG", "/nonexistent-gcloud-config")


def user_creds(**kw) -> Credentials:
    return Credentials(token=kw.get("token", SECRET), refresh_token="refresh-secret",
                       client_id="cid.apps.googleusercontent.com", client_secret="csecret",
                       token_uri="https://oauth2.googleapis.com/token", scopes=auth.SCOPES,
                       expiry=datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(hours=1))


def test_token_file_is_written_0600_in_a_0700_dir(tmp_path):
    path = tmp_path / "cfg" / "drivesync" / "token.json"
    auth.save_user_token(user_creds(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["token.json"]  # no temp file left
    assert auth.load_user_token(path).token == SECRET
    auth.save_user_token(user_creds(token="second"), path)  # rewrite keeps the mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["token"] == "second"


def test_source_order(tmp_path, monkeypatch):
    cached = tmp_path / "token.json"
    auth.save_user_token(user_creds(), cached)
    settings = Settings(token_file=str(cached))
    assert auth.resolve_credentials(resolve_settings(settings)).kind == "user"
    monkeypatch.setenv("DRIVESYNC_TOKEN", "tok-xyz")
    # the caller's Settings leave the token unset: the environment's comes in through
    # the one resolution, and beats the cached user token
    src = auth.resolve_credentials(resolve_settings(settings))
    assert src.kind == "token" and src.credentials.token == "tok-xyz"
    assert "tok-xyz" not in src.description
    # auth itself reads only the settings it is given
    assert auth.resolve_credentials(settings).kind == "user"


def test_application_default_credentials(tmp_path, monkeypatch):
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s",
                               "refresh_token": "r"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    assert auth.resolve_credentials(Settings()).kind == "adc"


def test_service_account_key(tmp_path):
    # cryptography comes with google-auth, which signs service-account JWTs with it
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "k1",
        "private_key": pem, "client_email": "bot@p.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    src = auth.resolve_credentials(Settings(service_account=str(path)))
    assert src.kind == "service_account" and "bot@p.iam.gserviceaccount.com" in src.description
    assert src.credentials.scopes == auth.SCOPES
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(AuthError, match="not a service-account key"):
        auth.resolve_credentials(Settings(service_account=str(bad)))


def test_no_credentials_names_the_next_step():
    with pytest.raises(AuthError, match="drivesync auth login"):
        auth.resolve_credentials(Settings())


@pytest.mark.parametrize("pasted, code", [
    ("4/abc", "4/abc"),
    ("http://127.0.0.1:1/?state=S&code=4%2Fabc&scope=x", "4/abc"),
    ("  http://127.0.0.1:1/?code=xyz&state=S \n", "xyz"),
])
def test_code_from_pasted(pasted, code):
    assert auth.code_from_pasted(pasted, state="S") == code


@pytest.mark.parametrize("pasted, message", [
    ("http://127.0.0.1:1/?code=x&state=OTHER", "another login"),
    ("http://127.0.0.1:1/?error=access_denied&state=S", "access_denied"),
    ("http://127.0.0.1:1/?state=S", "no code"),
    ("", "nothing was pasted"),
])
def test_code_from_pasted_rejects(pasted, message):
    with pytest.raises(AuthError, match=message):
        auth.code_from_pasted(pasted, state="S")


class _TokenEndpoint(BaseHTTPRequestHandler):
    """Google's token endpoint, as far as the code exchange goes."""

    seen: list = []

    def do_POST(self):  # noqa: N802 - stdlib name
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        _TokenEndpoint.seen.append(body)
        doc = json.dumps({"access_token": SECRET, "refresh_token": "refresh-secret",
                          "expires_in": 3600, "token_type": "Bearer",
                          "scope": auth.SCOPES[0]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(doc)))
        self.end_headers()
        self.wfile.write(doc)

    def log_message(self, *args):
        pass


def test_console_login_caches_the_token_and_never_prints_it(tmp_path, monkeypatch, capsys,
                                                            caplog):
    server = HTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        secrets = tmp_path / "client_secret.json"
        secrets.write_text(json.dumps({"installed": {
            "client_id": "cid.apps.googleusercontent.com", "client_secret": "csecret",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": f"http://127.0.0.1:{server.server_port}/token",
            "redirect_uris": ["http://localhost"]}}))
        monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the test endpoint is http
        monkeypatch.setattr("sys.stdin", io.StringIO("http://127.0.0.1:1/?code=4%2Fthe-code\n"))
        with caplog.at_level(logging.DEBUG):
            code = main(["auth", "login", "--console", "--client-secrets", str(secrets), "-vv"])
        out, err = capsys.readouterr()
    finally:
        server.shutdown()
    assert code == 0
    assert "accounts.google.com" in err and "redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2F" in err
    assert "code=4%2Fthe-code" in _TokenEndpoint.seen[-1]
    token_file = Settings().resolved_token_file()
    assert str(token_file) in out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert json.loads(token_file.read_text())["refresh_token"] == "refresh-secret"
    for text in (out, err, caplog.text):
        assert SECRET not in text and "refresh-secret" not in text


def test_login_without_client_secrets_exits_5(capsys):
    assert main(["auth", "login", "--console"]) == EXIT_AUTH
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--client-secrets" in err


def test_status_with_token_against_the_emulator(emulator, monkeypatch, capsys, caplog):
    monkeypatch.setenv("DRIVESYNC_TOKEN", emulator.token)
    with caplog.at_level(logging.DEBUG):
        assert main(["auth", "status", "--endpoint", emulator.url, "-vv"]) == 0
    out, err = capsys.readouterr()
    assert "raw access token" in out and "emulated.user@example.com" in out
    assert main(["auth", "status", "--endpoint", emulator.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"] == "token" and doc["accepted"] is True
    assert doc["account"]["email"] == "emulated.user@example.com"
    for text in (out, err, caplog.text, json.dumps(doc)):
        assert emulator.token not in text


def test_status_with_a_wrong_token_exits_5(emulator, monkeypatch, capsys, caplog):
    monkeypatch.setenv("DRIVESYNC_TOKEN", SECRET)
    with caplog.at_level(logging.DEBUG):
        assert main(["auth", "status", "--endpoint", emulator.url]) == EXIT_AUTH
    out, err = capsys.readouterr()
    assert "raw access token" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "auth login" in lines[0]
    assert main(["auth", "status", "--endpoint", emulator.url, "--json"]) == EXIT_AUTH
    out, err = capsys.readouterr()
    assert json.loads(out)["accepted"] is False
    for text in (out, err, caplog.text):
        assert SECRET not in text


def test_logout_deletes_the_cached_token(capsys):
    path = Settings().resolved_token_file()
    auth.save_user_token(user_creds(), path)
    assert main(["auth", "logout"]) == 0
    assert not path.exists() and "removed" in capsys.readouterr().out
    assert main(["auth", "logout"]) == 0
    assert "no cached token" in capsys.readouterr().out


@pytest.mark.parametrize("expired", [True, False])
def test_a_token_refreshed_during_a_run_is_written_back(emulator, drive_settings, tmp_path,
                                                        expired):
    """google-auth refreshes an expired token (or after a 401) in the middle of a run;
    the new token must reach the cache file (0600) so the next run need not refresh."""
    from drivesync.remotes.drive import DriveRemote

    class Endpoint(_TokenEndpoint):
        def do_POST(self):  # noqa: N802 - stdlib name
            self.rfile.read(int(self.headers.get("content-length") or 0))
            doc = json.dumps({"access_token": emulator.token, "expires_in": 3600,
                              "token_type": "Bearer"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(doc)))
            self.end_headers()
            self.wfile.write(doc)

    server = HTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = tmp_path / "cfg" / "token.json"
    auth.save_user_token(user_creds(token="stale-token"), path)
    loaded = auth.load_user_token(path)
    assert loaded.token == "stale-token" and loaded.token_file == path
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    creds = type(loaded)(token="stale-token", refresh_token="refresh-secret",
                         client_id="cid", client_secret="csecret", scopes=auth.SCOPES,
                         token_uri=f"http://127.0.0.1:{server.server_port}/token",
                         expiry=now + timedelta(hours=-1 if expired else 1))
    creds.token_file = path
    settings = dataclasses.replace(drive_settings, token=None)
    remote = DriveRemote("space_Colab", settings=settings, credentials=creds)
    try:
        remote.mkdir("x")  # 401 with the stale token -> refresh -> retried, or refresh first
    finally:
        remote.close()
        server.shutdown()
    saved = json.loads(path.read_text())
    assert saved["token"] == emulator.token and saved["refresh_token"] == "refresh-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["token.json"]


def test_quiet_keeps_warnings(emulator, monkeypatch, capsys, tmp_path):
    """-q drops chatter, never a warning: the 0644 warning was silent under -q (level ERROR)."""
    path = tmp_path / "token.json"
    auth.save_user_token(user_creds(token=emulator.token), path)
    path.chmod(0o644)
    monkeypatch.delenv("DRIVESYNC_TOKEN", raising=False)
    monkeypatch.setenv("DRIVESYNC_TOKEN_FILE", str(path))
    assert main(["ls", "drive:", "-q", "--endpoint", emulator.url]) == 0
    err = capsys.readouterr().err
    expected = f"drivesync: warning: {path}: the token file was readable by others (mode 0644)"
    assert expected in err, err
    assert emulator.token not in err
