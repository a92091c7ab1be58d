"""Read a stream ahead in a second thread, so receiving overlaps what the reader does.

A packed shard is unpacked as it downloads: without this, the connection waits
while each member is written and hashed. At most ``depth`` blocks wait in
between, which bounds memory.
"""

from __future__ import annotations

import queue
import threading
from typing import BinaryIO, Union

_END = b""


class ReadAhead:
    """``read(n)`` like a file; ``close()`` stops the thread (the inner stream stays open)."""

    def __init__(self, inner: BinaryIO, *, block: int, depth: int = 4):
        self._inner = inner
        self._block = block
        self._queue: queue.Queue[Union[bytes, BaseException]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="drivesync-readahead")
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._inner.read(self._block)
                self._queue.put(data)
                if not data:
                    return
        except BaseException as exc:  # noqa: BLE001 - raised again in the reading thread
            self._queue.put(exc)

    def read(self, n: int = -1) -> bytes:
        parts = []
        want = n if n is not None and n >= 0 else float("inf")
        while want > 0 and not self._eof:
            if self._pos >= len(self._buf):
                item = self._queue.get()
                if isinstance(item, BaseException):
                    self._eof = True
                    raise item
                if item == _END:
                    self._eof = True
                    break
                self._buf, self._pos = item, 0
            take = self._buf[self._pos:self._pos + int(min(want, len(self._buf) - self._pos))]
            self._pos += len(take)
            want -= len(take)
            parts.append(take)
        return b"".join(parts)

    def close(self) -> None:
        """Stop reading ahead; returns once the thread ended (at most one block later)."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()  # make room, so a blocked put returns
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
