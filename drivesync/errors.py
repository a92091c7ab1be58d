"""One error tree for the whole package.

The CLI catches :class:`DriveSyncError` and turns ``exit_code`` into the process
exit status, so every failure a user can cause ends in one line, not a traceback.
"""

from __future__ import annotations

from typing import Any, Optional

# Documented exit codes (README "Exit codes").
EXIT_OK = 0
EXIT_ERROR = 1          # generic failure, bad input
EXIT_USAGE = 2          # bad command line (argparse uses 2 too)
EXIT_NOT_FOUND = 3      # remote path / checkpoint does not exist
EXIT_PARTIAL = 4        # batch finished but some items failed or were skipped
EXIT_AUTH = 5           # missing/invalid credentials
EXIT_QUOTA = 6          # storage quota full or daily upload limit reached
EXIT_NETWORK = 7        # endpoint unreachable, retries exhausted
EXIT_LOCKED = 8         # another run holds the lock
EXIT_INTERRUPTED = 130  # Ctrl-C


class DriveSyncError(Exception):
    """Root of every error drivesync raises on purpose."""

    exit_code = EXIT_ERROR


class UsageError(DriveSyncError):
    exit_code = EXIT_USAGE


class ConfigError(DriveSyncError):
    """Bad settings or a bad config file."""

    exit_code = EXIT_USAGE


class DatasetError(DriveSyncError):
    """Bad dataset input that stops the whole command."""


class LockedError(DriveSyncError):
    exit_code = EXIT_LOCKED


class PartialFailure(DriveSyncError):
    """A batch command finished with some bad items (already reported)."""

    exit_code = EXIT_PARTIAL


class RemoteError(DriveSyncError):
    """Anything a Remote raises."""


class NotAFolder(RemoteError):
    """A folder was to be made or written into where a file is: the user named the wrong
    place, the same usage error (exit 2) in every verb."""

    exit_code = EXIT_USAGE


class NotFound(RemoteError):
    """The only way to say "absent"; never an empty result or False."""

    exit_code = EXIT_NOT_FOUND


class AlreadyExists(RemoteError):
    """A create collided with an existing item (e.g. a reused Drive id -> 409)."""


class AuthError(RemoteError):
    exit_code = EXIT_AUTH


class QuotaExceeded(RemoteError):
    """Storage full (storageQuotaExceeded) or daily upload cap (dailyLimitExceeded)."""

    exit_code = EXIT_QUOTA


class RateLimited(RemoteError):
    """Drive said slow down (403 rate limit reasons, 429). Retryable."""

    exit_code = EXIT_NETWORK


class TransientError(RemoteError):
    """5xx, dropped connection, timeout. Retryable."""

    exit_code = EXIT_NETWORK


class ConnectionFailed(TransientError):
    """The connection itself failed (refused, reset, timed out, no route, no DNS):
    the server gave no answer at all. What the circuit breaker counts."""


class NetworkDown(TransientError):
    """The command's circuit breaker tripped: nothing succeeded for a while and
    connections keep failing. Every worker stops; a re-run continues."""

    exit_code = EXIT_NETWORK


class Unreadable(RemoteError):
    """A folder or file could not be listed or read (permissions, I/O error, a
    listing page that kept failing). Never taken for "empty" or "absent": what
    could not be read is kept out of every delete decision."""

    exit_code = EXIT_PARTIAL


class ChecksumMismatch(RemoteError):
    """Bytes arrived but their md5 differs from what the remote says. Retryable."""


def is_retryable(exc: BaseException) -> bool:
    """The classifier the pacer uses by default."""
    return isinstance(exc, (RateLimited, TransientError, ChecksumMismatch))


class DiskFull(DriveSyncError):
    """The local disk cannot hold what a download needs (checked before, or ENOSPC)."""


class Stopped(DriveSyncError):
    """A run that had to stop part-way; ``outcome`` says what it did before.

    Made with :meth:`of`, it is also an instance of the cause's class, so
    ``except QuotaExceeded`` still catches a push stopped by the quota and the
    exit code is the cause's; ``except Stopped as s: s.outcome`` reads the counts.
    """

    outcome: Any = None
    cause: Optional[DriveSyncError] = None

    @classmethod
    def of(cls, cause: DriveSyncError, outcome: Any, message: Optional[str] = None) -> Stopped:
        if isinstance(cause, Stopped):
            cause = cause.cause or cause
        kind = _STOPPED_KINDS.get(type(cause))
        if kind is None:
            kind = type(f"Stopped{type(cause).__name__}", (cls, type(cause)),
                        {"__module__": __name__, "exit_code": type(cause).exit_code})
            _STOPPED_KINDS[type(cause)] = kind
        err = kind(message or str(cause))
        err.outcome, err.cause = outcome, cause
        return err


_STOPPED_KINDS: dict[type, type] = {}
