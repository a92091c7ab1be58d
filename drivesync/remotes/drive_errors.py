"""Turn what google-api-python-client, httplib2 and sockets raise into drivesync errors.

This is the one place that reads Drive's error ``reason`` field. Retryable
outcomes become :class:`RateLimited` / :class:`TransientError` (the pacer retries
them); quota and auth failures become errors that are never retried.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import ssl
import sys
from typing import Optional

import google.auth.exceptions
import httplib2
from googleapiclient.errors import HttpError

from ..errors import (
    AlreadyExists,
    AuthError,
    ConnectionFailed,
    DriveSyncError,
    NotFound,
    QuotaExceeded,
    RateLimited,
    RemoteError,
    TransientError,
)

RATE_REASONS = {"userRateLimitExceeded", "rateLimitExceeded", "sharingRateLimitExceeded"}
QUOTA_REASONS = {"storageQuotaExceeded", "quotaExceeded", "dailyLimitExceeded",
                 "uploadLimitExceeded", "dailyLimitExceededUnreg", "teamDriveFileLimitExceeded"}
AUTH_REASONS = {"authError", "insufficientPermissions", "invalidCredentials",
                "accessNotConfigured"}
UNREACHABLE = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH,
               errno.EADDRNOTAVAIL, errno.EHOSTDOWN}

LOGIN_HINT = ("run `drivesync auth login`, or set DRIVESYNC_TOKEN to a valid access token "
              "(see `drivesync auth status`)")


def http_error_details(exc: HttpError) -> tuple[int, str, str]:
    """(status, reason, message) from Google's JSON error envelope, tolerating junk."""
    status = int(getattr(exc.resp, "status", 0) or 0)
    reason, message = "", ""
    try:
        body = json.loads(exc.content.decode("utf-8", "replace") if isinstance(
            exc.content, bytes) else exc.content or "")
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            errors = err.get("errors") or []
            if errors and isinstance(errors[0], dict):
                reason = str(errors[0].get("reason") or "")
        elif isinstance(err, str):  # OAuth-style {"error": "invalid_token"}
            reason = err
    except (ValueError, AttributeError):
        pass
    return status, reason, message or (getattr(exc.resp, "reason", "") or "")


def classify_http(status: int, reason: str, message: str, *, what: str) -> DriveSyncError:
    """The error for one HTTP answer (also used for the inner answers of a batch)."""
    detail = f"{status} {reason}".strip() + (f": {message}" if message else "")
    if status == 401:
        return AuthError(f"Drive rejected the credentials ({detail}); {LOGIN_HINT}")
    if status == 429 or (status == 403 and reason in RATE_REASONS):
        return RateLimited(f"Drive rate limit on {what} ({detail})")
    if status == 403 and reason in QUOTA_REASONS:
        return QuotaExceeded(f"Drive refused {what}: {detail}")
    if status == 403 and reason in AUTH_REASONS:
        return AuthError(f"Drive refused {what} ({detail}); {LOGIN_HINT}")
    if status == 404:
        return NotFound(f"{what}: not found on Drive ({detail})")
    if status == 409:
        return AlreadyExists(f"{what}: already exists ({detail})")
    if status >= 500 or status == 408:
        return TransientError(f"Drive failed {what} ({detail})")
    return RemoteError(f"Drive refused {what} ({detail})")


def classify(exc: BaseException, *, endpoint: str, what: str = "request"
             ) -> Optional[DriveSyncError]:
    """Our error for ``exc``, or None when it is not a transport/API error (a bug)."""
    if isinstance(exc, DriveSyncError):
        return exc
    if isinstance(exc, HttpError):
        return classify_http(*http_error_details(exc), what=what)
    if isinstance(exc, google.auth.exceptions.RefreshError):
        # A 401 makes google-auth try a refresh; a raw access token cannot be refreshed.
        return AuthError(f"Drive rejected the credentials (401) and they could not be "
                         f"refreshed; {LOGIN_HINT}")
    if isinstance(exc, google.auth.exceptions.TransportError):
        return ConnectionFailed(f"cannot reach the Google token server: {exc}")
    if isinstance(exc, httplib2.ServerNotFoundError):
        return ConnectionFailed(f"cannot reach {endpoint}: {exc}")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return ConnectionFailed(f"timed out talking to {endpoint} during {what}")
    if isinstance(exc, ConnectionRefusedError) or (
            isinstance(exc, OSError) and exc.errno in UNREACHABLE):
        return ConnectionFailed(f"cannot reach {endpoint}: {exc.strerror or exc}")
    if isinstance(exc, (ConnectionError, http.client.HTTPException, ssl.SSLError,
                        httplib2.HttpLib2Error, socket.gaierror)):
        return ConnectionFailed(f"connection to {endpoint} failed during {what}: "
                                f"{type(exc).__name__} {exc}".rstrip())
    if _is_stream_error(exc):
        return ConnectionFailed(f"connection to {endpoint} failed during {what}: "
                                f"{type(exc).__name__} {exc}".rstrip())
    if isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.ECONNRESET,
                                                  errno.ECONNABORTED, errno.ETIMEDOUT):
        return ConnectionFailed(f"connection to {endpoint} failed during {what}: {exc}")
    return None


def _is_stream_error(exc: BaseException) -> bool:
    """A connection error of requests/urllib3, which the streamed downloads (drive_media)
    read through. Looked up, not imported: they load only once a download starts, and
    until then no such error can exist (importing requests costs every command ~0.2 s)."""
    requests_exc = sys.modules.get("requests.exceptions")
    urllib3_exc = sys.modules.get("urllib3.exceptions")
    kinds = tuple(k for k in (getattr(requests_exc, "RequestException", None),
                              getattr(urllib3_exc, "HTTPError", None)) if k is not None)
    return bool(kinds) and isinstance(exc, kinds)
