"""The real rclone (a Go Drive client, not google-api-python-client) against the emulator.

rclone's Drive backend always talks to https://www.googleapis.com, so the test
puts a small TLS-terminating proxy in between: rclone sends CONNECT through
``HTTPS_PROXY``, the proxy answers the TLS handshake with a throwaway
certificate rclone is told to trust (``--ca-cert``) and relays the plain HTTP
to the emulator. Skipped where rclone or openssl is not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not (shutil.which("rclone") and shutil.which("openssl")),
                                reason="needs rclone and openssl")

SHORTCUT = "application/vnd.google-apps.shortcut"


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Proxy:
    """CONNECT -> TLS with our certificate -> the emulator; plain proxy requests relayed."""

    def __init__(self, upstream: tuple, ctx: ssl.SSLContext):
        self.upstream, self.ctx = upstream, ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(4096)
            if not data:
                conn.close()
                return
            head += data
        up = socket.create_connection(self.upstream)
        if head.startswith(b"CONNECT"):
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            try:
                conn = self.ctx.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                up.close()
                return
        else:  # a plain http:// request through the proxy (an absolute URI)
            up.sendall(head)
        threading.Thread(target=_pipe, args=(conn, up), daemon=True).start()
        _pipe(up, conn)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def rclone(emulator, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=www.googleapis.com",
                    "-addext", "subjectAltName=DNS:www.googleapis.com"],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    proxy = Proxy(("127.0.0.1", emulator.port), ctx)
    (tmp_path / "rclone.conf").write_text("[emu]\ntype = drive\nscope = drive\n")
    env = dict(os.environ, HTTPS_PROXY=f"http://127.0.0.1:{proxy.port}",
               HTTP_PROXY=f"http://127.0.0.1:{proxy.port}", NO_PROXY="",
               RCLONE_CONFIG=str(tmp_path / "rclone.conf"))
    token = json.dumps({"access_token": emulator.token, "token_type": "Bearer",
                        "expiry": "2099-01-01T00:00:00Z"})

    def run(*args: str, stdin: bytes = b"") -> str:
        done = subprocess.run(
            ["rclone", "--ca-cert", str(cert), "--drive-token", token, "--drive-client-id", "x",
             "--drive-client-secret", "y", "--drive-chunk-size", "256k",
             "--drive-upload-cutoff", "256k", "--low-level-retries", "1", "--retries", "1",
             *args], input=stdin, env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        return done.stdout.decode()

    yield run
    proxy.close()


def _live(emulator) -> dict:
    return {f["name"]: f for f in emulator.state.all_files() if not f["trashed"]}


@pytest.mark.slow
def test_rclone_uploads_updates_streams_moves_shortcuts_and_shares(rclone, emulator, tmp_path):
    big, newer, stream = os.urandom(700_000), os.urandom(600_000), os.urandom(600_000)
    (tmp_path / "big.bin").write_bytes(big)
    (tmp_path / "newer.bin").write_bytes(newer)
    rclone("mkdir", "emu:dir")
    rclone("copyto", str(tmp_path / "big.bin"), "emu:dir/big.bin")      # resumable, POSTed
    rclone("copyto", str(tmp_path / "newer.bin"), "emu:dir/big.bin")    # resumable update
    rclone("rcat", "--streaming-upload-cutoff", "1k", "emu:dir/stream.bin", stdin=stream)
    rclone("mkdir", "emu:other")
    rclone("moveto", "emu:dir/stream.bin", "emu:other/stream.bin")      # PATCH, body null
    rclone("backend", "shortcut", "emu:", "dir/big.bin", "dir/link")
    link = rclone("link", "emu:dir/big.bin")                            # permissions.create
    sums = dict(reversed(line.split("  ", 1)) for line in rclone("md5sum", "emu:").splitlines())
    live = _live(emulator)
    assert live["big.bin"]["md5Checksum"] == hashlib.md5(newer).hexdigest()
    assert int(live["big.bin"]["quotaBytesUsed"]) == len(big) + len(newer)  # a revision
    assert live["stream.bin"]["md5Checksum"] == hashlib.md5(stream).hexdigest()
    assert live["stream.bin"]["parents"] == [live["other"]["id"]]
    assert live["link"]["mimeType"] == SHORTCUT
    assert live["link"]["shortcutDetails"]["targetId"] == live["big.bin"]["id"]
    assert sums["other/stream.bin"] == hashlib.md5(stream).hexdigest()
    assert sums["dir/link"] == sums["dir/big.bin"]                      # rclone followed it
    assert live["big.bin"]["id"] in link and live["big.bin"]["shared"] is True
    ops = emulator.counters["ops"]
    assert ops["upload.chunk"] >= 3 + 3 + 3 and emulator.counters["methods"].get("PUT", 0) == 0
    assert Path(tmp_path / "big.bin").read_bytes() == big
