"""A Drive v3 emulator for tests, benchmarks and the demo (imports nothing above core).

``Emulator`` runs the server in-process; ``EmulatorClient`` drives the control
plane of one running elsewhere (e.g. ``drivesync emulator`` in a subprocess)
with the same method names.
"""

from __future__ import annotations

import base64
from typing import Any, Dict, List, Optional

from .app import Emulator

__all__ = ["Emulator", "EmulatorClient"]


class EmulatorClient:
    """The control plane (``/_emulator/...``) of an emulator at ``url``, over HTTP."""

    def __init__(self, url: str, *, timeout: float = 30.0):
        import requests  # only the client needs it; the server is stdlib

        self.url = url if url.endswith("/") else url + "/"
        self.timeout = timeout
        self._http = requests.Session()

    def _call(self, method: str, action: str, doc: Optional[dict] = None) -> Any:
        resp = self._http.request(method, f"{self.url}_emulator/{action}", json=doc,
                                  timeout=self.timeout)
        if resp.status_code != 200:
            raise ValueError(f"emulator {action} failed ({resp.status_code}): {resp.text}")
        return resp.json()

    def reset(self) -> None:
        self._call("POST", "reset")

    def configure(self, **knobs: Any) -> Dict[str, Any]:
        return self._call("POST", "configure", knobs)

    def inject(self, kind: str, count: int = 1, method: Optional[str] = None,
               path_contains: Optional[str] = None) -> None:
        self._call("POST", "inject", {"kind": kind, "count": count, "method": method,
                                      "path_contains": path_contains})

    def add_file(self, meta: Dict[str, Any], data: Optional[bytes] = None) -> Dict[str, Any]:
        doc = dict(meta)
        if data is not None:
            doc["data_base64"] = base64.b64encode(data).decode()
        return self._call("POST", "add_file", doc)

    @property
    def counters(self) -> Dict[str, Any]:
        return self._call("GET", "counters")

    def all_files(self) -> List[dict]:
        return self._call("GET", "files")

    def close(self) -> None:
        self._http.close()
