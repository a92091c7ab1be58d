"""The stress knobs: latency, bandwidth, a write-rate bucket and faults.

Kept apart from the routes so the knobs are plain objects a test can reason
about: a :class:`FaultPlan` answers "what goes wrong with this request?", a
:class:`WriteBucket` "may this create happen now?", a :class:`Throttle`
"how long must this connection wait before sending these bytes?".
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field, fields
from typing import List, Optional, Sequence, Tuple

FAULT_KINDS = ("500", "503", "429", "403rate", "drop")
RANDOM_KINDS = FAULT_KINDS + ("reset",)          # what fail_rate may draw from
#: "lost" PROCESSES the request (a create creates), then closes the connection
#: without answering: the client cannot tell it from a request that never arrived,
#: so its retry meets the effect of the first try (409 for a create with an id).
INJECT_KINDS = RANDOM_KINDS + ("403daily", "quota", "expire_session", "401", "lost")


@dataclass
class Config:
    """Everything ``Emulator.configure`` accepts; ``Config()`` is the reset state."""

    latency: float = 0.0                 # seconds added to every API request
    bandwidth: Optional[float] = None    # bytes/s per connection for request/response bodies
    write_rate: Optional[float] = None   # creates + content updates per second (token bucket)
    write_burst: float = 5.0
    fail_rate: float = 0.0               # probability of a random fault per API request
    fault_kinds: Tuple[str, ...] = FAULT_KINDS
    quota_limit: Optional[int] = None    # bytes; None = unlimited
    max_children: int = 500_000          # items per non-root folder
    max_drive_items: int = 400_000       # items per shared drive, trash included
    max_page: Optional[int] = None       # files.list items per page at most, whatever
                                         # pageSize says (Drive may return fewer)
    seed: int = 0
    session_ttl: float = 7 * 24 * 3600.0  # seconds a resumable session URI stays valid
                                          # from its initiation (Drive: about a week)

    @classmethod
    def names(cls) -> List[str]:
        return [f.name for f in fields(cls)]

    def validate(self) -> None:
        bad = [k for k in self.fault_kinds if k not in RANDOM_KINDS]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; expected a subset of {RANDOM_KINDS}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be within 0..1, got {self.fail_rate}")
        if self.latency < 0:
            raise ValueError("latency must be >= 0")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be > 0 bytes/s (None = unlimited)")
        if self.write_rate is not None and self.write_rate < 0:
            raise ValueError("write_rate must be >= 0 (None = unlimited)")
        if self.max_page is not None and self.max_page < 1:
            raise ValueError("max_page must be >= 1 (None = pageSize decides)")
        if self.session_ttl <= 0:
            raise ValueError("session_ttl must be > 0 seconds")
        if self.max_children < 1:
            raise ValueError("max_children must be >= 1")
        if self.max_drive_items < 1:
            raise ValueError("max_drive_items must be >= 1")


class WriteBucket:
    """Non-blocking token bucket: Drive rejects excess writes rather than queueing them.

    (drivesync.pacer.RateLimiter blocks until a token is free, which is the
    client's side of the same contract; the server must answer 403 instead.)
    """

    def __init__(self, rate: Optional[float], burst: float):
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def try_take(self) -> bool:
        if not self.rate:
            return True
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


@dataclass
class Injection:
    kind: str
    count: int
    method: Optional[str] = None
    path_contains: Optional[str] = None

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method.upper() == method)
                and (self.path_contains is None or self.path_contains in path))


# Which requests an injected kind may hit: a quota error only makes sense on a
# write, a session expiry only on a resumable upload chunk (PUT or POST).
_WRITE_METHODS = ("POST", "PUT", "PATCH")


@dataclass
class FaultPlan:
    """Injected faults first (in the order given), then random ones."""

    fail_rate: float = 0.0
    kinds: Sequence[str] = FAULT_KINDS
    rng: random.Random = field(default_factory=random.Random)
    injections: List[Injection] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, kind: str, count: int = 1, method: Optional[str] = None,
               path_contains: Optional[str] = None) -> None:
        if kind not in INJECT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {INJECT_KINDS}")
        if count < 1:
            raise ValueError("count must be >= 1")
        with self.lock:
            self.injections.append(Injection(kind, count, method, path_contains))

    def pick(self, method: str, path: str, *, resumable_chunk: bool) -> Optional[str]:
        """The fault for this request, if any (consumes one injection)."""
        with self.lock:
            for inj in self.injections:
                if inj.kind == "expire_session" and not resumable_chunk:
                    continue
                if inj.kind == "quota" and method not in _WRITE_METHODS:
                    continue
                if inj.matches(method, path):
                    inj.count -= 1
                    if inj.count <= 0:
                        self.injections.remove(inj)
                    return inj.kind
            if self.fail_rate > 0 and self.kinds and self.rng.random() < self.fail_rate:
                return self.rng.choice(list(self.kinds))
        return None

    def pending(self) -> int:
        with self.lock:
            return sum(i.count for i in self.injections)


class Throttle:
    """Paces one connection's body bytes to ``rate`` bytes/s (read at each call).

    :meth:`restart` at each request, so idle time (or injected latency) is not
    banked as credit for a burst.
    """

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.start = time.monotonic()
        self.sent = 0

    def pace(self, nbytes: int, rate: Optional[float]) -> None:
        if not rate:
            return
        self.sent += nbytes
        due = self.start + self.sent / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
