"""The entry of every API call: authorization, faults, then the route's handler.

Independent of sockets (batch parts come through here too). Also the write
path the handlers share: the rate bucket, blob storing and committing a file.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, Iterator, Optional

from . import drives, errors
from .errors import ApiError
from .models import DriveState
from .query import apply_fields
from .records import FileRecord
from .routes import Route, match
from .storage import Content
from .uploads import SessionStore
from .wire import Request, Response, error_response, file_mask, json_response

if TYPE_CHECKING:
    from .app import Emulator

log = logging.getLogger(__name__)

_ERRORS = {
    "500": lambda: errors.backend_error(500),
    "503": lambda: errors.backend_error(503),
    "429": errors.rate_limited_429,
    "403rate": errors.rate_limited_403,
    "403daily": errors.daily_limit,
    "quota": errors.quota_exceeded,
    "401": errors.auth_error,
}


class Api:
    """Drive v3 on top of a :class:`DriveState`."""

    def __init__(self, emu: Emulator):
        self.emu = emu
        self.sessions = SessionStore()

    @property
    def state(self) -> DriveState:
        return self.emu.state

    def handle(self, req: Request) -> Response:
        route, params = match(req)
        op = route.op if route is not None else "unknown"
        self.emu._count("requests", op=op, method=req.method)
        try:
            if not self._authorized(req, op):
                raise errors.auth_error()
            fault = self.emu.faults.pick(req.method, req.raw_path,
                                         resumable_chunk=op == "upload.chunk")
            if fault is not None:
                self.emu._count("faults")
                log.debug("fault %s on %s %s", fault, req.method, req.raw_path)
                resp = self._fault(req, fault, route, params)
                if resp is not None:
                    return resp
            return self._call(req, route, params)
        except ApiError as err:
            return error_response(err)

    def _authorized(self, req: Request, op: str) -> bool:
        """A valid bearer token; a chunk may come without one (its session URI is the
        credential, as in Drive's own resumable-upload guide), but not with a bad one."""
        header = req.headers.get("authorization")
        if header is None and op == "upload.chunk":
            return True
        return header == f"Bearer {self.emu.token}"

    def _call(self, req: Request, route: Optional[Route], params: Dict[str, str]) -> Response:
        if route is None:
            raise ApiError(404, "notFound", f"Not Found: {req.method} /{req.path}")
        if route.checks_mask:
            file_mask(req.query)  # a bad mask is refused before anything changes
        if "file_id" in params:  # a shared drive's item needs supportsAllDrives=true
            drives.check_item(self, req.query, params["file_id"])
        return route.handler(self, req, **params)

    def _fault(self, req: Request, kind: str, route: Optional[Route],
               params: Dict[str, str]) -> Optional[Response]:
        if kind == "lost":
            try:
                done = self._call(req, route, params)
                if done.stream is not None:
                    done.stream.close()
            except ApiError:
                pass  # it failed, but the client will not hear that either
            if req.inner:  # one part of a batch: it took effect, its answer is an error
                raise errors.backend_error(503)
            return Response(0, drop=True)
        if kind in ("reset", "drop") and req.inner:
            raise errors.backend_error(503)
        if kind == "reset":
            return Response(0, drop=True, reset=True)
        if kind == "drop":
            if req.method == "GET" and req.query.get("alt") == "media":
                resp = self._call(req, route, params)
                if resp.status in (200, 206):
                    resp.drop_after = resp.length // 2
                return resp
            return Response(0, drop=True)
        if kind == "expire_session":
            self.sessions.forget(req.query.get("upload_id", ""))
            raise errors.session_expired()
        raise _ERRORS[kind]()

    def clear_sessions(self) -> None:
        self.sessions.clear()

    # ------------------------------------------------------------------ the shared write path

    def file_doc(self, req: Request, rec: FileRecord, status: int = 200) -> Response:
        return json_response(apply_fields(self.state.render(rec), file_mask(req.query)), status)

    def take_write(self) -> None:
        if not self.emu.bucket.try_take():
            self.emu._count("rate_limited")
            raise errors.user_rate_limited()

    def created(self) -> None:
        self.emu._count("creates")

    def precheck(self, file_id: Optional[str], meta: dict, size: Optional[int],
                 query: Optional[Dict[str, str]] = None) -> None:
        """What Drive checks before taking bytes: the file, the rate, the id, the space."""
        if file_id is not None:
            self.state.get(file_id)
        drives.check_parents(self, query or {}, meta)
        if file_id is None and self._into_shared_drive(meta):
            size = None  # a shared drive's items are not the user's: no quota check
        if meta.get("id") and meta["id"] in self.state.files:
            raise errors.duplicate_id(meta["id"])
        self.take_write()
        if size:
            self.state.check_space(size)

    def _into_shared_drive(self, meta: dict) -> bool:
        parents = meta.get("parents") if isinstance(meta, dict) else None
        if not isinstance(parents, list) or not parents or not isinstance(parents[0], str):
            return False
        parent = self.state.files.get(self.state.resolve(parents[0]))
        return parent is not None and parent.drive_id is not None

    def store(self, chunks: Iterator[bytes], mime: Optional[str]) -> Content:
        writer = self.state.blobs.writer()
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.finish(mime)
        except BaseException:
            writer.abort()
            raise

    def commit(self, file_id: Optional[str], meta: dict, content: Content,
               query: Dict[str, str]) -> Response:
        """Create the file, or replace an existing file's content (the old -> a revision)."""
        if file_id is None:
            rec = self.state.create(meta, content)
            self.created()
        else:
            rec = self.state.update(file_id, meta, add_parents=query.get("addParents"),
                                    remove_parents=query.get("removeParents"), content=content)
        return json_response(apply_fields(self.state.render(rec), file_mask(query)))
