"""Uploads: ``uploadType=media``, ``multipart`` and ``resumable`` sessions.

A resumable session keeps its bytes in a blob writer on disk until the last
chunk arrives; then the file is created (or, for an update, its content
replaced) exactly as a one-shot upload would.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from . import errors
from .errors import ApiError
from .storage import Content
from .wire import Request, Response, body_parts, json_response

if TYPE_CHECKING:
    from .api import Api

UPLOAD_UNIT = 256 * 1024  # resumable chunks other than the last: multiples of this


@dataclass
class Session:
    id: str
    meta: dict
    query: Dict[str, str]
    mime_type: Optional[str]
    total: Optional[int]
    file_id: Optional[str]          # set for an update
    writer: Any                     # storage.BlobWriter
    expires: float = float("inf")   # time.monotonic() after which the URI answers 404
    received: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: Optional[dict] = None     # the final file resource once complete


class SessionStore:
    """The open resumable sessions by id (in memory only, as documented).

    A session expires ``session_ttl`` seconds after its initiation, finished or
    not; from then on its URI answers 404, which tells a client to start again.
    """

    def __init__(self) -> None:
        self.sessions: Dict[str, Session] = {}
        self.lock = threading.Lock()

    def add(self, session: Session) -> None:
        now = time.monotonic()
        with self.lock:
            stale = [s for s in self.sessions.values() if s.expires <= now]
            for old in stale:
                del self.sessions[old.id]
            self.sessions[session.id] = session
        for old in stale:
            with old.lock:  # not under a chunk that is still being written
                old.writer.abort()

    def get(self, sid: str) -> Session:
        with self.lock:
            session = self.sessions.get(sid)
        if session is None:
            raise errors.session_expired()
        if session.expires <= time.monotonic():
            self.forget(sid)
            raise errors.session_expired()
        return session

    def forget(self, sid: str) -> None:
        with self.lock:
            session = self.sessions.pop(sid, None)
        if session is not None:
            session.writer.abort()

    def clear(self) -> None:
        with self.lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for s in sessions:
            s.writer.abort()


def parse_content_range(value: Optional[str], length: int
                        ) -> Tuple[Optional[int], Optional[int]]:
    """``bytes a-b/total`` | ``bytes */total`` | ``bytes a-b/*`` -> (start or None, total)."""
    if not value:
        return 0, length
    try:
        unit, spec = value.strip().split(" ", 1)
        rng, total_text = spec.split("/", 1)
        if unit != "bytes":
            raise ValueError(value)
        total = None if total_text.strip() == "*" else int(total_text)
        if rng.strip() == "*":
            return None, total
        a, b = rng.split("-", 1)
        start, end = int(a), int(b)
        if end - start + 1 != length:
            raise ValueError("Content-Range does not match Content-Length")
        return start, total
    except ValueError:
        raise errors.bad_request(f"Invalid Content-Range: {value}") from None


def _refuse_in_batch(req: Request) -> None:
    if req.inner:
        raise errors.bad_request("Media upload is not supported in a batch request.")


def upload(api: Api, req: Request, file_id: Optional[str] = None) -> Response:
    """files.create / files.update on the upload path, by ``uploadType``."""
    _refuse_in_batch(req)
    kind = req.query.get("uploadType", "media")
    if kind == "resumable":
        return start_session(api, req, file_id)
    if kind == "media":
        meta: dict = {}
        mime = req.headers.get("content-type")
        api.precheck(file_id, meta, req.body.remaining, req.query)
        content = api.store(req.body.chunks(), mime)
    elif kind == "multipart":
        meta, content = _multipart(api, req, file_id)
    else:
        raise errors.bad_request(f"Invalid upload type: {kind}", location="uploadType")
    return api.commit(file_id, meta, content, req.query)


def _multipart(api: Api, req: Request, file_id: Optional[str]) -> Tuple[dict, Content]:
    parts = body_parts(req, "multipart/", "Multipart upload needs a multipart/related body.")
    if len(parts) != 2:
        raise errors.bad_request(f"Multipart upload needs 2 parts, got {len(parts)}.")
    (_meta_headers, meta_raw), (media_headers, media) = parts
    try:
        meta = json.loads(meta_raw or b"{}")
    except ValueError:
        raise errors.bad_request("Invalid JSON metadata part.", reason="parseError") from None
    api.precheck(file_id, meta, len(media), req.query)
    return meta, api.store(iter([media]), media_headers.get("content-type"))


def start_session(api: Api, req: Request, file_id: Optional[str]) -> Response:
    meta = req.json()
    total_text = req.headers.get("x-upload-content-length")
    total = int(total_text) if total_text and total_text.isdigit() else None
    api.precheck(file_id, meta, total, req.query)
    sid = uuid.uuid4().hex
    expires = time.monotonic() + api.emu.config.session_ttl
    api.sessions.add(Session(sid, meta, dict(req.query), req.headers.get("x-upload-content-type"),
                             total, file_id, api.state.blobs.writer(), expires))
    path = "upload/drive/v3/files" + (f"/{urllib.parse.quote(file_id)}" if file_id else "")
    query = dict(req.query, upload_id=sid)
    location = f"{req.base_url}{path}?{urllib.parse.urlencode(query)}"
    return Response(200, [("Location", location), ("X-GUploader-UploadID", sid)])


def upload_chunk(api: Api, req: Request, file_id: Optional[str] = None) -> Response:
    """One chunk (or a status query) for the session named by ``upload_id``."""
    _refuse_in_batch(req)
    session = api.sessions.get(req.query.get("upload_id", ""))
    with session.lock:
        length = req.body.remaining
        start, total = parse_content_range(req.headers.get("content-range"), length)
        _check_chunk(session, start, total, length)
        if session.done is not None:
            return json_response(session.done)
        if start is not None and start <= session.received:
            _append(session, req, session.received - start)
        if session.total is not None and session.received > session.total:
            api.sessions.forget(session.id)
            raise errors.bad_request("More bytes arrived than the declared total.")
        if session.total is not None and session.received == session.total:
            return _complete(api, session)
        headers = []
        if session.received > 0:
            headers.append(("Range", f"bytes=0-{session.received - 1}"))
        return Response(308, headers)


def _check_chunk(session: Session, start: Optional[int], total: Optional[int],
                 length: int) -> None:
    final = total is not None and start is not None and start + length >= total
    if length and not final and length % UPLOAD_UNIT:
        # Google's upload servers want every chunk but the last in multiples of
        # 256 KiB (they refuse a short one with 400; a longer odd one is cut back
        # to a multiple). Refusing both keeps a client that gets this wrong honest.
        raise errors.bad_request(
            f"Invalid request. Every chunk but the last must be a multiple of "
            f"{UPLOAD_UNIT} bytes; this one has {length}.")
    if total is not None:
        if session.total is not None and total != session.total:
            raise errors.bad_request("Content-Range total does not match the session.")
        session.total = total


def _append(session: Session, req: Request, skip: int) -> None:
    """Write the chunk's bytes past ``skip`` (those the session already holds)."""
    for chunk in req.body.chunks():
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        session.writer.write(chunk[skip:])
        session.received += len(chunk) - skip
        skip = 0


def _complete(api: Api, session: Session) -> Response:
    content = session.writer.finish(session.mime_type)
    try:
        resp = api.commit(session.file_id, session.meta, content, session.query)
    except ApiError:
        api.sessions.forget(session.id)
        raise
    # Kept, as Drive does: a status query (or a re-sent last chunk) after a
    # lost answer gets 200 and the file, not a 404 that restarts the upload.
    session.done = json.loads(resp.body)
    return resp

