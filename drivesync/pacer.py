"""Retry with backoff and rate limiting, written once and used by every remote.

Drive's guidance: retry 429 / 5xx / rate-limit 403s with truncated exponential
backoff plus jitter; never retry quota or auth errors. The classifier decides
what is retryable; the clock and sleep are injectable so tests never really wait.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TypeVar

from .errors import is_retryable

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Clock:
    """Wall clock; tests pass a fake with the same two methods."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class RateLimiter:
    """Token bucket shared by threads: at most ``rate`` acquisitions per second.

    ``burst`` tokens may be spent at once after an idle spell. A rate of 0 or
    None disables limiting.
    """

    def __init__(self, rate: Optional[float], burst: float = 1.0, clock: Optional[Clock] = None):
        self.rate = rate or 0.0
        self.burst = max(1.0, burst)
        self.clock = clock or Clock()
        self._tokens = self.burst
        self._last = self.clock.now()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a token is free; return the seconds waited."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock.now()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        # Sleep outside the lock: the debt is already booked, so others queue behind us.
        self.clock.sleep(wait)
        return wait


@dataclass
class Pacer:
    """Calls a function, retrying retryable errors with truncated exponential backoff.

    ``on_retry`` is told about every retry (for the Stats counters).
    """

    max_tries: int = 10
    base: float = 1.0
    cap: float = 32.0
    classify: Callable[[BaseException], bool] = is_retryable
    clock: Clock = field(default_factory=Clock)
    rng: random.Random = field(default_factory=random.Random)
    on_retry: Optional[Callable[[BaseException, int, float], None]] = None

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return min(self.cap, self.base * (2 ** (attempt - 1)) + self.rng.random() * self.base)

    def call(self, fn: Callable[[], T], *, what: str = "request") -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except BaseException as exc:  # noqa: BLE001 - classified below
                attempt += 1
                if not self.classify(exc) or attempt >= self.max_tries:
                    raise
                delay = self.backoff(attempt)
                log.debug("retry %d/%d of %s in %.2fs after %s", attempt, self.max_tries,
                          what, delay, exc)
                if self.on_retry is not None:
                    self.on_retry(exc, attempt, delay)
                self.clock.sleep(delay)
