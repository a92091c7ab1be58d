"""Credentials and proxies (issue 9, item 7): a token file readable by others is
tightened, a broken one is one line naming it (exit 5), and HTTPS_PROXY /
HTTP_PROXY / NO_PROXY are honoured and named at -v without their password."""

from __future__ import annotations

import json
import os
import select
import socket
import stat
import threading

import pytest

from drivesync.cli import main
from drivesync.errors import EXIT_AUTH

TOKEN = "test-token"
GOOD = {"token": TOKEN, "refresh_token": "r", "client_id": "c", "client_secret": "s",
        "expiry": "2099-01-01T00:00:00Z"}


@pytest.fixture
def token_file(tmp_path, monkeypatch):
    path = tmp_path / "cfg" / "token.json"
    path.parent.mkdir()
    monkeypatch.setenv("DRIVESYNC_TOKEN_FILE", str(path))
    return path


def test_token_file_readable_by_others_is_tightened(token_file, emulator, capsys):
    token_file.write_text(json.dumps(GOOD))
    os.chmod(token_file, 0o644)
    assert main(["ls", "drive:", "--endpoint", emulator.url]) == 0
    err = capsys.readouterr().err
    assert "readable by others" in err and "0600" in err
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert TOKEN not in err


@pytest.mark.parametrize("kind", ["list", "folder", "binary", "not-json"])
def test_broken_token_file_is_one_line_naming_it(token_file, emulator, capsys, kind):
    if kind == "folder":
        token_file.mkdir()
    elif kind == "list":
        token_file.write_text(json.dumps([GOOD]))
    elif kind == "binary":
        token_file.write_bytes(bytes(range(256)))
    else:
        token_file.write_text("{token: ")
    os.chmod(token_file, 0o600) if kind != "folder" else None
    code = main(["ls", "drive:", "--endpoint", emulator.url])
    err = capsys.readouterr().err
    assert code == EXIT_AUTH, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(token_file) in lines[0] and "internal error" not in err


class CountingProxy:
    """A loopback HTTP proxy that tunnels CONNECT and counts what went through it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.tunnels = 0
        self.auth_seen = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                conn.close()
                return
            head += chunk
        first = head.split(b"\r\n", 1)[0].decode()
        method, target, _ = first.split(" ", 2)
        self.auth_seen += [h for h in head.split(b"\r\n") if h.lower().startswith(b"proxy-auth")]
        if method != "CONNECT":
            conn.sendall(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        host, port = target.rsplit(":", 1)
        up = socket.create_connection((host, int(port)))
        self.tunnels += 1
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        socks = [conn, up]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 5)
                if not ready:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is conn else conn).sendall(data)
        finally:
            conn.close()
            up.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def proxy():
    p = CountingProxy()
    yield p
    p.close()


def test_http_proxy_is_used_and_named_without_its_password(emulator, proxy, monkeypatch,
                                                           capsys):
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    monkeypatch.setenv("HTTP_PROXY", f"http://alice:s3cret@127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert main(["mkdir", "drive:space_Colab/viaproxy", "--endpoint", emulator.url, "-v"]) == 0
    err = capsys.readouterr().err
    assert proxy.tunnels >= 1
    assert f"using the proxy 127.0.0.1:{proxy.port}" in err and "s3cret" not in err
    assert any(f["name"] == "viaproxy" for f in emulator.state.all_files())


def test_no_proxy_bypasses_it(emulator, proxy, monkeypatch, capsys):
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert main(["ls", "drive:", "--endpoint", emulator.url, "-v"]) == 0
    assert proxy.tunnels == 0 and "using the proxy" not in capsys.readouterr().err
