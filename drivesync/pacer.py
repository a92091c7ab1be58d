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

from .config import Settings
from .errors import ConnectionFailed, NetworkDown, is_retryable

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


class Breaker:
    """One per command, shared by every worker: ends a run whose network is gone.

    It trips when a request fails with a connection error (``ConnectionFailed``:
    no answer at all) and nothing has succeeded for ``window`` seconds. From then
    on every call raises :class:`NetworkDown` at once, so all workers stop
    instead of each retrying its own files for hours. Any answer from the server
    (even an error status) counts as a success. A tripped breaker lets one probe
    through every ``window`` seconds, so a long-lived user (the launch mirror)
    resumes by itself when the network is back.
    """

    def __init__(self, window: float = Settings.outage_window, *, clock: Optional[Clock] = None,
                 is_outage: Callable[[BaseException], bool] =
                 lambda exc: isinstance(exc, ConnectionFailed)):
        self.window = window
        self.clock = clock or Clock()
        self.is_outage = is_outage
        self._lock = threading.Lock()
        self._last_ok = self.clock.now()
        self._tripped_at: Optional[float] = None
        self._last_error: Optional[BaseException] = None

    @property
    def tripped(self) -> bool:
        with self._lock:
            return self._tripped_at is not None

    def success(self) -> None:
        with self._lock:
            self._last_ok = self.clock.now()
            self._tripped_at = None

    def failure(self, exc: BaseException) -> bool:
        """Record a failed attempt; True when the breaker is (now) tripped."""
        if not self.is_outage(exc):
            self.success()  # the server answered: the network works
            return False
        with self._lock:
            now = self.clock.now()
            self._last_error = exc
            if self.window > 0 and now - self._last_ok >= self.window:
                if self._tripped_at is None:
                    log.info("nothing succeeded for %.0fs: the breaker trips",
                             now - self._last_ok)
                self._tripped_at = now
            return self._tripped_at is not None

    def check(self) -> None:
        """Raise NetworkDown while tripped (one probe per ``window`` gets through)."""
        with self._lock:
            if self._tripped_at is None:
                return
            now = self.clock.now()
            if now - self._tripped_at >= self.window:
                self._tripped_at = now  # this caller is the probe; the others still stop
                return
        raise self.error()

    def error(self) -> NetworkDown:
        with self._lock:
            quiet = self.clock.now() - self._last_ok
            last = self._last_error
        return NetworkDown(f"the network is down: nothing succeeded for {quiet:.0f}s"
                           + (f" (last error: {last})" if last else ""))


@dataclass
class Pacer:
    """Calls a function, retrying retryable errors with truncated exponential backoff.

    ``on_retry`` is told about every retry (for the Stats counters and the
    progress line). A shared ``breaker`` ends every worker's retries at once when
    the network is gone (see :class:`Breaker`).
    """

    # the settings' defaults (README "Configuration"); remotes pass the resolved ones
    max_tries: int = Settings.max_tries
    base: float = Settings.backoff_base
    cap: float = Settings.backoff_cap
    classify: Callable[[BaseException], bool] = is_retryable
    clock: Clock = field(default_factory=Clock)
    rng: random.Random = field(default_factory=random.Random)
    on_retry: Optional[Callable[[BaseException, int, float], None]] = None
    breaker: Optional[Breaker] = None
    #: longest single sleep, so a worker waiting out a backoff notices a trip soon
    slice: float = 0.5

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return min(self.cap, self.base * (2 ** (attempt - 1)) + self.rng.random() * self.base)

    def call(self, fn: Callable[[], T], *, what: str = "request") -> T:
        attempt = 0
        breaker = self.breaker
        while True:
            if breaker is not None:
                breaker.check()
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - classified below
                attempt += 1
                if breaker is not None and isinstance(exc, Exception) and breaker.failure(exc):
                    raise breaker.error() from exc
                if not self.classify(exc) or attempt >= self.max_tries:
                    raise
                delay = self.backoff(attempt)
                log.debug("retry %d/%d of %s in %.2fs after %s", attempt, self.max_tries,
                          what, delay, exc)
                if self.on_retry is not None:
                    self.on_retry(exc, attempt, delay)
                self._sleep(delay)
                continue
            if breaker is not None:
                breaker.success()
            return result

    def _sleep(self, delay: float) -> None:
        """Sleep ``delay`` in slices; stop early (NetworkDown) once the breaker trips."""
        if self.breaker is None:
            self.clock.sleep(delay)
            return
        end = self.clock.now() + delay
        while True:
            left = end - self.clock.now()
            if left <= 0:
                return
            self.clock.sleep(min(left, self.slice))
            if self.breaker.tripped:
                raise self.breaker.error()
