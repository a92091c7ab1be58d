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

import asyncio
import datetime as dt
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..errors import (
    AuthError,
    ConfigError,
    DriveSyncError,
    NotFound,
    QuotaExceeded,
    RateLimited,
    RemoteError,
    TransientError,
)
from ..hashing import CHUNK
from .objstore import MD5_KEY, MIB, MTIME_KEY, Obj, Store, _Stop, b64_to_hex, hex_to_b64

try:
    import aiohttp
    import fsspec.asyn
    import fsspec.callbacks
    import gcsfs
    import gcsfs.core
    from gcsfs.retry import HttpError
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ConfigError("gs:// needs the gcs extra: pip install 'drivesync[gcs]'") from exc

log = logging.getLogger(__name__)
SIMPLE_MAX = 5 * MIB          # gcsfs: one request below this, a resumable upload above
CONTENT_TYPE = "application/octet-stream"


class _OneTryGCS(gcsfs.core.GCSFileSystem):
    """gcsfs's plain JSON-API filesystem (not the experimental zonal/HNS one, which
    probes each bucket over gRPC first), without its own retry loop (6 tries): the
    pacer decides what to retry."""

    _request = gcsfs.core.GCSFileSystem._request.__wrapped__


def map_error(exc: BaseException, what: str) -> DriveSyncError:
    if isinstance(exc, DriveSyncError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{what}: not found")
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
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError,
                        TimeoutError)) or type(exc).__name__ == "ProxyError":
        return TransientError(f"{what}: {exc}")
    return RemoteError(f"{what}: {type(exc).__name__}: {exc}")


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

    def _pages(self, prefix: str, delimiter: str, limit: Optional[int]) -> Iterator[dict]:
        params = {"prefix": prefix}
        if delimiter:
            params["delimiter"] = delimiter
        if limit:
            params["maxResults"] = limit
        while True:
            page = self._json(f"gs://{self.bucket}/{prefix}", "GET", "b/{}/o", self.bucket,
                              **params)
            yield page
            token = page.get("nextPageToken")
            if limit or not token:
                return
            params["pageToken"] = token

    def list_level(self, prefix: str, *, limit: Optional[int] = None):
        objs, subs = [], []
        for page in self._pages(prefix, "/", limit):
            objs += [self._obj(o) for o in page.get("items", [])]
            subs += list(page.get("prefixes", []))
        return objs, subs

    def list_all(self, prefix: str) -> list[Obj]:
        out = []
        for page in self._pages(prefix, "", None):
            out += [self._obj(o) for o in page.get("items", [])]
        return out

    def head(self, key: str) -> Obj:
        if not key:
            raise NotFound(f"gs://{self.bucket}: the bucket root is not an object")
        return self._obj(self._json(f"gs://{self.bucket}/{key}", "GET", "b/{}/o/{}",
                                    self.bucket, key))

    def check_bucket(self) -> None:
        self._json(f"gs://{self.bucket}", "GET", "b/{}", self.bucket)

    def put_file(self, source: Path, key: str, *, md5: str, size: int,
                 on_bytes: Callable[[int], None]) -> Obj:
        meta = {MD5_KEY: hex_to_b64(md5), MTIME_KEY: f"{time.time():.6f}"}
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

    def read(self, obj: Obj, offset: int) -> Iterator[bytes]:
        what = f"gs://{self.bucket}/{obj.key}"
        pos, step = offset, 8 * CHUNK
        path = f"{self.bucket}/{obj.key}"  # a rewrite meanwhile fails the md5 check
        while pos < obj.size:
            end = min(obj.size, pos + step)
            data = self._run(what, self.fs._cat_file, path, start=pos, end=end)
            if not data:
                raise TransientError(f"{what}: no bytes at offset {pos}")
            yield data
            pos += len(data)

    def copy(self, src: Obj, dst_key: str, *, mtime: float) -> Obj:
        what = f"gs://{self.bucket}/{dst_key}"
        meta = {MTIME_KEY: f"{mtime:.6f}"}
        if src.md5:
            meta[MD5_KEY] = hex_to_b64(src.md5)
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
