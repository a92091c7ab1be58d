"""Where a Drive remote's items live: My Drive, or the shared drive named in its
address (``drive:@NAME/...``), and what differs between the two: the base folder's
id, the files.list flags, whose trash is emptied, and what the quota is.

Kept apart from drive.py so that the Remote operations never ask which one it is.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..errors import NotFound, UsageError
from ..types import Quota

MY_DRIVE = "root"              # Drive's alias for the My Drive folder
SHARED_DRIVE_ITEMS = 400_000  # items one shared drive may hold (trashed ones included)

#: the remote's paced request: ``run(lambda service: request, what=...)``
Run = Callable[..., Any]


class DriveSpace:
    """My Drive (``name`` None) or the shared drive called ``name``."""

    def __init__(self, name: Optional[str], *, run: Run, address: str):
        self.name = name
        self._run = run
        self._address = address
        self._drive_id: Optional[str] = None

    def base_id(self) -> str:
        """My Drive's alias, or the id of the shared drive named in the address."""
        if self.name is None:
            return MY_DRIVE
        if self._drive_id is None:
            self._drive_id = self._find(self.name)
        return self._drive_id

    def _find(self, name: str) -> str:
        """drives.list (all pages) and an exact name match: none or two are errors."""
        found: list[dict] = []
        token: Optional[str] = None
        while True:
            page = self._run(lambda s, t=token: s.drives().list(
                pageSize=100, pageToken=t, fields="nextPageToken,drives(id,name)"),
                what="drives.list")
            found += [d for d in page.get("drives", []) if d.get("name") == name]
            token = page.get("nextPageToken")
            if not token:
                break
        if not found:
            raise NotFound(f"{self._address}: no shared drive named {name!r} among those this "
                           "account can see (names are case-sensitive)")
        if len(found) > 1:
            ids = ", ".join(d["id"] for d in found)
            raise UsageError(f"{self._address}: {len(found)} shared drives are named {name!r} "
                             f"(ids {ids}); rename one so the name says which")
        return found[0]["id"]

    def list_kw(self) -> dict:
        """files.list flags: one shared drive's items, as the API requires, else My Drive."""
        if self.name is None:
            return {"spaces": "drive", "supportsAllDrives": True}
        return {"corpora": "drive", "driveId": self.base_id(), "includeItemsFromAllDrives": True,
                "supportsAllDrives": True}

    def empty_trash(self) -> None:
        """My Drive's trash; in a shared drive, that drive's own trash (its items go
        there, not to anyone's trash; emptying it needs the organizer role)."""
        if self.name is None:
            self._run(lambda s: s.files().emptyTrash(), what="files.emptyTrash")
            return
        drive_id = self.base_id()
        self._run(lambda s: s.files().emptyTrash(driveId=drive_id), what="files.emptyTrash")

    def quota(self) -> Quota:
        if self.name is not None:
            return self._drive_quota()
        about = self._run(lambda s: s.about().get(fields="storageQuota"), what="about.get")
        q = about.get("storageQuota", {})
        limit = q.get("limit")
        return Quota(limit=int(limit) if limit not in (None, "") else None,
                     usage=int(q.get("usage") or 0), trash=int(q.get("usageInDriveTrash") or 0))

    def _drive_quota(self) -> Quota:
        """A shared drive has no quota of its own in the API (about.get is the user's,
        and its items are not counted there): what it holds is counted by listing it,
        trash included, against its 400,000-item limit."""
        drive_id = self.base_id()
        usage = trash = items = 0
        token: Optional[str] = None
        while True:
            page = self._run(lambda s, t=token: s.files().list(
                pageSize=1000, pageToken=t, corpora="drive", driveId=drive_id,
                includeItemsFromAllDrives=True, supportsAllDrives=True,
                fields="nextPageToken,files(size,quotaBytesUsed,trashed)"),
                what="files.list")
            for meta in page.get("files", []):
                size = int(meta.get("quotaBytesUsed") or meta.get("size") or 0)
                items += 1
                usage += size
                trash += size if meta.get("trashed") else 0
            token = page.get("nextPageToken")
            if not token:
                break
        return Quota(limit=None, usage=usage, trash=trash, items=items,
                     item_limit=SHARED_DRIVE_ITEMS,
                     note=f"shared drive {self.name}: no per-user quota (its items "
                          "belong to the drive and count against the organization's pooled "
                          "storage); at most 400,000 items, trash included")
