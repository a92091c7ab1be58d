"""The emulator's records: a file (with its revisions and shares) and a shared
drive, as plain data that the state (models.py) keeps and journals."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from .query import FOLDER_MIME, ME, format_time

GOOGLE_APPS_PREFIX = "application/vnd.google-apps."
SHORTCUT_MIME = GOOGLE_APPS_PREFIX + "shortcut"


def new_file_id() -> str:
    """33 characters of the alphabet Drive uses, starting with "1" like Drive's ids."""
    return "1" + secrets.token_urlsafe(24)[:32]


@dataclass
class Revision:
    blob: Optional[str]
    size: int
    md5: str
    modified: float


@dataclass
class FileRecord:
    id: str
    name: str
    mime_type: str
    parents: List[str]
    created: float
    modified: float
    seq: int
    size: Optional[int] = None          # None for folders and Google Docs types
    md5: Optional[str] = None
    blob: Optional[str] = None          # blob file name; None = no bytes (empty file)
    trashed: bool = False
    explicitly_trashed: bool = False
    version: int = 1
    revisions: List[Revision] = field(default_factory=list)
    target_id: Optional[str] = None     # a shortcut's target ...
    target_mime: Optional[str] = None   # ... and its MIME type when the shortcut was made
    permissions: List[dict] = field(default_factory=list)  # shares; the owner's is implied
    drive_id: Optional[str] = None      # the shared drive it lives in; None: My Drive

    @property
    def is_folder(self) -> bool:
        return self.mime_type == FOLDER_MIME

    @property
    def has_content(self) -> bool:
        return not self.mime_type.startswith(GOOGLE_APPS_PREFIX)

    def quota_bytes(self) -> int:
        return (self.size or 0) + sum(r.size for r in self.revisions)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> FileRecord:
        doc = dict(doc)
        doc["revisions"] = [Revision(**r) for r in doc.get("revisions", [])]
        return cls(**doc)


@dataclass
class SharedDrive:
    """A shared drive: its root folder is the file record with the same id."""

    id: str
    name: str
    created: float
    request_id: Optional[str] = None    # drives.create is idempotent per requestId

    def render(self) -> dict:
        return {"kind": "drive#drive", "id": self.id, "name": self.name,
                "createdTime": format_time(self.created), "hidden": False}


OWNER_PERMISSION_ID = "0000000001"  # about.user.permissionId
OWNER_EMAIL = ME[1]


def owner_permission() -> dict:
    return {"kind": "drive#permission", "id": OWNER_PERMISSION_ID, "type": "user",
            "role": "owner", "emailAddress": OWNER_EMAIL, "displayName": "Emulated User",
            "deleted": False, "pendingOwner": False}


def sharing_fields(rec: FileRecord) -> dict:
    """``shared``, ``permissionIds`` and ``permissions``: the owner's, then the shares."""
    perms = [owner_permission()] + [dict(p) for p in rec.permissions]
    return {"shared": bool(rec.permissions), "permissionIds": [p["id"] for p in perms],
            "permissions": perms}
