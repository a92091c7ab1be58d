"""How S3 and GCS failures become drivesync errors (remotes/errmap.py + each store's
table): the class decides whether the pacer retries and which exit code the user
gets. Built from the client libraries' own exception types; nothing is mocked."""

from __future__ import annotations

import pytest

from drivesync.errors import (
    AuthError,
    NotFound,
    QuotaExceeded,
    RateLimited,
    RemoteError,
    TransientError,
)

bex = pytest.importorskip("botocore.exceptions")
s3 = pytest.importorskip("drivesync.remotes.s3")
gcs = pytest.importorskip("drivesync.remotes.gcs")


def client_error(code: str, status: int, message: str = "m") -> Exception:
    return bex.ClientError({"Error": {"Code": code, "Message": message},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def translated(cause: Exception) -> FileNotFoundError:
    """What s3fs raises: its own translation, the ClientError kept as the cause."""
    try:
        raise FileNotFoundError("b/k") from cause
    except FileNotFoundError as exc:
        return exc


@pytest.mark.parametrize("exc, kind, text", [
    (client_error("SlowDown", 503), RateLimited, "put: m (SlowDown)"),
    (client_error("AccessDenied", 403), AuthError, "put: m (AccessDenied)"),
    (client_error("XMinioStorageFull", 507), QuotaExceeded, "put: m (XMinioStorageFull)"),
    (client_error("", 404, ""), NotFound, "put:  (404)"),
    (client_error("Weird", 500), TransientError, "put: m (Weird)"),
    (client_error("Weird", 400), RemoteError, "put: m (Weird)"),
    (translated(client_error("NoSuchKey", 404)), NotFound, "put: m (NoSuchKey)"),
    (bex.NoCredentialsError(), AuthError, "put: no S3 credentials found"),
    (bex.EndpointConnectionError(endpoint_url="http://x"), TransientError, "put: Could not"),
    (FileNotFoundError("b/k"), NotFound, "put: not found"),
    (PermissionError("b/k"), AuthError, "put: access denied"),
    (OSError("disk"), TransientError, "put: disk"),
    (ValueError("odd"), RemoteError, "put: ValueError: odd"),
])
def test_s3_failures(exc, kind, text):
    err = s3.map_error(exc, "put")
    assert type(err) is kind and str(err).startswith(text)


@pytest.mark.parametrize("exc, kind, text", [
    (gcs.HttpError({"code": 403, "message": "quota hit"}), QuotaExceeded, "put: quota hit"),
    (gcs.HttpError({"code": 403, "message": "nope"}), AuthError, "put: nope"),
    (gcs.HttpError({"code": 401, "message": "who"}), AuthError, "put: who"),
    (gcs.HttpError({"code": 429, "message": "slow"}), RateLimited, "put: slow"),
    (gcs.HttpError({"code": 503, "message": "down"}), TransientError, "put: down, 503 (503)"),
    (gcs.HttpError({"code": 400, "message": "bad"}), RemoteError, "put: bad, 400 (400)"),
    (OSError("Forbidden: b/k\nno access"), AuthError, "put: access denied (no access)"),
    (FileNotFoundError("b/k"), NotFound, "put: not found"),
    (gcs.aiohttp.ClientConnectionError("reset"), TransientError, "put: reset"),
    (TimeoutError("slow"), TransientError, "put: slow"),
    (ValueError("odd"), RemoteError, "put: ValueError: odd"),
])
def test_gcs_failures(exc, kind, text):
    err = gcs.map_error(exc, "put")
    assert type(err) is kind and str(err).startswith(text)


@pytest.mark.parametrize("store", [s3, gcs])
def test_our_own_errors_pass_unchanged(store):
    mine = NotFound("x")
    assert store.map_error(mine, "put") is mine
