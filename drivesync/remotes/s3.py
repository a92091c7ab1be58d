"""``s3://BUCKET/PREFIX`` on s3fs (``pip install 'drivesync[s3]'``): AWS S3 or any
S3-compatible server (MinIO, R2, Wasabi, moto).

Credentials come from botocore's standard chain (``AWS_ACCESS_KEY_ID`` /
``AWS_PROFILE`` / ``~/.aws`` / instance role); the endpoint from ``--endpoint``
(``Settings.api_endpoint``) or botocore's own ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_S3``. s3fs and botocore retry nothing here: the one pacer
does, on the errors this module classifies. This is the only module that
imports s3fs/botocore.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import botocore.exceptions as bex
import fsspec.callbacks
import s3fs

from ..errors import (
    AuthError,
    DriveSyncError,
    NotFound,
    QuotaExceeded,
    RateLimited,
    RemoteError,
    TransientError,
)
from .errmap import kind_for, map_failure
from .objstore import (
    MD5_KEY,
    MIB,
    MTIME_KEY,
    Obj,
    Store,
    _Stop,
    b64_to_hex,
    hex_to_b64,
    md5_from_etag,
    object_meta,
)

log = logging.getLogger(__name__)

SINGLE_PUT_MAX = 5 * 1024 * MIB      # S3's limit for one PUT / CopyObject
NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "404", "NoSuchUpload"}
AUTH = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
        "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "403", "401",
        "AccountProblem", "Forbidden"}
THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
             "TooManyRequests", "429", "503", "ServiceUnavailable", "RequestThrottled"}
QUOTA = {"QuotaExceeded", "XMinioStorageFull", "XMinioAdminBucketQuotaExceeded",
         "StorageFull", "InsufficientStorage"}
TRANSIENT = {"InternalError", "500", "502", "504", "RequestTimeout", "BadDigest",
             "XAmzContentSHA256Mismatch", "IncompleteBody"}


def _client_error(exc: BaseException) -> Optional[BaseException]:
    """The botocore error behind an s3fs translation (s3fs keeps it as the cause)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (bex.ClientError, bex.BotoCoreError)):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


CODES = ((NOT_FOUND, NotFound), (AUTH, AuthError), (QUOTA, QuotaExceeded),
         (THROTTLED, RateLimited), (TRANSIENT, TransientError))


def map_error(exc: BaseException, what: str) -> DriveSyncError:
    """One S3/botocore/s3fs failure as a drivesync error (classified for the pacer)."""
    return map_failure(exc, what, _said_by_s3, transient=(OSError,))


def _said_by_s3(exc: BaseException, what: str) -> Optional[DriveSyncError]:
    err = _client_error(exc)
    if isinstance(err, bex.ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        msg = err.response.get("Error", {}).get("Message", "") or code
        kind = kind_for(code, CODES) or (None if code else kind_for(status, CODES))
        if kind is None and status.startswith("5"):
            kind = TransientError
        return (kind or RemoteError)(f"{what}: {msg} ({code or status})")
    if isinstance(err, (bex.NoCredentialsError, bex.PartialCredentialsError)):
        return AuthError(f"{what}: no S3 credentials found (set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or ~/.aws/credentials)")
    if isinstance(err, (bex.EndpointConnectionError, bex.ConnectionError,
                        bex.HTTPClientError, bex.ReadTimeoutError, bex.ConnectTimeoutError)):
        return TransientError(f"{what}: {err}")
    if isinstance(exc, PermissionError):
        return AuthError(f"{what}: access denied")
    return None


def _time(value) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value or 0.0)


class _Bytes(fsspec.callbacks.Callback):
    """Turns s3fs's progress callback into deltas for our subscriber."""

    def __init__(self, on_bytes: Callable[[int], None]):
        super().__init__()
        self._on_bytes = on_bytes

    def call(self, *args, **kwargs) -> None:
        pass

    def relative_update(self, inc: int = 1) -> None:
        self._on_bytes(inc)


class S3Store(Store):
    scheme = "s3"

    def __init__(self, bucket: str, *, endpoint: Optional[str] = None,
                 part_size: int = 16 * MIB, parallel_parts: int = 8):
        self.bucket = bucket
        self.part_size = max(5 * MIB, part_size)
        self.parallel_parts = parallel_parts
        kwargs: dict = {"config_kwargs": {"retries": {"mode": "standard",
                                                      "total_max_attempts": 1}}}
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        # one client per endpoint and process (fsspec caches instances; credentials are
        # read once): building one loads botocore's S3 model, about half a second
        self.fs = s3fs.S3FileSystem(use_listings_cache=False, **kwargs)
        self.fs.retries = 1  # the pacer retries, nothing below it

    def _s3(self, method: str, what: str, **kwargs):
        try:
            return self.fs.call_s3(method, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped
            raise map_error(exc, what) from exc

    def _obj(self, key: str, size: int, etag: str, modified, meta: Optional[dict]) -> Obj:
        meta = meta or {}
        md5 = md5_from_etag(etag) or b64_to_hex(meta.get(MD5_KEY))
        try:
            mtime = float(meta[MTIME_KEY]) if MTIME_KEY in meta else _time(modified)
        except ValueError:
            mtime = _time(modified)
        return Obj(key=key, size=int(size), md5=md5, modified=mtime, version=etag.strip('"'))

    def _listed(self, c: dict) -> Obj:
        etag = c.get("ETag", "")
        if md5_from_etag(etag) is None and not c["Key"].endswith("/"):
            return self.head(c["Key"])  # multipart: its md5 lives in the metadata
        return self._obj(c["Key"], c.get("Size", 0), etag, c.get("LastModified"), None)

    def pages(self, prefix: str, delimiter: str, limit: Optional[int]
              ) -> Iterator[tuple[list[Obj], list[str]]]:
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if limit:
            kwargs["MaxKeys"] = limit
        while True:
            page = self._s3("list_objects_v2", self.url(prefix), **kwargs)
            yield ([self._listed(c) for c in page.get("Contents", [])],
                   [p["Prefix"] for p in page.get("CommonPrefixes", [])])
            if limit or not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def head(self, key: str) -> Obj:
        self.no_root(key)
        r = self._s3("head_object", f"s3://{self.bucket}/{key}", Bucket=self.bucket, Key=key)
        return self._obj(key, r["ContentLength"], r.get("ETag", ""), r.get("LastModified"),
                         r.get("Metadata"))

    def check_bucket(self) -> None:
        self._s3("head_bucket", f"s3://{self.bucket}", Bucket=self.bucket)

    def put_file(self, source: Path, key: str, *, md5: str, size: int,
                 on_bytes: Callable[[int], None]) -> Obj:
        what = f"s3://{self.bucket}/{key}"
        # the upload time recorded by the client: HEAD and copies report it exactly (S3
        # lists give only LastModified, which may differ from it by the clock skew)
        meta = object_meta(md5, time.time())
        if size < 2 * self.part_size:
            body = source.read_bytes()
            # Content-MD5: the server refuses bytes that do not match (BadDigest)
            r = self._s3("put_object", what, Bucket=self.bucket, Key=key, Body=body,
                         ContentMD5=hex_to_b64(md5), Metadata=meta)
            on_bytes(size)
            return self._obj(key, size, r.get("ETag", ""), None, meta)
        try:  # multipart, parts in parallel; s3fs aborts the upload if a part fails
            self.fs.put_file(str(source), f"{self.bucket}/{key}", chunksize=self.part_size,
                             max_concurrency=self.parallel_parts, Metadata=meta,
                             callback=_Bytes(on_bytes))
        except Exception as exc:  # noqa: BLE001 - mapped, or a subscriber's stop
            if isinstance(exc, _Stop):
                raise
            raise map_error(exc, what) from exc
        return self.head(key)

    def put_marker(self, key: str) -> None:
        self._s3("put_object", f"s3://{self.bucket}/{key}", Bucket=self.bucket, Key=key,
                 Body=b"")

    def read_range(self, obj: Obj, start: int, end: int) -> bytes:
        try:
            return self.fs.cat_file(f"{self.bucket}/{obj.key}", start=start, end=end)
        except Exception as exc:  # noqa: BLE001 - mapped
            raise map_error(exc, self.url(obj.key)) from exc

    def copy(self, src: Obj, dst_key: str, *, mtime: float) -> Obj:
        what = f"s3://{self.bucket}/{dst_key}"
        meta = object_meta(src.md5, mtime)
        source = {"Bucket": self.bucket, "Key": src.key}
        if src.size <= SINGLE_PUT_MAX:
            self._s3("copy_object", what, Bucket=self.bucket, Key=dst_key, CopySource=source,
                     CopySourceIfMatch=f'"{src.version}"', MetadataDirective="REPLACE",
                     Metadata=meta)
        else:  # above 5 GiB: a multipart copy, parts copied by the server
            try:
                self.fs.copy(f"{self.bucket}/{src.key}", f"{self.bucket}/{dst_key}",
                             Metadata=meta)
            except Exception as exc:  # noqa: BLE001 - mapped
                raise map_error(exc, what) from exc
        return self.head(dst_key)

    def delete(self, keys: list[str]) -> None:
        if not keys:
            return
        r = self._s3("delete_objects", f"s3://{self.bucket}", Bucket=self.bucket,
                     Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        errors = [e for e in r.get("Errors", []) if e.get("Code") != "NoSuchKey"]
        if errors:
            e = errors[0]
            raise RemoteError(f"s3://{self.bucket}/{e.get('Key')}: delete failed: "
                              f"{e.get('Message') or e.get('Code')} ({len(errors)} failed)")

    def abort_stale_uploads(self, prefix: str, older_than: float) -> int:
        r = self._s3("list_multipart_uploads", f"s3://{self.bucket}/{prefix}",
                     Bucket=self.bucket, Prefix=prefix)
        now, n = time.time(), 0
        for u in r.get("Uploads", []):
            if now - _time(u.get("Initiated")) >= older_than:
                self._s3("abort_multipart_upload", f"s3://{self.bucket}/{u['Key']}",
                         Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"])
                n += 1
        return n
