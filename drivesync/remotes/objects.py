"""``s3://`` and ``gs://`` addresses: read them, and build the object-store Remote
(the one place that picks S3 or GCS; neither client is imported before use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError, UsageError
from ..pacer import Pacer
from ..types import clean_relpath

if TYPE_CHECKING:
    from ..config import Settings
    from .address import Address
    from .objstore import ObjectRemote


def bucket_path(rest: str) -> str:
    """``//bucket/a/b/`` (what follows ``s3:``) -> ``bucket/a/b``; a bucket is required."""
    if not rest.startswith("//"):
        raise UsageError(f"expected //BUCKET/PREFIX after the scheme, got {rest!r}")
    path = clean_relpath(rest[2:])
    if not path:
        raise UsageError("a bucket name is required: s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")
    return path


def object_pacer(settings: Settings) -> Pacer:
    return Pacer(max_tries=settings.max_tries, base=settings.backoff_base,
                 cap=settings.backoff_cap)


def open_object_remote(address: Address, settings: Settings) -> ObjectRemote:
    """``settings.api_endpoint`` (``--endpoint``) points at an S3-compatible server or a
    GCS emulator; unset, each client finds its own (``AWS_ENDPOINT_URL``,
    ``STORAGE_EMULATOR_HOST``) or the real service."""
    from .objstore import ObjectRemote

    bucket, _, prefix = address.path.partition("/")
    extra = "s3" if address.scheme == "s3" else "gcs"
    try:  # each client comes with its extra, imported only here and only when used
        if address.scheme == "s3":
            from .s3 import S3Store as store_type
        else:
            from .gcs import GCSStore as store_type
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ConfigError(f"{address.scheme}:// needs the {extra} extra: "
                          f"pip install 'drivesync[{extra}]'") from exc
    store = store_type(bucket, endpoint=settings.api_endpoint)
    return ObjectRemote(store, prefix, pacer=object_pacer(settings))
