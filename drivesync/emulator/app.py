"""Routes and wire format: Drive v3 over HTTP/1.1 for the real google-api-python-client.

The paths are the ones the packaged discovery document produces once its
``rootUrl`` points here: ``drive/v3/...``, ``upload/drive/v3/...`` and
``batch/drive/v3``. A control plane under ``/_emulator/`` (no token needed)
resets state, sets knobs, injects faults and reads counters.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import random
import shutil
import socket
import struct
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple, Union

from . import errors
from .errors import ApiError
from .faults import Config, FaultPlan, Throttle, WriteBucket
from .models import Content, DriveState, FileRecord, new_file_id
from .query import (
    ABOUT_SCHEMA,
    FILE_LIST_SCHEMA,
    FILE_SCHEMA,
    apply_fields,
    check_fields,
    parse_fields,
)

log = logging.getLogger(__name__)

IO_CHUNK = 64 * 1024
MAX_BATCH = 100
UPLOAD_UNIT = 256 * 1024  # resumable chunks other than the last: multiples of this
DEFAULT_FILE_FIELDS = "kind,id,name,mimeType"
DEFAULT_LIST_FIELDS = "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)"
COUNTER_KEYS = ("requests", "creates", "rate_limited", "faults", "bytes_in", "bytes_out",
                "control")


# ---------------------------------------------------------------------------- request/response


class Body:
    """A request body read on demand (streamed for media; throttled; counted)."""

    def __init__(self, source: Union[BinaryIO, bytes], length: int,
                 pace: Callable[[int], None] = lambda n: None):
        self.source = source
        self.remaining = length
        self.pace = pace
        self.pos = 0

    def read(self, n: int = IO_CHUNK) -> bytes:
        n = min(n, self.remaining)
        if n <= 0:
            return b""
        if isinstance(self.source, bytes):
            data = self.source[self.pos:self.pos + n]
            self.pos += n
        else:
            self.pace(n)
            data = self.source.read(n)
            if len(data) < n:
                self.remaining = 0
                raise ConnectionError("client closed the connection mid-body")
        self.remaining -= len(data)
        return data

    def chunks(self) -> Iterator[bytes]:
        while self.remaining > 0:
            yield self.read()

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def drain(self) -> None:
        """Discard the rest without pacing (the answer is already decided)."""
        self.pace = lambda n: None
        for _ in self.chunks():
            pass


@dataclass
class Request:
    method: str
    path: str                     # without the leading "/" and the query
    raw_path: str                 # as sent, with the query (what path_contains matches)
    query: Dict[str, str]
    headers: Dict[str, str]       # lower-case names
    body: Body
    base_url: str                 # http://host:port/
    inner: bool = False           # a part of a batch

    def json(self) -> dict:
        raw = self.body.read_all()
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except ValueError:
            raise errors.bad_request("Invalid JSON payload received.", reason="parseError"
                                     ) from None
        if not isinstance(doc, dict):
            raise errors.bad_request("Invalid JSON payload received.", reason="parseError")
        return doc


@dataclass
class Response:
    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: Optional[BinaryIO] = None   # media download, ``length`` bytes from its position
    length: int = 0
    drop: bool = False                  # close the connection without answering
    reset: bool = False                 # ... abruptly (TCP reset) rather than cleanly
    drop_after: Optional[int] = None    # send headers and this many body bytes, then close


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(status, [("Content-Type", "application/json; charset=UTF-8")],
                    json.dumps(doc).encode())


def error_response(err: ApiError) -> Response:
    return Response(err.code, [("Content-Type", "application/json; charset=UTF-8")], err.body())


def _reason(status: int) -> str:
    if status == 308:
        return "Resume Incomplete"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# ---------------------------------------------------------------------------- resumable sessions


@dataclass
class Session:
    id: str
    meta: dict
    query: Dict[str, str]
    mime_type: Optional[str]
    total: Optional[int]
    file_id: Optional[str]          # set for an update
    writer: Any                     # models.BlobWriter
    received: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: Optional[dict] = None     # the final file resource once complete


_RANGE = "bytes"


def _parse_content_range(value: Optional[str], length: int) -> Tuple[Optional[int], Optional[int]]:
    """``bytes a-b/total`` | ``bytes */total`` | ``bytes a-b/*`` -> (start or None, total)."""
    if not value:
        return 0, length
    try:
        unit, spec = value.strip().split(" ", 1)
        rng, total_text = spec.split("/", 1)
        if unit != _RANGE:
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


def _parse_range(value: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """``bytes=a-b`` / ``a-`` / ``-n`` -> (start, end inclusive); None = whole file."""
    if not value or not value.strip().startswith("bytes="):
        return None
    spec = value.strip()[6:].split(",")[0].strip()
    a, _, b = spec.partition("-")
    try:
        if a == "":
            n = int(b)
            return (max(0, size - n), size - 1) if n > 0 else (size, size - 1)
        start = int(a)
        end = int(b) if b else size - 1
    except ValueError:
        return None
    return start, min(end, size - 1)


# ---------------------------------------------------------------------------- the API


class Api:
    """Drive v3 on top of a :class:`DriveState`; independent of sockets (batch reuses it)."""

    def __init__(self, emu: Emulator):
        self.emu = emu
        self.sessions: Dict[str, Session] = {}
        self.sessions_lock = threading.Lock()

    @property
    def state(self) -> DriveState:
        return self.emu.state

    # ------------------------------------------------------------------ entry

    def handle(self, req: Request) -> Response:
        op = self._op_name(req)
        self.emu._count("requests", op=op, method=req.method)
        try:
            if req.headers.get("authorization", "") != f"Bearer {self.emu.token}":
                raise errors.auth_error()
            fault = self.emu.faults.pick(req.method, req.raw_path,
                                         resumable_put=req.method == "PUT"
                                         and "upload_id" in req.query)
            if fault is not None:
                self.emu._count("faults")
                log.debug("fault %s on %s %s", fault, req.method, req.raw_path)
                resp = self._fault(req, fault)
                if resp is not None:
                    return resp
            return self._route(req, op)
        except ApiError as err:
            return error_response(err)

    def _fault(self, req: Request, kind: str) -> Optional[Response]:
        if kind == "lost":
            try:
                done = self._route(req, self._op_name(req))
                if done.stream is not None:
                    done.stream.close()
            except ApiError:
                pass  # it failed, but the client will not hear that either
            if req.inner:  # one part of a batch: it took effect, its answer is an error
                raise errors.backend_error(503)
            return Response(0, drop=True)
        if kind == "reset":
            if req.inner:
                raise errors.backend_error(503)
            return Response(0, drop=True, reset=True)
        if kind == "drop":
            if req.inner:
                raise errors.backend_error(503)
            if req.method == "GET" and req.query.get("alt") == "media":
                resp = self._route(req, "files.get")
                if resp.status in (200, 206):
                    resp.drop_after = resp.length // 2
                return resp
            return Response(0, drop=True)
        if kind == "expire_session":
            with self.sessions_lock:
                session = self.sessions.pop(req.query.get("upload_id", ""), None)
            if session is not None:
                session.writer.abort()
            raise errors.session_expired()
        raise {
            "500": lambda: errors.backend_error(500),
            "503": lambda: errors.backend_error(503),
            "429": errors.rate_limited_429,
            "403rate": errors.rate_limited_403,
            "403daily": errors.daily_limit,
            "quota": errors.quota_exceeded,
            "401": errors.auth_error,
        }[kind]()

    @staticmethod
    def _op_name(req: Request) -> str:
        parts = _route_parts(req.path)
        if not parts:
            return "unknown"
        head = parts[0]
        if head == "batch":
            return "batch"
        if head == "upload":
            if req.method == "PUT":
                return "upload.chunk"
            return "files.create" if len(parts) == 4 else "files.update"
        if parts[:3] == ["drive", "v3", "about"]:
            return "about.get"
        if parts[:3] == ["drive", "v3", "files"]:
            rest = parts[3:]
            if not rest:
                return {"GET": "files.list", "POST": "files.create"}.get(req.method, "unknown")
            if rest == ["generateIds"]:
                return "files.generateIds"
            if rest == ["trash"] and req.method == "DELETE":
                return "files.emptyTrash"
            if len(rest) == 2 and rest[1] == "copy":
                return "files.copy"
            return {"GET": "files.get", "PATCH": "files.update", "PUT": "files.update",
                    "DELETE": "files.delete"}.get(req.method, "unknown")
        return "unknown"

    def _route(self, req: Request, op: str) -> Response:
        if op in ("files.create", "files.get", "files.update", "files.copy"):
            file_mask(req.query)  # a bad mask is refused before anything changes
        parts = _route_parts(req.path)
        m = req.method
        if parts and parts[0] == "batch" and m == "POST" and not req.inner:
            return self.batch(req)
        if parts and parts[0] == "upload":
            if req.inner:
                raise errors.bad_request("Media upload is not supported in a batch request.")
            if parts[1:4] == ["drive", "v3", "files"] and len(parts) in (4, 5):
                file_id = parts[4] if len(parts) == 5 else None
                if m == "PUT" and "upload_id" in req.query:
                    return self.upload_chunk(req)
                if (m == "POST" and file_id is None) or (m in ("PATCH", "PUT") and file_id):
                    return self.upload(req, file_id)
        if parts[:3] == ["drive", "v3", "files"]:
            rest = parts[3:]
            if not rest:
                if m == "GET":
                    return self.list(req)
                if m == "POST":
                    return self.create(req)
            elif rest == ["generateIds"] and m == "GET":
                return self.generate_ids(req)
            elif rest == ["trash"] and m == "DELETE":
                self.state.empty_trash()
                return Response(204)
            elif len(rest) == 1:
                if m == "GET":
                    return self.get(req, rest[0])
                if m in ("PATCH", "PUT"):
                    return self.update(req, rest[0])
                if m == "DELETE":
                    self.state.delete(rest[0])
                    return Response(204)
            elif len(rest) == 2 and rest[1] == "copy" and m == "POST":
                return self.copy(req, rest[0])
        if parts[:3] == ["drive", "v3", "about"] and m == "GET":
            return self.about(req)
        raise ApiError(404, "notFound", f"Not Found: {m} /{req.path}")

    # ------------------------------------------------------------------ helpers

    def _file_doc(self, req: Request, rec: FileRecord, status: int = 200) -> Response:
        mask = file_mask(req.query)
        return json_response(apply_fields(self.state.render(rec), mask), status)

    def _take_write(self) -> None:
        if not self.emu.bucket.try_take():
            self.emu._count("rate_limited")
            raise errors.user_rate_limited()

    def _created(self) -> None:
        self.emu._count("creates")

    # ------------------------------------------------------------------ metadata

    def list(self, req: Request) -> Response:
        try:
            page_size = int(req.query.get("pageSize", "100"))
        except ValueError:
            raise errors.bad_request("Invalid value for pageSize", location="pageSize") from None
        if page_size < 1:
            raise errors.bad_request(
                f"Invalid value '{page_size}'. Values must be within the range: [1, 1000]",
                location="pageSize")
        page_size = min(page_size, 1000)  # "values above 1000 will be coerced to 1000"
        if self.emu.config.max_page:
            page_size = min(page_size, self.emu.config.max_page)
        mask = check_fields(parse_fields(req.query.get("fields") or DEFAULT_LIST_FIELDS),
                            FILE_LIST_SCHEMA)
        page, token = self.state.list(req.query.get("q"), order_by=req.query.get("orderBy"),
                                      page_size=page_size, page_token=req.query.get("pageToken"))
        doc: Dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False}
        if token:
            doc["nextPageToken"] = token
        doc["files"] = [self.state.render(r) for r in page]
        return json_response(apply_fields(doc, mask))

    def get(self, req: Request, file_id: str) -> Response:
        if req.query.get("alt") == "media":
            if req.inner:
                raise errors.bad_request("Media download is not supported in a batch request.")
            return self.download(req, file_id)
        return self._file_doc(req, self.state.get(file_id))

    def create(self, req: Request) -> Response:
        meta = req.json()
        self._take_write()
        rec = self.state.create(meta)
        self._created()
        return self._file_doc(req, rec)

    def update(self, req: Request, file_id: str) -> Response:
        meta = req.json()
        rec = self.state.update(file_id, meta, add_parents=req.query.get("addParents"),
                                remove_parents=req.query.get("removeParents"))
        return self._file_doc(req, rec)

    def copy(self, req: Request, file_id: str) -> Response:
        meta = req.json()
        self._take_write()
        src, fh = self.state.open_content(file_id)
        if fh is None:
            content = self._store(iter([]), src.mime_type)
        else:
            with fh:
                content = self._store(iter(lambda: fh.read(IO_CHUNK), b""), src.mime_type)
        meta.setdefault("name", src.name)
        meta.setdefault("mimeType", src.mime_type)
        meta.setdefault("parents", list(src.parents))
        rec = self.state.create(meta, content)
        self._created()
        return self._file_doc(req, rec)

    def generate_ids(self, req: Request) -> Response:
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

    def about(self, req: Request) -> Response:
        fields_text = req.query.get("fields")
        if not fields_text:
            raise errors.bad_request("The 'fields' parameter is required for this method.",
                                     reason="required", location="fields")
        doc = {
            "kind": "drive#about",
            "user": {"kind": "drive#user", "displayName": "Emulated User", "me": True,
                     "emailAddress": "emulated.user@example.com", "permissionId": "0000000001"},
            "storageQuota": self.state.quota(),
            "maxUploadSize": str(5 * 1024 ** 4),
            "appInstalled": False,
        }
        return json_response(apply_fields(doc, check_fields(parse_fields(fields_text),
                                                            ABOUT_SCHEMA)))

    # ------------------------------------------------------------------ media

    def download(self, req: Request, file_id: str) -> Response:
        rec, fh = self.state.open_content(file_id)
        size = rec.size or 0
        headers = [("Content-Type", rec.mime_type)]
        rng = _parse_range(req.headers.get("range"), size)
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

    def upload(self, req: Request, file_id: Optional[str]) -> Response:
        kind = req.query.get("uploadType", "media")
        if kind == "resumable":
            return self.start_session(req, file_id)
        if kind == "media":
            meta: dict = {}
            mime = req.headers.get("content-type")
            self._precheck(req, file_id, meta, req.body.remaining)
            content = self._store(req.body.chunks(), mime)
        elif kind == "multipart":
            meta, content = self._multipart(req, file_id)
        else:
            raise errors.bad_request(f"Invalid upload type: {kind}", location="uploadType")
        return self._commit(req, file_id, meta, content)

    def _precheck(self, req: Request, file_id: Optional[str], meta: dict,
                  size: Optional[int]) -> None:
        """What Drive checks before taking bytes: the file, the rate, the id, the space."""
        if file_id is not None:
            self.state.get(file_id)
        if meta.get("id") and meta["id"] in self.state.files:
            raise errors.duplicate_id(meta["id"])
        self._take_write()
        if size:
            self.state.check_space(size)

    def _store(self, chunks: Iterator[bytes], mime: Optional[str]) -> Content:
        writer = self.state.blobs.writer()
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.finish(mime)
        except BaseException:
            writer.abort()
            raise

    def _commit(self, req: Request, file_id: Optional[str], meta: dict,
                content: Content, query: Optional[Dict[str, str]] = None) -> Response:
        query = req.query if query is None else query
        if file_id is None:
            rec = self.state.create(meta, content)
            self._created()
        else:
            rec = self.state.update(file_id, meta, add_parents=query.get("addParents"),
                                    remove_parents=query.get("removeParents"), content=content)
        return json_response(apply_fields(self.state.render(rec), file_mask(query)))

    def _multipart(self, req: Request, file_id: Optional[str]) -> Tuple[dict, Content]:
        parts = _body_parts(req, "multipart/", "Multipart upload needs a multipart/related body.")
        if len(parts) != 2:
            raise errors.bad_request(f"Multipart upload needs 2 parts, got {len(parts)}.")
        (meta_headers, meta_raw), (media_headers, media) = parts
        try:
            meta = json.loads(meta_raw or b"{}")
        except ValueError:
            raise errors.bad_request("Invalid JSON metadata part.", reason="parseError") from None
        self._precheck(req, file_id, meta, len(media))
        return meta, self._store(iter([media]), media_headers.get("content-type"))

    def start_session(self, req: Request, file_id: Optional[str]) -> Response:
        meta = req.json()
        total_text = req.headers.get("x-upload-content-length")
        total = int(total_text) if total_text and total_text.isdigit() else None
        self._precheck(req, file_id, meta, total)
        sid = uuid.uuid4().hex
        session = Session(sid, meta, dict(req.query), req.headers.get("x-upload-content-type"),
                          total, file_id, self.state.blobs.writer())
        with self.sessions_lock:
            self.sessions[sid] = session
        path = "upload/drive/v3/files" + (f"/{urllib.parse.quote(file_id)}" if file_id else "")
        query = dict(req.query, upload_id=sid)
        location = f"{req.base_url}{path}?{urllib.parse.urlencode(query)}"
        return Response(200, [("Location", location), ("X-GUploader-UploadID", sid)])

    def upload_chunk(self, req: Request) -> Response:
        sid = req.query.get("upload_id", "")
        with self.sessions_lock:
            session = self.sessions.get(sid)
        if session is None:
            raise errors.session_expired()
        with session.lock:
            length = req.body.remaining
            start, total = _parse_content_range(req.headers.get("content-range"), length)
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
            if session.done is not None:
                return json_response(session.done)
            if start is not None and start <= session.received:
                skip = session.received - start
                for chunk in req.body.chunks():
                    if skip >= len(chunk):
                        skip -= len(chunk)
                        continue
                    session.writer.write(chunk[skip:])
                    session.received += len(chunk) - skip
                    skip = 0
            if session.total is not None and session.received > session.total:
                self._forget(session)
                raise errors.bad_request("More bytes arrived than the declared total.")
            if session.total is not None and session.received == session.total:
                content = session.writer.finish(session.mime_type)
                try:
                    resp = self._commit(req, session.file_id, session.meta, content,
                                        session.query)
                except ApiError:
                    self._forget(session)
                    raise
                # Kept, as Drive does: a status query (or a re-sent last chunk) after a
                # lost answer gets 200 and the file, not a 404 that restarts the upload.
                session.done = json.loads(resp.body)
                return resp
            headers = []
            if session.received > 0:
                headers.append(("Range", f"bytes=0-{session.received - 1}"))
            return Response(308, headers)

    def _forget(self, session: Session) -> None:
        with self.sessions_lock:
            self.sessions.pop(session.id, None)
        session.writer.abort()

    def clear_sessions(self) -> None:
        with self.sessions_lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for s in sessions:
            s.writer.abort()

    # ------------------------------------------------------------------ batch

    def batch(self, req: Request) -> Response:
        parts = _body_parts(req, "multipart/mixed", "A batch request needs a multipart/mixed body.")
        if len(parts) > MAX_BATCH:
            raise errors.bad_request(f"A batch may hold at most {MAX_BATCH} calls, "
                                     f"got {len(parts)}.", reason="batchSizeTooLarge")
        out_boundary = "batch_" + uuid.uuid4().hex
        chunks: List[bytes] = []
        for headers, payload in parts:
            content_id = headers.get("content-id", "")
            resp = self._inner(req, payload)
            head = f"HTTP/1.1 {resp.status} {_reason(resp.status)}\r\n"
            for k, v in resp.headers:
                head += f"{k}: {v}\r\n"
            head += f"Content-Length: {len(resp.body)}\r\n\r\n"
            rid = content_id.strip()
            if rid.startswith("<") and rid.endswith(">"):
                rid = f"<response-{rid[1:-1]}>"
            chunks.append(f"--{out_boundary}\r\nContent-Type: application/http\r\n"
                          f"Content-ID: {rid}\r\n\r\n".encode() + head.encode() + resp.body
                          + b"\r\n")
        chunks.append(f"--{out_boundary}--\r\n".encode())
        return Response(200, [("Content-Type", f"multipart/mixed; boundary={out_boundary}")],
                        b"".join(chunks))

    def _inner(self, outer: Request, payload: bytes) -> Response:
        text = payload.decode("utf-8", "replace")
        line, _, rest = text.lstrip("\r\n").partition("\n")
        try:
            method, target, _proto = line.strip().split(" ", 2)
        except ValueError:
            return error_response(errors.bad_request(f"Bad request line in batch: {line!r}"))
        msg = email.parser.Parser(policy=email.policy.compat32).parsestr(rest)
        headers = {k.lower(): v for k, v in msg.items()}
        body = msg.get_payload()
        body_bytes = body.encode() if isinstance(body, str) else b""
        if "authorization" not in headers and "authorization" in outer.headers:
            headers["authorization"] = outer.headers["authorization"]
        url = urllib.parse.urlsplit(target)
        inner = Request(method=method.upper(), path=url.path.lstrip("/"), raw_path=target,
                        query=_query(url.query), headers=headers,
                        body=Body(body_bytes, len(body_bytes)), base_url=outer.base_url,
                        inner=True)
        resp = self.handle(inner)
        if resp.stream is not None:
            resp.stream.close()
        return resp


# ---------------------------------------------------------------------------- parsing helpers


def file_mask(query: Dict[str, str]) -> Any:
    """The checked ``fields`` mask of a request that answers with one file."""
    return check_fields(parse_fields(query.get("fields") or DEFAULT_FILE_FIELDS), FILE_SCHEMA)


def _route_parts(path: str) -> List[str]:
    path = path.strip("/")
    if path.startswith("resumable/upload/"):
        path = path[len("resumable/"):]
    return [urllib.parse.unquote(p) for p in path.split("/") if p]


def _query(qs: str) -> Dict[str, str]:
    return {k: v[-1] for k, v in urllib.parse.parse_qs(qs, keep_blank_values=True).items()}


def _param(header: str, name: str) -> Optional[str]:
    for piece in header.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


def _body_parts(req: Request, kind: str, refusal: str) -> List[Tuple[Dict[str, str], bytes]]:
    """The parts of a ``kind`` multipart body; 400 ``refusal`` for any other body."""
    ctype = req.headers.get("content-type", "")
    boundary = _param(ctype, "boundary")
    if not ctype.startswith(kind) or not boundary:
        raise errors.bad_request(refusal)
    return _split_multipart(req.body.read_all(), boundary.encode())


def _split_multipart(raw: bytes, boundary: bytes) -> List[Tuple[Dict[str, str], bytes]]:
    """Split a MIME multipart body; the line break before a delimiter belongs to it.

    The client's email generator writes LF line breaks, others write CRLF; the
    first delimiter line tells which, so a part whose bytes end in ``\r`` keeps it.
    """
    delim = b"--" + boundary
    parts: List[Tuple[Dict[str, str], bytes]] = []
    pos = raw.find(delim)
    if pos < 0:
        return parts
    first_eol = raw.find(b"\n", pos)
    nl = b"\r\n" if first_eol > 0 and raw[first_eol - 1:first_eol] == b"\r" else b"\n"
    while True:
        pos += len(delim)
        if raw[pos:pos + 2] == b"--":
            break
        eol = raw.find(b"\n", pos)  # the rest of the delimiter line
        if eol < 0:
            break
        start = eol + 1
        nxt = raw.find(nl + delim, start - len(nl))
        if nxt < 0:
            break
        chunk = raw[start:nxt] if nxt >= start else b""
        sep = chunk.find(nl + nl)
        if sep < 0:
            head, body = chunk, b""
        else:
            head, body = chunk[:sep], chunk[sep + 2 * len(nl):]
        headers: Dict[str, str] = {}
        last = ""
        for line in head.decode("latin-1").splitlines():
            if line[:1] in (" ", "\t") and last:  # a folded (continued) header line
                headers[last] += " " + line.strip()
                continue
            key, colon, value = line.partition(":")
            if colon:
                last = key.strip().lower()
                headers[last] = value.strip()
        parts.append((headers, body))
        pos = nxt + len(nl)
    return parts


# ---------------------------------------------------------------------------- HTTP server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: Tuple[str, int], emu: Emulator):
        self.emu = emu
        self.connections: set = set()
        self.conn_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.throttle = Throttle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _pace(self, n: int) -> None:
        self.throttle.pace(n, self.server.emu.config.bandwidth)

    def _serve(self) -> None:
        emu = self.server.emu
        url = urllib.parse.urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            raw = self._read_chunked()
            body = Body(raw, len(raw))
        else:
            body = Body(self.rfile, int(headers.get("content-length") or 0), self._pace)
        host = headers.get("host") or f"{self.server.server_address[0]}:{self.server.server_port}"
        req = Request(method=self.command, path=url.path.lstrip("/"), raw_path=self.path,
                      query=_query(url.query), headers=headers, body=body,
                      base_url=f"http://{host}/")
        try:
            if req.path.startswith("_emulator/"):
                resp = emu._control(req)
            else:
                total = body.remaining
                if emu.config.latency > 0:
                    time.sleep(emu.config.latency)
                self.throttle.restart()  # latency is not bandwidth credit
                resp = emu.api.handle(req)
                emu._count("bytes_in", total - body.remaining)
                if resp.drop:
                    self._drop(body, reset=resp.reset)
                    return
            body.drain()
            self._send(resp)
        except (ConnectionError, OSError) as exc:
            log.debug("connection lost: %s", exc)
            self.close_connection = True
        except Exception:  # a bug: answer 500 in the envelope rather than hang the client
            log.exception("emulator error on %s %s", self.command, self.path)
            self.close_connection = True
            try:
                self._send(error_response(errors.backend_error(500)))
            except OSError:
                pass

    def _drop(self, body: Body, *, reset: bool) -> None:
        """End the connection without an answer.

        ``drop``: take the whole request, then close cleanly; httplib2 reads that
        as a stale keep-alive connection and re-sends the request once by itself
        (a streamed body it cannot rewind then hangs until the client's timeout,
        as it would against Google). ``reset``: take half the body, then abort
        with a TCP reset, which surfaces at once as a connection error.
        """
        self.close_connection = True
        if not reset:
            body.drain()
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        body.read(body.remaining // 2)
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _read_chunked(self) -> bytes:
        out = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(out)
            out.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, resp: Response) -> None:
        emu = self.server.emu
        streamed = resp.stream is not None or resp.length > 0
        length = resp.length if streamed else len(resp.body)
        head = [f"HTTP/1.1 {resp.status} {_reason(resp.status)}",
                f"Date: {self.date_time_string()}", "Server: drivesync-emulator"]
        head += [f"{k}: {v}" for k, v in resp.headers]
        head.append(f"Content-Length: {length}")
        if self.close_connection or resp.drop_after is not None:
            head.append("Connection: close")
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        try:
            if not streamed:
                emu._count("bytes_out", len(resp.body))
                self.wfile.write(raw_head + resp.body)
                return
            self.wfile.write(raw_head)
            self._stream(resp)
        finally:
            if resp.stream is not None:
                resp.stream.close()

    def _stream(self, resp: Response) -> None:
        emu = self.server.emu
        left = resp.length
        limit = resp.drop_after
        sent = 0
        while left > 0:
            n = min(IO_CHUNK, left)
            if limit is not None:
                n = min(n, limit - sent)
                if n <= 0:
                    break
            data = resp.stream.read(n) if resp.stream is not None else b"\0" * n
            if not data:
                break
            self._pace(len(data))
            emu._count("bytes_out", len(data))
            self.wfile.write(data)
            sent += len(data)
            left -= len(data)
        if left > 0:  # a dropped download (or a file shrunk under us): cut the connection
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# ---------------------------------------------------------------------------- the emulator


class Emulator:
    """A Drive v3 server on 127.0.0.1 in a daemon thread.

    ``data_dir`` keeps metadata and blobs across restarts; without it a private
    temp dir is used and removed on :meth:`stop`.
    """

    def __init__(self, token: str = "demo", *, data_dir: Optional[Union[str, Path]] = None,
                 host: str = "127.0.0.1", port: int = 0):
        self.token = token
        self.host = host
        self.port = port
        self._owned_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(
            tempfile.mkdtemp(prefix="drivesync-emulator-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.state = DriveState(self.data_dir, persistent=not self._owned_dir)
        self.config = Config()
        self.faults = FaultPlan()
        self.bucket = WriteBucket(None, self.config.write_burst)
        self.api = Api(self)
        self._counters: Dict[str, Any] = {}
        self._counter_lock = threading.Lock()
        self._reset_counters()
        self.url: Optional[str] = None
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Start serving; returns the base URL (``http://127.0.0.1:PORT/``)."""
        if self._server is not None:
            return self.url or ""
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_port
        self.url = f"http://{self.host}:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="drivesync-emulator", daemon=True)
        self._thread.start()
        log.info("emulator serving at %s (data in %s)", self.url, self.data_dir)
        return self.url

    def stop(self) -> None:
        """Stop serving, close open connections, save state (or remove the temp dir)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.api.clear_sessions()
        self.state.close()
        if self._owned_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ knobs

    def reset(self) -> None:
        """Clear files, sessions, faults, limits, knobs and counters."""
        self.api.clear_sessions()
        self.state.reset()
        self.config = Config()
        self.faults = FaultPlan()
        self.bucket = WriteBucket(None, self.config.write_burst)
        self._reset_counters()

    def configure(self, **knobs: Any) -> Dict[str, Any]:
        """Change some knobs (see :class:`Config`); the others keep their values."""
        unknown = sorted(set(knobs) - set(Config.names()))
        if unknown:
            raise ValueError(f"unknown emulator settings {unknown}; known: {Config.names()}")
        if "fault_kinds" in knobs:
            knobs["fault_kinds"] = tuple(knobs["fault_kinds"] or ())
        cfg = replace(self.config, **knobs)
        cfg.validate()
        self.config = cfg
        if "write_rate" in knobs or "write_burst" in knobs:
            self.bucket = WriteBucket(cfg.write_rate, cfg.write_burst)
        with self.faults.lock:
            self.faults.fail_rate = cfg.fail_rate
            self.faults.kinds = cfg.fault_kinds
            if "seed" in knobs:
                self.faults.rng = random.Random(cfg.seed)
        with self.state.lock:
            self.state.quota_limit = cfg.quota_limit
            self.state.max_children = cfg.max_children
        return self.settings()

    def settings(self) -> Dict[str, Any]:
        return {k: getattr(self.config, k) for k in Config.names()}

    def inject(self, kind: str, count: int = 1, method: Optional[str] = None,
               path_contains: Optional[str] = None) -> None:
        """Make the next ``count`` matching API requests fail with ``kind``."""
        self.faults.inject(kind, count, method, path_contains)

    @property
    def counters(self) -> Dict[str, Any]:
        with self._counter_lock:
            snap = dict(self._counters)
            snap["ops"] = dict(self._counters["ops"])
            snap["methods"] = dict(self._counters["methods"])
            return snap

    def _reset_counters(self) -> None:
        with self._counter_lock:
            self._counters = {k: 0 for k in COUNTER_KEYS}
            self._counters["ops"] = {}
            self._counters["methods"] = {}

    def _count(self, key: str, n: int = 1, *, op: Optional[str] = None,
               method: Optional[str] = None) -> None:
        with self._counter_lock:
            self._counters[key] = self._counters.get(key, 0) + n
            if op is not None:
                self._counters["ops"][op] = self._counters["ops"].get(op, 0) + 1
            if method is not None:
                self._counters["methods"][method] = self._counters["methods"].get(method, 0) + 1

    # ------------------------------------------------------------------ control plane

    def _control(self, req: Request) -> Response:
        self._count("control")
        action = req.path[len("_emulator/"):].strip("/")
        try:
            if action == "reset" and req.method == "POST":
                self.reset()
                return json_response({"ok": True})
            if action == "configure" and req.method == "POST":
                return json_response(self.configure(**req.json()))
            if action == "inject" and req.method == "POST":
                self.inject(**req.json())
                return json_response({"ok": True, "pending": self.faults.pending()})
            if action == "counters" and req.method == "GET":
                return json_response(self.counters)
            if action == "files" and req.method == "GET":
                return json_response(self.state.all_files())
            if action == "settings" and req.method == "GET":
                return json_response(self.settings())
        except (TypeError, ValueError, ApiError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"error": f"no control action {req.method} {action}"}, 404)
