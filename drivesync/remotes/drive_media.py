"""A Drive file's bytes as one streamed GET (``alt=media``), resumed with Range after a break.

httplib2 (google-api-python-client's transport) reads a whole response into
memory, and MediaIoBaseDownload asks for the file in ranged chunks of that
size: memory grows with the chunk, and every chunk costs a request and a
pause. Here the URL is still built by google-api-python-client
(``files().get_media(...).uri``) and the credentials are google.auth's; the
body is read through an AuthorizedSession as a stream, a block at a time.

Each read goes through the remote's pacer: a connection that breaks mid-body
is retried with ``Range: bytes=POS-`` from the first byte not yet received, so
the bytes already taken are never fetched twice.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any, Callable, Optional, TypeVar

import httplib2
from googleapiclient.errors import HttpError

from ..errors import TransientError
from .drive_client import SOCKET_TIMEOUT

log = logging.getLogger(__name__)
T = TypeVar("T")

ERROR_BODY_MAX = 64 * 1024   # an error answer is a small JSON envelope


class MediaStream:
    """``read(n)`` the bytes of one file from ``offset`` on; ``b""`` at its end.

    ``session()`` gives this thread's AuthorizedSession, ``call(fn, what=)`` runs
    one attempt through the pacer (classifying errors), ``on_request`` counts
    each GET, ``on_close`` hears when the stream is done (also after a break:
    a later read opens it again). Thread-confined, except :meth:`abort`
    (Ctrl-C from another thread).
    """

    def __init__(self, *, url: str, size: int, offset: int, what: str,
                 session: Callable[[], Any], call: Callable[..., Any],
                 on_request: Callable[[], None],
                 on_close: Callable[[MediaStream], None] = lambda stream: None):
        self.url = url
        self.size = size
        self.pos = offset
        self.what = what
        self.requests = 0
        self._session = session
        self._call = call
        self._on_request = on_request
        self._on_close = on_close
        self._resp: Any = None
        self._lock = threading.Lock()

    def read(self, n: int) -> bytes:
        if self.pos >= self.size:
            return b""
        return self._call(lambda: self._read_some(n), what=self.what)

    def _read_some(self, n: int) -> bytes:
        if self._resp is None:
            self._open()
        try:
            data = self._resp.raw.read(min(n, self.size - self.pos))
        except BaseException:
            self.close()
            raise
        if not data:
            got = self.pos
            self.close()
            raise TransientError(f"{self.what}: the connection closed after {got} of "
                                 f"{self.size} bytes")
        self.pos += len(data)
        if self.pos >= self.size:
            self.close()  # the whole body is read: the connection goes back to the pool
        return data

    def _open(self) -> None:
        """One GET: the whole file, or from ``pos`` on after a break (206 expected)."""
        headers = {"Accept-Encoding": "identity"}  # byte offsets must be the file's own
        if self.pos:
            headers["Range"] = f"bytes={self.pos}-"
        self._on_request()
        self.requests += 1
        log.debug("GET %s%s", self.url.split("?", 1)[0], f" from byte {self.pos}" if self.pos
                  else "")
        resp = self._session().get(self.url, headers=headers, stream=True,
                                   timeout=(SOCKET_TIMEOUT, SOCKET_TIMEOUT))
        if resp.status_code not in (200, 206):
            body = resp.raw.read(ERROR_BODY_MAX, decode_content=True) or b""
            resp.close()
            raise HttpError(httplib2.Response({"status": resp.status_code}), body, uri=self.url)
        skip = 0
        if resp.status_code == 200 and self.pos:  # Range ignored: the whole body came
            skip = self.pos
        elif resp.status_code == 206:
            start = _range_start(resp.headers.get("Content-Range"))
            if start != self.pos:
                resp.close()
                raise TransientError(f"{self.what}: asked for bytes from {self.pos}, the "
                                     f"answer starts at {start}")
        with self._lock:
            self._resp = resp
        while skip:  # rare: drop what we already hold, a block at a time
            chunk = resp.raw.read(min(skip, 1 << 20))
            if not chunk:
                raise TransientError(f"{self.what}: the connection closed early")
            skip -= len(chunk)

    def close(self) -> None:
        with self._lock:
            resp, self._resp = self._resp, None
        if resp is not None:
            resp.close()
        self._on_close(self)

    def abort(self) -> None:
        """Cut the connection under a read blocked in another thread (Ctrl-C)."""
        with self._lock:
            resp = self._resp
        sock = _socket_of(resp)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> MediaStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _range_start(value: Optional[str]) -> Optional[int]:
    """The first byte of ``Content-Range: bytes A-B/N``; None when unreadable."""
    try:
        return int((value or "").split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _socket_of(resp: Any) -> Optional[socket.socket]:
    conn = getattr(getattr(resp, "raw", None), "connection", None)
    return getattr(conn, "sock", None)
