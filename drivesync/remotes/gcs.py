"""``gs://BUCKET/PREFIX`` on gcsfs (``pip install 'drivesync[gcs]'``).

Credentials come from Google's standard chain (``GOOGLE_APPLICATION_CREDENTIALS``,
``gcloud auth application-default login``, the metadata server); the endpoint
from ``--endpoint`` or gcsfs's own ``STORAGE_EMULATOR_HOST`` (an emulator).
Every object has an md5 (``md5Hash``; a composed object has none and drivesync
stores ``md5chksum`` metadata like rclone). gcsfs's built-in retry loop is
bypassed: the one pacer retries, on the errors classified here. This is the
only module that imports gcsfs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import aiohttp
import fsspec.asyn
import fsspec.callbacks
import gcsfs
import gcsfs.core
from gcsfs.retry import HttpError

from ..errors import (
    AuthError,
    DriveSyncError,
    NotFound,
    QuotaExceeded,
    RateLimited,
    RemoteError,
    TransientError,
)
from .errmap import map_failure
from .objstore import MD5_KEY, MIB, MTIME_KEY, Obj, Store, _Stop, b64_to_hex, object_meta

log = logging.getLogger(__name__)
SIMPLE_MAX = 5 * MIB          # gcsfs: one request below this, a resumable upload above
CONTENT_TYPE = "application/octet-stream"


class _OneTryGCS(gcsfs.core.GCSFileSystem):
    """gcsfs's plain JSON-API filesystem (not the experimental zonal/HNS one, which
    probes each bucket over gRPC first), without its own retry loop (6 tries): the
    pacer decides what to retry."""

    _request = gcsfs.core.GCSFileSystem._request.__wrapped__


def map_error(exc: BaseException, what: str) -> DriveSyncError:
    """One GCS/gcsfs failure as a drivesync error (classified for the pacer)."""
    return map_failure(exc, what, _said_by_gcs, transient=(aiohttp.ClientError,))


def _said_by_gcs(exc: BaseException, what: str) -> Optional[DriveSyncError]:
    if isinstance(exc, HttpError):
        code = int(getattr(exc, "code", 0) or 0)
        msg = getattr(exc, "message", "") or str(exc)
        reason = json.dumps(getattr(exc, "errors", "")) if getattr(exc, "errors", None) else ""
        if code == 401:
            return AuthError(f"{what}: {msg}")
        if code == 403 and ("quota" in msg.lower() or "quota" in reason.lower()):
            return QuotaExceeded(f"{what}: {msg}")
        if code == 403:
            return AuthError(f"{what}: {msg}")
        if code == 429 or "rateLimitExceeded" in reason:
            return RateLimited(f"{what}: {msg}")
        if code >= 500 or code == 408:
            return TransientError(f"{what}: {msg} ({code})")
        return RemoteError(f"{what}: {msg} ({code})")
    text = str(exc)
    if text.startswith("Forbidden"):
        return AuthError(f"{what}: access denied ({text.splitlines()[-1]})")
    if type(exc).__module__.startswith("google.auth"):
        return AuthError(f"{what}: no usable Google credentials ({exc}); set "
                         "GOOGLE_APPLICATION_CREDENTIALS or run gcloud auth "
                         "application-default login")
    if type(exc).__name__ == "ProxyError":
        return TransientError(f"{what}: {exc}")
    return None


def _time(value: Optional[str]) -> float:
    if not value:
        return 0.0
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class GCSStore(Store):
    scheme = "gs"

    def __init__(self, bucket: str, *, endpoint: Optional[str] = None,
                 chunk_size: int = 16 * MIB):
        self.bucket = bucket
        self.chunk_size = max(256 * 1024, chunk_size // (256 * 1024) * (256 * 1024))
        kwargs: dict = {"skip_instance_cache": True, "use_listings_cache": False}
        endpoint = endpoint or os.environ.get("STORAGE_EMULATOR_HOST")
        if endpoint:
            kwargs["endpoint_url"] = endpoint
            kwargs["token"] = "anon"  # an emulator checks no credentials
        self.fs = _OneTryGCS(**kwargs)

    def _run(self, what: str, coro_fn, *args, **kwargs):
        try:
            return fsspec.asyn.sync(self.fs.loop, coro_fn, *args, **kwargs)
        except _Stop:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped
            raise map_error(exc, what) from exc

    def _json(self, what: str, method: str, path: str, *args, **kwargs) -> dict:
        return self._run(what, self.fs._call, method, path, *args, json_out=True, **kwargs)

    def _obj(self, o: dict) -> Obj:
        meta = o.get("metadata") or {}
        md5 = b64_to_hex(o.get("md5Hash")) or b64_to_hex(meta.get(MD5_KEY))
        try:
            mtime = float(meta[MTIME_KEY]) if MTIME_KEY in meta else _time(o.get("updated"))
        except ValueError:
            mtime = _time(o.get("updated"))
        return Obj(key=o["name"], size=int(o.get("size", 0)), md5=md5, modified=mtime,
                   version=str(o.get("generation", "")))

    def pages(self, prefix: str, delimiter: str, limit: Optional[int]
              ) -> Iterator[tuple[list[Obj], list[str]]]:
        params = {"prefix": prefix}
        if delimiter:
            params["delimiter"] = delimiter
        if limit:
            params["maxResults"] = limit
        while True:
            page = self._json(self.url(prefix), "GET", "b/{}/o", self.bucket, **params)
            yield [self._obj(o) for o in page.get("items", [])], list(page.get("prefixes", []))
            token = page.get("nextPageToken")
            if limit or not token:
                return
            params["pageToken"] = token

    def head(self, key: str) -> Obj:
        self.no_root(key)
        return self._obj(self._json(f"gs://{self.bucket}/{key}", "GET", "b/{}/o/{}",
                                    self.bucket, key))

    def check_bucket(self) -> None:
        self._json(f"gs://{self.bucket}", "GET", "b/{}", self.bucket)

    def put_file(self, source: Path, key: str, *, md5: str, size: int,
                 on_bytes: Callable[[int], None]) -> Obj:
        meta = object_meta(md5, time.time())
        # below 5 MiB one request; above, a resumable upload whose object appears
        # only with its last chunk (gcsfs deletes the session if a chunk fails)
        done = [0]

        class Bytes(fsspec.callbacks.Callback):
            def call(self, *args, **kwargs) -> None:
                if self.value > done[0]:
                    on_bytes(self.value - done[0])
                    done[0] = self.value

        what = f"gs://{self.bucket}/{key}"
        if size < SIMPLE_MAX:
            data = source.read_bytes()
            if data.endswith(b"\r"):
                # gcsfs frames a one-request upload with bare LF: a CR at the very end
                # reads as part of the CRLF before the boundary and is lost. A one-chunk
                # resumable upload sends the bytes unframed.
                self._run(what, self._one_chunk, key, data, meta)
            else:
                self._run(what, gcsfs.core.simple_upload, self.fs, self.bucket, key, data,
                          metadatain=meta, content_type=CONTENT_TYPE)
            on_bytes(size)
        else:
            self._run(what, self.fs._put_file, str(source), f"{self.bucket}/{key}",
                      metadata=meta, content_type=CONTENT_TYPE, chunksize=self.chunk_size,
                      callback=Bytes())
        return self.head(key)

    async def _one_chunk(self, key: str, data: bytes, meta: dict) -> None:
        location = await gcsfs.core.initiate_upload(self.fs, self.bucket, key, CONTENT_TYPE,
                                                    metadata=meta)
        await gcsfs.core.upload_chunk(self.fs, location, data, 0, len(data), CONTENT_TYPE)

    def put_marker(self, key: str) -> None:
        self._run(f"gs://{self.bucket}/{key}", gcsfs.core.simple_upload, self.fs, self.bucket,
                  key, b"", content_type="application/x-directory")

    def read_range(self, obj: Obj, start: int, end: int) -> bytes:
        # by name, not generation: a rewrite meanwhile fails the md5 check
        return self._run(self.url(obj.key), self.fs._cat_file, f"{self.bucket}/{obj.key}",
                         start=start, end=end)

    def copy(self, src: Obj, dst_key: str, *, mtime: float) -> Obj:
        what = f"gs://{self.bucket}/{dst_key}"
        meta = object_meta(src.md5, mtime)
        body = {"metadata": meta}
        params = {"ifSourceGenerationMatch": src.version} if src.version else {}
        out = self._json(what, "POST", "b/{}/o/{}/rewriteTo/b/{}/o/{}", self.bucket, src.key,
                         self.bucket, dst_key, json=body, **params)
        while not out.get("done", True):  # large objects are rewritten in several calls
            out = self._json(what, "POST", "b/{}/o/{}/rewriteTo/b/{}/o/{}", self.bucket,
                             src.key, self.bucket, dst_key, json=body,
                             rewriteToken=out["rewriteToken"], **params)
        resource = out.get("resource")
        return self._obj(resource) if resource else self.head(dst_key)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self._run(f"gs://{self.bucket}/{key}", self.fs._call, "DELETE",
                          "b/{}/o/{}", self.bucket, key)
            except NotFound:
                pass

    def close(self) -> None:
        pass
