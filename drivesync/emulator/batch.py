"""``POST batch/drive/v3``: a multipart/mixed body of HTTP requests, answered part by part.

Each part becomes an inner :class:`~.wire.Request` that goes through the same
entry as a top-level call (authorization, faults, routes), so a batch behaves
as its calls would one by one, minus media.
"""

from __future__ import annotations

import email.parser
import email.policy
import urllib.parse
import uuid
from typing import TYPE_CHECKING, List

from . import errors
from .errors import ApiError
from .wire import (
    Body,
    Request,
    Response,
    body_parts,
    error_response,
    query_dict,
    reason_phrase,
)

if TYPE_CHECKING:
    from .api import Api

MAX_BATCH = 100


def batch(api: Api, req: Request) -> Response:
    if req.inner:  # no batch inside a batch
        raise ApiError(404, "notFound", f"Not Found: {req.method} /{req.path}")
    parts = body_parts(req, "multipart/mixed", "A batch request needs a multipart/mixed body.")
    if len(parts) > MAX_BATCH:
        raise errors.bad_request(f"A batch may hold at most {MAX_BATCH} calls, "
                                 f"got {len(parts)}.", reason="batchSizeTooLarge")
    out_boundary = "batch_" + uuid.uuid4().hex
    chunks: List[bytes] = []
    for headers, payload in parts:
        resp = _inner(api, req, payload)
        chunks.append(_render_part(out_boundary, headers.get("content-id", ""), resp))
    chunks.append(f"--{out_boundary}--\r\n".encode())
    return Response(200, [("Content-Type", f"multipart/mixed; boundary={out_boundary}")],
                    b"".join(chunks))


def _render_part(boundary: str, content_id: str, resp: Response) -> bytes:
    head = f"HTTP/1.1 {resp.status} {reason_phrase(resp.status)}\r\n"
    for k, v in resp.headers:
        head += f"{k}: {v}\r\n"
    head += f"Content-Length: {len(resp.body)}\r\n\r\n"
    rid = content_id.strip()
    if rid.startswith("<") and rid.endswith(">"):
        rid = f"<response-{rid[1:-1]}>"
    return (f"--{boundary}\r\nContent-Type: application/http\r\n"
            f"Content-ID: {rid}\r\n\r\n".encode() + head.encode() + resp.body + b"\r\n")


def _inner(api: Api, outer: Request, payload: bytes) -> Response:
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
                    query=query_dict(url.query), headers=headers,
                    body=Body(body_bytes, len(body_bytes)), base_url=outer.base_url,
                    inner=True)
    resp = api.handle(inner)
    if resp.stream is not None:
        resp.stream.close()
    return resp
