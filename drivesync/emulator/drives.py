"""Shared drives: ``drives.list/get/create``, and the flags Drive checks for their items.

A shared drive's items carry ``driveId``; its root folder has the drive's id.
As on Drive, a files call reaches such an item only with
``supportsAllDrives=true`` (without it the item answers 404, as if absent),
and ``files.list`` returns them only with ``includeItemsFromAllDrives=true``:
``corpora=drive`` with ``driveId`` for one drive, ``allDrives`` (or the
default corpus) for all. Shared-drive items do not count against the user's
storage quota; each drive has its own trash and holds at most 400,000 items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional

from . import errors
from .records import FileRecord
from .wire import Request, Response, json_response

if TYPE_CHECKING:
    from .api import Api


def _flag(query: Dict[str, str], name: str) -> bool:
    return query.get(name, "").lower() == "true"


def check_item(api: Api, query: Dict[str, str], file_id: str) -> Optional[FileRecord]:
    """404 for a shared-drive item asked for without supportsAllDrives=true."""
    rec = api.state.files.get(api.state.resolve(file_id))
    if rec is not None and rec.drive_id is not None and not _flag(query, "supportsAllDrives"):
        raise errors.not_found(file_id)
    return rec


def check_parents(api: Api, query: Dict[str, str], meta: dict) -> None:
    """A create into a shared drive needs supportsAllDrives=true too."""
    parents = meta.get("parents") if isinstance(meta, dict) else None
    if isinstance(parents, list):
        for pid in parents:
            if isinstance(pid, str):
                check_item(api, query, pid)


def corpus(api: Api, query: Dict[str, str]) -> str:
    """The ``corpus`` argument of DriveState.list for a files.list request."""
    corpora = query.get("corpora", "user")
    drive_id = query.get("driveId")
    include = _flag(query, "includeItemsFromAllDrives")
    if corpora not in ("user", "drive", "allDrives", "domain"):
        raise errors.bad_request(f"Invalid value for corpora: {corpora}", location="corpora")
    if (corpora == "drive") != (drive_id is not None):
        raise errors.bad_request("The driveId parameter must be specified if and only if "
                                 "corpora is set to drive.", location="driveId")
    if corpora in ("drive", "allDrives") and not include:
        raise errors.ApiError(403, "teamDriveItemsNotIncluded" if corpora == "drive" else
                              "invalid", "includeItemsFromAllDrives must be true when "
                              f"corpora is {corpora}.", location="includeItemsFromAllDrives",
                              location_type="parameter")
    if include and not _flag(query, "supportsAllDrives"):
        raise errors.ApiError(403, "invalid", "includeItemsFromAllDrives can be true only "
                              "when supportsAllDrives is true too.",
                              location="supportsAllDrives", location_type="parameter")
    if corpora == "drive":
        api.state.get_drive(drive_id or "")
        return f"drive:{drive_id}"
    return "all" if include else "user"


# ---- drives.* ----------------------------------------------------------------------------
def list_drives(api: Api, req: Request) -> Response:
    if req.query.get("q"):
        raise errors.bad_request("The emulator's drives.list does not implement q; list all "
                                 "and filter by name.", location="q")
    try:
        size = int(req.query.get("pageSize", "10"))
        offset = int(req.query.get("pageToken") or 0)
    except ValueError:
        raise errors.bad_request("Invalid value for pageSize or pageToken") from None
    if not 1 <= size <= 100:
        raise errors.bad_request(f"Invalid value '{size}'. Values must be within the range: "
                                 "[1, 100]", location="pageSize")
    drives = api.state.list_drives()
    page = drives[offset:offset + size]
    doc: dict = {"kind": "drive#driveList", "drives": [d.render() for d in page]}
    if offset + size < len(drives):
        doc["nextPageToken"] = str(offset + size)
    return json_response(doc)


def get_drive(api: Api, req: Request, drive_id: str) -> Response:
    return json_response(api.state.get_drive(drive_id).render())


def create_drive(api: Api, req: Request) -> Response:
    request_id = req.query.get("requestId")
    if not request_id:
        raise errors.bad_request("Required parameter: requestId", reason="required",
                                 location="requestId")
    body = req.json()
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        raise errors.bad_request("A shared drive needs a name.", reason="required",
                                 location="name")
    return json_response(api.state.create_drive(name, request_id=request_id).render())
