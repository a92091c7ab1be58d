"""The wire format: request and response objects, JSON bodies, fields masks, MIME parts.

Independent of sockets and of the routes, so the HTTP server, the batch
endpoint (whose parts are requests too) and the handlers share one notion of
a request and an answer.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple, Union

from . import errors
from .errors import ApiError
from .query import FILE_SCHEMA, check_fields, parse_fields

IO_CHUNK = 64 * 1024
DEFAULT_FILE_FIELDS = "kind,id,name,mimeType"
DEFAULT_LIST_FIELDS = "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)"
JSON_TYPE = "application/json; charset=UTF-8"

Part = Tuple[Dict[str, str], bytes]


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
        """The JSON object body; an empty body or ``null`` is no metadata (``{}``)."""
        raw = self.body.read_all()
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except ValueError:
            raise errors.bad_request("Invalid JSON payload received.", reason="parseError"
                                     ) from None
        if doc is None:  # rclone's move: PATCH ?addParents=..&removeParents=.. with null
            return {}
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
    return Response(status, [("Content-Type", JSON_TYPE)], json.dumps(doc).encode())


def error_response(err: ApiError) -> Response:
    return Response(err.code, [("Content-Type", JSON_TYPE)], err.body())


def reason_phrase(status: int) -> str:
    if status == 308:
        return "Resume Incomplete"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def file_mask(query: Dict[str, str]) -> Any:
    """The checked ``fields`` mask of a request that answers with one file."""
    return check_fields(parse_fields(query.get("fields") or DEFAULT_FILE_FIELDS), FILE_SCHEMA)


def query_dict(qs: str) -> Dict[str, str]:
    return {k: v[-1] for k, v in urllib.parse.parse_qs(qs, keep_blank_values=True).items()}


def parse_range(value: Optional[str], size: int) -> Optional[Tuple[int, int]]:
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


def header_param(header: str, name: str) -> Optional[str]:
    for piece in header.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


def body_parts(req: Request, kind: str, refusal: str) -> List[Part]:
    """The parts of a ``kind`` multipart body; 400 ``refusal`` for any other body."""
    ctype = req.headers.get("content-type", "")
    boundary = header_param(ctype, "boundary")
    if not ctype.startswith(kind) or not boundary:
        raise errors.bad_request(refusal)
    return split_multipart(req.body.read_all(), boundary.encode())


def split_multipart(raw: bytes, boundary: bytes) -> List[Part]:
    """Split a MIME multipart body; the line break before a delimiter belongs to it.

    The client's email generator writes LF line breaks, others write CRLF; the
    first delimiter line tells which, so a part whose bytes end in ``\r`` keeps it.
    """
    delim = b"--" + boundary
    parts: List[Part] = []
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
        parts.append((_part_headers(head), body))
        pos = nxt + len(nl)
    return parts


def _part_headers(head: bytes) -> Dict[str, str]:
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
    return headers
