"""The metadata calls and media download: ``files.*`` and ``about.get`` over a DriveState.

Each handler takes the :class:`~.api.Api`, the request and the path
parameters its route names (see :mod:`.routes`), and returns a Response or
raises an ApiError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from . import drives, errors
from .query import ABOUT_SCHEMA, FILE_LIST_SCHEMA, apply_fields, check_fields, parse_fields
from .records import SHORTCUT_MIME, new_file_id
from .wire import DEFAULT_LIST_FIELDS, IO_CHUNK, Request, Response, json_response, parse_range

if TYPE_CHECKING:
    from .api import Api

MAX_UPLOAD_SIZE = 5 * 1024 ** 4


def list_files(api: Api, req: Request) -> Response:
    try:
        page_size = int(req.query.get("pageSize", "100"))
    except ValueError:
        raise errors.bad_request("Invalid value for pageSize", location="pageSize") from None
    if page_size < 1:
        raise errors.bad_request(
            f"Invalid value '{page_size}'. Values must be within the range: [1, 1000]",
            location="pageSize")
    page_size = min(page_size, 1000)  # "values above 1000 will be coerced to 1000"
    if api.emu.config.max_page:
        page_size = min(page_size, api.emu.config.max_page)
    mask = check_fields(parse_fields(req.query.get("fields") or DEFAULT_LIST_FIELDS),
                        FILE_LIST_SCHEMA)
    page, token = api.state.list(req.query.get("q"), order_by=req.query.get("orderBy"),
                                 page_size=page_size, page_token=req.query.get("pageToken"),
                                 corpus=drives.corpus(api, req.query))
    doc: Dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False}
    if token:
        doc["nextPageToken"] = token
    doc["files"] = [api.state.render(r) for r in page]
    return json_response(apply_fields(doc, mask))


def get(api: Api, req: Request, file_id: str) -> Response:
    if req.query.get("alt") == "media":
        if req.inner:
            raise errors.bad_request("Media download is not supported in a batch request.")
        return download(api, req, file_id)
    return api.file_doc(req, api.state.get(file_id))


def create(api: Api, req: Request) -> Response:
    meta = req.json()
    drives.check_parents(api, req.query, meta)
    api.take_write()
    rec = api.state.create(meta)
    api.created()
    return api.file_doc(req, rec)


def update(api: Api, req: Request, file_id: str) -> Response:
    meta = req.json()
    for pid in (req.query.get("addParents") or "").split(","):
        if pid.strip():
            drives.check_item(api, req.query, pid.strip())
    rec = api.state.update(file_id, meta, add_parents=req.query.get("addParents"),
                           remove_parents=req.query.get("removeParents"))
    return api.file_doc(req, rec)


def delete(api: Api, req: Request, file_id: str) -> Response:
    api.state.delete(file_id)
    return Response(204)


def empty_trash(api: Api, req: Request) -> Response:
    """My Drive's trash; with ``driveId``, that shared drive's own trash."""
    drive_id = req.query.get("driveId")
    if drive_id is not None:
        api.state.get_drive(drive_id)
    api.state.empty_trash(drive_id)
    return Response(204)


def copy(api: Api, req: Request, file_id: str) -> Response:
    meta = req.json()
    drives.check_parents(api, req.query, meta)
    api.take_write()
    src = api.state.get(file_id)
    content = None
    if src.mime_type == SHORTCUT_MIME:  # a copy of a shortcut points at the same target
        meta.setdefault("shortcutDetails", {"targetId": src.target_id})
    else:
        src, fh = api.state.open_content(file_id)
        if fh is None:
            content = api.store(iter([]), src.mime_type)
        else:
            with fh:
                content = api.store(iter(lambda: fh.read(IO_CHUNK), b""), src.mime_type)
    meta.setdefault("name", src.name)
    meta.setdefault("mimeType", src.mime_type)
    meta.setdefault("parents", list(src.parents))
    rec = api.state.create(meta, content)
    api.created()
    return api.file_doc(req, rec)


def generate_ids(api: Api, req: Request) -> Response:
    try:
        count = int(req.query.get("count", "10"))
    except ValueError:
        raise errors.bad_request("Invalid value for count", location="count") from None
    if not 1 <= count <= 1000:
        raise errors.bad_request(
            f"Invalid value '{count}'. Values must be within the range: [1, 1000]",
            location="count")
    return json_response({"kind": "drive#generatedIds", "space": req.query.get(
        "space", "drive"), "ids": [new_file_id() for _ in range(count)]})


def about(api: Api, req: Request) -> Response:
    fields_text = req.query.get("fields")
    if not fields_text:
        raise errors.bad_request("The 'fields' parameter is required for this method.",
                                 reason="required", location="fields")
    doc = {
        "kind": "drive#about",
        "user": {"kind": "drive#user", "displayName": "Emulated User", "me": True,
                 "emailAddress": "emulated.user@example.com", "permissionId": "0000000001"},
        "storageQuota": api.state.quota(),
        "maxUploadSize": str(MAX_UPLOAD_SIZE),
        "appInstalled": False,
    }
    return json_response(apply_fields(doc, check_fields(parse_fields(fields_text),
                                                        ABOUT_SCHEMA)))


def download(api: Api, req: Request, file_id: str) -> Response:
    rec, fh = api.state.open_content(file_id)
    size = rec.size or 0
    headers = [("Content-Type", rec.mime_type)]
    rng = parse_range(req.headers.get("range"), size)
    if rng is None:
        start, end, status = 0, size - 1, 200
    else:
        start, end = rng
        if start >= size or start > end:
            if fh is not None:
                fh.close()
            return Response(416, [("Content-Range", f"bytes */{size}"),
                                  ("Content-Type", "text/plain")], b"")
        status = 206
        headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
    if fh is not None:
        fh.seek(start)
    return Response(status, headers, stream=fh, length=max(0, end - start + 1))
