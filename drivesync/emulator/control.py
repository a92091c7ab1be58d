"""The control plane under ``/_emulator/`` (no token), and the counters it reports.

moto's ``moto_api`` in small: tests and benchmarks in another process reset
the state, set knobs, inject faults and read counters over HTTP; the in-process
:class:`~.app.Emulator` offers the same actions as methods.
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from .errors import ApiError
from .wire import Request, Response, json_response

if TYPE_CHECKING:
    from .app import Emulator

COUNTER_KEYS = ("requests", "creates", "rate_limited", "faults", "bytes_in", "bytes_out",
                "control")


class Counters:
    """Request, byte and per-op counts, safe across the server's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.values: Dict[str, Any] = {k: 0 for k in COUNTER_KEYS}
            self.values["ops"] = {}
            self.values["methods"] = {}

    def count(self, key: str, n: int = 1, *, op: Optional[str] = None,
              method: Optional[str] = None) -> None:
        with self.lock:
            self.values[key] = self.values.get(key, 0) + n
            for name, value in (("ops", op), ("methods", method)):
                if value is not None:
                    self.values[name][value] = self.values[name].get(value, 0) + 1

    def snapshot(self) -> Dict[str, Any]:
        with self.lock:
            snap = dict(self.values)
            snap["ops"] = dict(self.values["ops"])
            snap["methods"] = dict(self.values["methods"])
            return snap


def _reset(emu: Emulator, req: Request) -> Any:
    emu.reset()
    return {"ok": True}


def _inject(emu: Emulator, req: Request) -> Any:
    emu.inject(**req.json())
    return {"ok": True, "pending": emu.faults.pending()}


def _add_file(emu: Emulator, req: Request) -> Any:
    doc = req.json()
    data = doc.pop("data_base64", None)
    return emu.add_file(doc, base64.b64decode(data, validate=True) if data is not None else None)


ACTIONS: Dict[Tuple[str, str], Callable[[Emulator, Request], Any]] = {
    ("POST", "reset"): _reset,
    ("POST", "configure"): lambda emu, req: emu.configure(**req.json()),
    ("POST", "inject"): _inject,
    ("POST", "add_file"): _add_file,
    ("GET", "counters"): lambda emu, req: emu.counters,
    ("GET", "files"): lambda emu, req: emu.state.all_files(),
    ("GET", "settings"): lambda emu, req: emu.settings(),
}


def handle(emu: Emulator, req: Request) -> Response:
    emu._count("control")
    action = req.path[len("_emulator/"):].strip("/")
    run = ACTIONS.get((req.method, action))
    if run is None:
        return json_response({"error": f"no control action {req.method} {action}"}, 404)
    try:
        return json_response(run(emu, req))
    except ApiError as err:  # Drive's refusal (an unknown parent...): its status and reason
        return json_response({"error": err.message, "reason": err.reason}, err.code)
    except (TypeError, ValueError, binascii.Error) as exc:
        return json_response({"error": str(exc)}, 400)
