"""The emulator: a Drive v3 server in-process, its knobs and its lifecycle.

The parts, as moto splits its services: :mod:`.routes` (the one route table),
:mod:`.handlers`, :mod:`.uploads`, :mod:`.permissions` and :mod:`.batch` (the calls),
:mod:`.wire` (requests, responses, JSON, fields masks), :mod:`.models` (state,
no HTTP), :mod:`.server` (sockets), :mod:`.control` (``/_emulator/...``),
:mod:`.faults` (the stress knobs) and :mod:`.errors` (Google's envelope).
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Union

from .api import Api
from .control import Counters
from .faults import Config, FaultPlan, WriteBucket
from .models import DriveState
from .server import Server

log = logging.getLogger(__name__)


class Emulator:
    """A Drive v3 server on 127.0.0.1 in a daemon thread.

    ``data_dir`` keeps metadata and blobs across restarts; without it a private
    temp dir is used and removed on :meth:`stop`.
    """

    def __init__(self, token: str = "demo", *, data_dir: Optional[Union[str, Path]] = None,
                 host: str = "127.0.0.1", port: int = 0):
        self.token = token
        self.host = host
        self.port = port
        self._owned_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(
            tempfile.mkdtemp(prefix="drivesync-emulator-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.state = DriveState(self.data_dir, persistent=not self._owned_dir)
        self.config = Config()
        self.faults = FaultPlan()
        self.bucket = WriteBucket(None, self.config.write_burst)
        self.api = Api(self)
        self._counters = Counters()
        self.url: Optional[str] = None
        self._server: Optional[Server] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Start serving; returns the base URL (``http://127.0.0.1:PORT/``)."""
        if self._server is not None:
            return self.url or ""
        self._server = Server((self.host, self.port), self)
        self.port = self._server.server_port
        self.url = f"http://{self.host}:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="drivesync-emulator", daemon=True)
        self._thread.start()
        log.info("emulator serving at %s (data in %s)", self.url, self.data_dir)
        return self.url

    def stop(self) -> None:
        """Stop serving, close open connections, save state (or remove the temp dir)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.api.clear_sessions()
        self.state.close()
        if self._owned_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ knobs

    def reset(self) -> None:
        """Clear files, sessions, faults, limits, knobs and counters."""
        self.api.clear_sessions()
        self.state.reset()
        self.config = Config()
        self.faults = FaultPlan()
        self.bucket = WriteBucket(None, self.config.write_burst)
        self._counters.reset()

    def configure(self, **knobs: Any) -> Dict[str, Any]:
        """Change some knobs (see :class:`Config`); the others keep their values."""
        unknown = sorted(set(knobs) - set(Config.names()))
        if unknown:
            raise ValueError(f"unknown emulator settings {unknown}; known: {Config.names()}")
        if "fault_kinds" in knobs:
            knobs["fault_kinds"] = tuple(knobs["fault_kinds"] or ())
        cfg = replace(self.config, **knobs)
        cfg.validate()
        self.config = cfg
        if "write_rate" in knobs or "write_burst" in knobs:
            self.bucket = WriteBucket(cfg.write_rate, cfg.write_burst)
        with self.faults.lock:
            self.faults.fail_rate = cfg.fail_rate
            self.faults.kinds = cfg.fault_kinds
            if "seed" in knobs:
                self.faults.rng = random.Random(cfg.seed)
        with self.state.lock:
            self.state.quota_limit = cfg.quota_limit
            self.state.max_children = cfg.max_children
            self.state.max_drive_items = cfg.max_drive_items
        return self.settings()

    def add_file(self, meta: Dict[str, Any], data: Optional[bytes] = None) -> Dict[str, Any]:
        """Create a file or folder as ``files.create`` would, past the write limit and
        faults: for tests that need what drivesync would not make itself (same-named
        items, odd names, Docs, shortcuts). Returns the full file resource."""
        content = None
        if data is not None:
            writer = self.state.blobs.writer()
            writer.write(data)
            content = writer.finish(meta.get("mimeType"))
        return self.state.render(self.state.create(dict(meta), content))

    def settings(self) -> Dict[str, Any]:
        return {k: getattr(self.config, k) for k in Config.names()}

    def inject(self, kind: str, count: int = 1, method: Optional[str] = None,
               path_contains: Optional[str] = None) -> None:
        """Make the next ``count`` matching API requests fail with ``kind``."""
        self.faults.inject(kind, count, method, path_contains)

    @property
    def counters(self) -> Dict[str, Any]:
        return self._counters.snapshot()

    def _count(self, key: str, n: int = 1, *, op: Optional[str] = None,
               method: Optional[str] = None) -> None:
        self._counters.count(key, n, op=op, method=method)
