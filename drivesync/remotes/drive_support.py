"""Small helpers of the Drive remote: the HTTP wrapper that counts requests,
the pool of pre-generated file ids, Drive's names and timestamps (the path ->
folder id cache is dircache.py).

Kept apart so drive.py reads as the list of Remote operations.
"""

from __future__ import annotations

import logging
import socket
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import httplib2

from ..pacer import Clock
from ..types import Stats
from .base import TransferInterrupted

log = logging.getLogger(__name__)


class CountingHttp:
    """Wraps one thread's authorised httplib2 object and counts every request.

    Sits below google-api-python-client, so status queries of resumable uploads,
    batch POSTs and retried attempts are all counted. Logs method and path at
    DEBUG, never headers (they carry the Authorization token).
    """

    def __init__(self, inner: Any, stats: Stats, lock: threading.Lock):
        self._inner = inner
        self._stats = stats
        self._lock = lock

    def request(self, uri: str, method: str = "GET", body: Any = None,
                headers: Optional[dict] = None, **kwargs: Any) -> Any:
        with self._lock:
            self._stats.requests += 1
        log.debug("%s %s", method, uri.split("?", 1)[0])
        return self._inner.request(uri, method, body=body, headers=headers, **kwargs)

    def __getattr__(self, name: str) -> Any:  # credentials, timeout, close, ...
        return getattr(self._inner, name)


class StopClock(Clock):
    """The pacer's clock: retry and rate-limit waits end at once on Ctrl-C."""

    def __init__(self, stop: threading.Event):
        self._stop = stop

    def sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds) if seconds > 0 else self._stop.is_set():
            raise TransferInterrupted("interrupted")


def cut_connections(https: list[Any]) -> None:
    """Shut down the sockets of requests in flight (from another thread), so a
    transfer blocked in send/recv fails now instead of finishing its chunk."""
    for http in https:
        try:
            conns = list(getattr(http, "connections", {}).values())
        except RuntimeError:  # the dict changed while we copied it: a new connection
            conns = []
        for conn in conns:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class IdPool:
    """File ids from files.generateIds, handed out to threads one at a time.

    Creating with a pre-generated id makes a create idempotent: a retry of a
    create that landed is answered 409 instead of making a second copy.
    """

    def __init__(self, fetch: Callable[[int], list[str]], *, block: int = 1000):
        self._fetch = fetch
        self._block = block
        self._ids: list[str] = []
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            if not self._ids:
                self._ids = list(self._fetch(self._block))
                self._ids.reverse()
            return self._ids.pop()


def proxy_for(endpoint: str) -> Optional[httplib2.ProxyInfo]:
    """The proxy the standard variables name for ``endpoint`` (HTTPS_PROXY for an
    https endpoint, HTTP_PROXY for http; NO_PROXY hosts bypass it), or None.

    Callers say it with host and port only: a proxy URL may carry a password.
    """
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    scheme = url.scheme if url.scheme in ("http", "https") else "https"
    info = httplib2.proxy_info_from_environment(scheme)
    if info is None or not info.applies_to(url.hostname or ""):
        return None
    return info


def rfc3339(ts: float) -> str:
    """Drive's timestamp format (UTC, milliseconds)."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_rfc3339(text: Optional[str]) -> float:
    """Seconds since the epoch from Drive's timestamp; 0.0 when absent or malformed."""
    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


# Drive allows names no path can hold: "a/b", "x\\y", NUL, ".", "..", "". Such a name
# is shown (Entry.path, ls, pull) with look-alike characters instead, so every
# item stays addressable by path and nothing is silently left out.
_SHOWN = {"/": "\uff0f", "\\": "\uff3c", "\x00": "\u2400"}   # ／ ＼ ␀
_DOT = "\uff0e"                                                 # ． for "." and ".."
_EMPTY = "\u2205"                                               # ∅ for ""


def shown_name(name: str) -> str:
    """The name a Drive item has in our paths (identity for every usable name)."""
    if name in (".", ".."):
        return _DOT * len(name)
    if not name:
        return _EMPTY
    for raw, shown in _SHOWN.items():
        name = name.replace(raw, shown)
    return name


def drive_names(shown: str) -> list[str]:
    """Every Drive name that :func:`shown_name` turns into ``shown``."""
    raw = shown
    if shown in (_DOT, _DOT * 2):
        raw = "." * len(shown)
    elif shown == _EMPTY:
        raw = ""
    else:
        for r, s in _SHOWN.items():
            raw = raw.replace(s, r)
    return [shown] if raw == shown else [shown, raw]


def q_literal(value: str) -> str:
    """A string literal for a files.list query."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pick(items: list[dict], *, what: str) -> dict:
    """The deterministic choice among same-named items: oldest, then smallest id."""
    items = sorted(items, key=lambda f: (f.get("createdTime") or "", f.get("id") or ""))
    if len(items) > 1:
        log.warning("%s: %d items share this name on Drive; using the oldest (id %s)",
                    what, len(items), items[0].get("id"))
    return items[0]
