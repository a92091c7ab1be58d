"""Sending a file's bytes to Drive: one multipart request for a small file, a
resumable session in chunks for a large one (or one whose last byte is CR).

Kept apart from drive.py, which names, verifies and places the file; here only
the bytes travel, every attempt through the remote's paced ``call``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from googleapiclient.http import MediaFileUpload

from ..errors import NotFound
from ..progress import Progress

log = logging.getLogger(__name__)

SESSION_RESTARTS = 3           # new resumable sessions after the old one expired

#: the remote's paced call: ``call(fn, what=...)`` runs ``fn`` with retries
Call = Callable[..., Any]


class ChunkedFileUpload(MediaFileUpload):
    """A resumable file upload whose chunks are sent as bytes, not a stream.

    httplib2 silently re-sends a request once when the server closes the
    connection before answering; with a stream body the second send would be
    empty. Bytes can be sent twice. Memory is one chunk, never the whole file.
    """

    def has_stream(self) -> bool:
        return False


def send_file(service: Callable[[], Any], call: Call, source: Path, body: dict, *,
              mimetype: str, fields: str, size: int, threshold: int, chunk: int, what: str,
              progress: Progress, on_restart: Callable[[], None]) -> dict:
    """files.create with ``source``'s bytes; the new file's metadata (``fields``)."""
    if size <= threshold and not ends_with_cr(source):
        meta = _multipart(service, call, source, body, mimetype=mimetype, fields=fields,
                          what=what)
        progress.on_progress(bytes=size)
        return meta
    return _resumable(service, call, source, body, mimetype=mimetype, fields=fields,
                      chunk=chunk, what=what, progress=progress, on_restart=on_restart)


def _multipart(service: Callable[[], Any], call: Call, source: Path, body: dict, *,
               mimetype: str, fields: str, what: str) -> dict:
    def attempt() -> dict:
        media = MediaFileUpload(str(source), mimetype=mimetype, resumable=False)
        try:
            return service().files().create(
                body=body, media_body=media, fields=fields,
                supportsAllDrives=True).execute(num_retries=0)
        finally:
            media.stream().close()
    return call(attempt, what=what)


def _resumable(service: Callable[[], Any], call: Call, source: Path, body: dict, *,
               mimetype: str, fields: str, chunk: int, what: str, progress: Progress,
               on_restart: Callable[[], None]) -> dict:
    """Chunked upload; after a failed chunk the same request object asks the
    session how much arrived (PUT bytes */N) and resumes from there."""
    media = ChunkedFileUpload(str(source), mimetype=mimetype, chunksize=chunk, resumable=True)
    try:
        request = service().files().create(body=body, media_body=media, fields=fields,
                                           supportsAllDrives=True)
        sent, restarts = 0, 0
        while True:
            try:
                status, done = call(lambda: request.next_chunk(num_retries=0), what=what)
            except NotFound:
                if request.resumable_uri is None or restarts >= SESSION_RESTARTS:
                    raise
                restarts += 1
                log.info("%s: the upload session expired; starting a new one", what)
                on_restart()
                request.resumable_uri = None
                request.resumable_progress = 0
                request._in_error_state = False
                continue
            now = status.resumable_progress if status is not None else media.size()
            if now > sent:
                progress.on_progress(bytes=now - sent)
                sent = now
            if done is not None:
                return done
    finally:
        media.stream().close()


def ends_with_cr(source: Path) -> bool:
    """The client frames multipart bodies with bare LF; a server that expects CRLF
    framing would eat a final 0x0D. Such files (1 in 256) go resumable instead,
    where the bytes are sent unframed."""
    with open(source, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\r"
