"""The HTTP/1.1 server: a thread per connection, bodies paced, faults that cut connections.

Turns sockets into :class:`~.wire.Request` objects and :class:`~.wire.Response`
objects back into bytes; ``/_emulator/...`` goes to the control plane, the rest
to the API. Knows nothing about Drive.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Tuple

from . import control, errors
from .faults import Throttle
from .wire import IO_CHUNK, Body, Request, Response, error_response, query_dict, reason_phrase

if TYPE_CHECKING:
    from .app import Emulator

log = logging.getLogger(__name__)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: Tuple[str, int], emu: Emulator):
        self.emu = emu
        self.connections: set = set()
        self.conn_lock = threading.Lock()
        super().__init__(addr, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        super().setup()
        self.throttle = Throttle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _pace(self, n: int) -> None:
        self.throttle.pace(n, self.server.emu.config.bandwidth)

    def _read_request(self) -> Request:
        url = urllib.parse.urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            raw = self._read_chunked()
            body = Body(raw, len(raw))
        else:
            body = Body(self.rfile, int(headers.get("content-length") or 0), self._pace)
        host = headers.get("host") or f"{self.server.server_address[0]}:{self.server.server_port}"
        return Request(method=self.command, path=url.path.lstrip("/"), raw_path=self.path,
                       query=query_dict(url.query), headers=headers, body=body,
                       base_url=f"http://{host}/")

    def _serve(self) -> None:
        emu = self.server.emu
        req = self._read_request()
        body = req.body
        try:
            if req.path.startswith("_emulator/"):
                resp = control.handle(emu, req)
            else:
                total = body.remaining
                if emu.config.latency > 0:
                    time.sleep(emu.config.latency)
                self.throttle.restart()  # latency is not bandwidth credit
                resp = emu.api.handle(req)
                emu._count("bytes_in", total - body.remaining)
                if resp.drop:
                    self._drop(body, reset=resp.reset)
                    return
            body.drain()
            self._send(resp)
        except (ConnectionError, OSError) as exc:
            log.debug("connection lost: %s", exc)
            self.close_connection = True
        except Exception:  # a bug: answer 500 in the envelope rather than hang the client
            log.exception("emulator error on %s %s", self.command, self.path)
            self.close_connection = True
            try:
                self._send(error_response(errors.backend_error(500)))
            except OSError:
                pass

    def _drop(self, body: Body, *, reset: bool) -> None:
        """End the connection without an answer.

        ``drop``: take the whole request, then close cleanly; httplib2 reads that
        as a stale keep-alive connection and re-sends the request once by itself
        (a streamed body it cannot rewind then hangs until the client's timeout,
        as it would against Google). ``reset``: take half the body, then abort
        with a TCP reset, which surfaces at once as a connection error.
        """
        self.close_connection = True
        if not reset:
            body.drain()
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        body.read(body.remaining // 2)
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _read_chunked(self) -> bytes:
        out = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(out)
            out.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, resp: Response) -> None:
        emu = self.server.emu
        streamed = resp.stream is not None or resp.length > 0
        length = resp.length if streamed else len(resp.body)
        head = [f"HTTP/1.1 {resp.status} {reason_phrase(resp.status)}",
                f"Date: {self.date_time_string()}", "Server: drivesync-emulator"]
        head += [f"{k}: {v}" for k, v in resp.headers]
        head.append(f"Content-Length: {length}")
        if self.close_connection or resp.drop_after is not None:
            head.append("Connection: close")
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        try:
            if not streamed:
                emu._count("bytes_out", len(resp.body))
                self.wfile.write(raw_head + resp.body)
                return
            self.wfile.write(raw_head)
            self._stream(resp)
        finally:
            if resp.stream is not None:
                resp.stream.close()

    def _stream(self, resp: Response) -> None:
        emu = self.server.emu
        left = resp.length
        limit = resp.drop_after
        sent = 0
        while left > 0:
            n = min(IO_CHUNK, left)
            if limit is not None:
                n = min(n, limit - sent)
                if n <= 0:
                    break
            data = resp.stream.read(n) if resp.stream is not None else b"\0" * n
            if not data:
                break
            self._pace(len(data))
            emu._count("bytes_out", len(data))
            self.wfile.write(data)
            sent += len(data)
            left -= len(data)
        if left > 0:  # a dropped download (or a file shrunk under us): cut the connection
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
