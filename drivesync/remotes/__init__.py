"""Open a Remote from an address: ``drive:FOLDER/SUB``, ``local:PATH`` or a plain path."""

from __future__ import annotations

from typing import Optional

from ..config import Settings
from ..errors import UsageError
from .base import Remote

__all__ = ["Remote", "open_remote", "is_drive_address"]


def is_drive_address(address: str) -> bool:
    return address.startswith("drive:")


def open_remote(address: str, *, settings: Optional[Settings] = None) -> Remote:
    """``drive:`` goes through the Drive v3 API; anything else is a local folder.

    ``drive:`` alone means the default top folder (``Settings.folder``).
    """
    settings = settings or Settings()
    if is_drive_address(address):
        from .drive import DriveRemote  # imports googleapiclient only when needed

        root = address[len("drive:"):].strip("/") or settings.folder
        return DriveRemote(root, settings=settings)
    path = address[len("local:"):] if address.startswith("local:") else address
    if not path:
        raise UsageError("empty local path in remote address")
    from .local import LocalRemote

    return LocalRemote(path)
