"""Open a Remote from an address: ``drive:FOLDER/SUB``, ``s3://BUCKET/PREFIX``,
``gs://BUCKET/PREFIX``, ``local:PATH`` or a plain path.

Addresses are read by :func:`parse_address` (see ``address.py`` for the
rules); a new remote type registers itself here with one
``register_scheme`` line.
"""

from __future__ import annotations

from typing import Optional, Union

from ..config import Settings, resolve_settings
from ..hashing import HashCache, cache_path
from .address import (
    Address,
    drive_path,
    known_schemes,
    parse_address,
    register_scheme,
    scheme_opener,
)
from .base import Remote
from .objects import bucket_path, open_object_remote

__all__ = ["Remote", "Address", "open_remote", "parse_address", "register_scheme",
           "known_schemes", "is_drive_address"]


def _open_drive(address: Address, settings: Settings) -> Remote:
    from .drive import DriveRemote  # imports googleapiclient only when needed

    return DriveRemote(address.path, settings=settings)


def _open_local(address: Address, settings: Settings) -> Remote:
    from .local import LocalRemote

    # the md5 cache in the settings' state directory (opened only when a file is hashed)
    hashes = HashCache(cache_path(settings.resolved_state_dir()))
    return LocalRemote(address.path, hash_cache=hashes)


register_scheme("drive", _open_drive, normalize=drive_path,
                summary="a path under My Drive, through the Drive API")
register_scheme("local", _open_local, summary="a local folder")
register_scheme("s3", open_object_remote, normalize=bucket_path,
                summary="s3://BUCKET/PREFIX, S3 or an S3-compatible server; drivesync[s3]")
register_scheme("gs", open_object_remote, normalize=bucket_path,
                summary="gs://BUCKET/PREFIX, Google Cloud Storage; drivesync[gcs]")


def is_drive_address(address: str) -> bool:
    """True for a ``drive:`` address (raises UsageError for an unknown ``WORD:``)."""
    return parse_address(address).is_drive


def open_remote(address: Union[str, Address], *,
                settings: Optional[Settings] = None) -> Remote:
    """The Remote an address names.

    Without ``settings``, they are resolved as the CLI resolves them: the
    DRIVESYNC_* environment, then the config file (README "Configuration");
    given ones are used as given (credentials they leave unset come from the
    environment, see :func:`~drivesync.config.resolve_settings`). The remote is
    built from them once: nothing re-sets a setting on it afterwards.
    """
    parsed = address if isinstance(address, Address) else parse_address(address)
    settings = resolve_settings(settings)
    return scheme_opener(parsed.scheme)(parsed, settings)
