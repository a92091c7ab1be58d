"""The one route table: each call's op name, methods, path pattern and handler together.

The paths are the ones the packaged discovery document produces once its
``rootUrl`` points at the emulator. A pattern segment ``{name}`` matches one
path segment and is passed to the handler as the keyword ``name``; the first
route that matches wins, so literal paths come before patterns that would
also match them (``files/generateIds`` before ``files/{file_id}``).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from . import batch, drives, handlers, permissions, uploads
from .wire import Request, Response

Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    op: str                         # the counter name, as the API method is called
    methods: Tuple[str, ...]
    pattern: str
    handler: Handler
    needs: Optional[str] = None     # a query parameter the request must carry
    checks_mask: bool = False       # a bad ``fields`` mask is refused before anything changes

    def match(self, method: str, parts: List[str], query: Dict[str, str]
              ) -> Optional[Dict[str, str]]:
        if method not in self.methods or (self.needs and self.needs not in query):
            return None
        pattern = self.pattern.split("/")
        if len(pattern) != len(parts):
            return None
        params: Dict[str, str] = {}
        for want, got in zip(pattern, parts):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


GET, POST, PATCH, PUT, DELETE = ("GET",), ("POST",), ("PATCH",), ("PUT",), ("DELETE",)
FILES = "drive/v3/files"
UPLOADS = "upload/drive/v3/files"
PERMISSIONS = FILES + "/{file_id}/permissions"
PERMISSION = PERMISSIONS + "/{permission_id}"

ROUTES: List[Route] = [
    Route("batch", POST, "batch/drive/v3", batch.batch),
    # Chunks go to the session URI with PUT (Google's client) or POST (rclone's).
    Route("upload.chunk", PUT + POST, UPLOADS, uploads.upload_chunk, needs="upload_id"),
    Route("upload.chunk", PUT + POST, UPLOADS + "/{file_id}", uploads.upload_chunk,
          needs="upload_id"),
    Route("files.create", POST, UPLOADS, uploads.upload, checks_mask=True),
    Route("files.update", PATCH + PUT, UPLOADS + "/{file_id}", uploads.upload, checks_mask=True),
    Route("about.get", GET, "drive/v3/about", handlers.about),
    Route("files.list", GET, FILES, handlers.list_files),
    Route("files.create", POST, FILES, handlers.create, checks_mask=True),
    Route("files.generateIds", GET, FILES + "/generateIds", handlers.generate_ids),
    Route("files.emptyTrash", DELETE, FILES + "/trash", handlers.empty_trash),
    Route("files.get", GET, FILES + "/{file_id}", handlers.get, checks_mask=True),
    Route("files.update", PATCH + PUT, FILES + "/{file_id}", handlers.update, checks_mask=True),
    Route("files.delete", DELETE, FILES + "/{file_id}", handlers.delete),
    Route("files.copy", POST, FILES + "/{file_id}/copy", handlers.copy, checks_mask=True),
    Route("drives.list", GET, "drive/v3/drives", drives.list_drives),
    Route("drives.create", POST, "drive/v3/drives", drives.create_drive),
    Route("drives.get", GET, "drive/v3/drives/{drive_id}", drives.get_drive),
    Route("permissions.create", POST, PERMISSIONS, permissions.create),
    Route("permissions.list", GET, PERMISSIONS, permissions.list_permissions),
    Route("permissions.get", GET, PERMISSION, permissions.get),
    Route("permissions.update", PATCH, PERMISSION, permissions.update),
    Route("permissions.delete", DELETE, PERMISSION, permissions.delete),
]


def path_parts(path: str) -> List[str]:
    """The unquoted segments; ``resumable/upload/...`` is the same as ``upload/...``."""
    path = path.strip("/")
    if path.startswith("resumable/upload/"):
        path = path[len("resumable/"):]
    return [urllib.parse.unquote(p) for p in path.split("/") if p]


def match(req: Request) -> Tuple[Optional[Route], Dict[str, str]]:
    """The route for ``req`` and its path parameters; (None, {}) when none fits."""
    parts = path_parts(req.path)
    for route in ROUTES:
        params = route.match(req.method, parts, req.query)
        if params is not None:
            return route, params
    return None, {}
