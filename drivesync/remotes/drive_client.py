"""The Google client objects of one Drive remote, one set per thread.

httplib2 is not thread-safe, so each thread builds its own service (and, for
streamed downloads, its own requests session) on first use, from the packaged
discovery document; the credentials are loaded once, lazily. Kept apart from
drive.py, which says what each Remote operation asks Drive.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Optional

import google_auth_httplib2
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.http import build_http

from ..auth import get_credentials
from ..config import Settings
from ..types import Stats
from .drive_support import CountingHttp, cut_connections, proxy_for

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 60            # seconds without a byte before a request fails


class DriveClient:
    """This thread's ``drive`` service, ``files()`` resource and AuthorizedSession."""

    def __init__(self, settings: Settings, *, endpoint: str, credentials: Any, stats: Stats,
                 lock: threading.Lock):
        self.settings = settings
        self._credentials = credentials
        self._stats = stats
        self._lock = lock                       # the remote's: stats counters, these lists
        self._local = threading.local()
        self._https: list[Any] = []
        self._sessions: list[Any] = []          # AuthorizedSessions of streamed downloads
        self._doc: Optional[str] = None
        self.proxy = proxy_for(endpoint)
        if self.proxy is not None:  # host and port only: the URL may hold a password
            log.info("using the proxy %s:%s for %s (HTTPS_PROXY / HTTP_PROXY; NO_PROXY "
                     "lists hosts that bypass it)", self.proxy.proxy_host,
                     self.proxy.proxy_port, endpoint)

    def _creds(self) -> Any:
        if self._credentials is None:
            self._credentials = get_credentials(self.settings)
        return self._credentials

    def service(self) -> Any:
        service = getattr(self._local, "service", None)
        if service is None:
            raw = build_http()  # excludes 308 from redirects (resumable uploads use it)
            raw.timeout = SOCKET_TIMEOUT
            raw.proxy_info = self.proxy
            authed = google_auth_httplib2.AuthorizedHttp(self._creds(), http=raw)
            with self._lock:
                self._https.append(raw)
            service = build_from_document(self.discovery(),
                                          http=CountingHttp(authed, self._stats, self._lock))
            self._local.service = service
        return service

    def files(self) -> Any:
        """This thread's ``files()`` resource, built once: building one costs ~1 ms
        (a method object for each of its 16 methods), which counts per small file."""
        files = getattr(self._local, "files", None)
        if files is None:
            files = self._local.files = self.service().files()
        return files

    def session(self) -> Any:
        """This thread's AuthorizedSession (google.auth over requests): it streams a
        body, where httplib2 reads a whole answer into memory."""
        session = getattr(self._local, "session", None)
        if session is None:
            # imported here: requests costs ~0.2 s at startup, and most commands never download
            from google.auth.transport.requests import AuthorizedSession

            session = AuthorizedSession(self._creds())
            with self._lock:
                self._sessions.append(session)
            self._local.session = session
        return session

    def discovery(self) -> str:
        """The packaged Drive v3 document, pointed at ``api_endpoint`` when set.

        Setting rootUrl (not client_options) is what makes uploads and batches
        follow the endpoint too. No network discovery either way.
        """
        if self._doc is None:
            doc = json.loads(get_static_doc("drive", "v3"))
            if self.settings.api_endpoint:
                root = self.settings.api_endpoint.rstrip("/") + "/"
                doc["rootUrl"] = root
                doc["mtlsRootUrl"] = root
                doc["baseUrl"] = root + doc.get("servicePath", "drive/v3/")
            self._doc = json.dumps(doc)
        return self._doc

    def cut(self) -> None:
        """Shut the sockets of requests in flight (Ctrl-C, from another thread)."""
        with self._lock:
            https = list(self._https)
        cut_connections(https)

    def close(self) -> None:
        with self._lock:
            https, self._https = self._https, []
            sessions, self._sessions = self._sessions, []
        for http in https:
            http.close()
        for session in sessions:
            session.close()
        self._local = threading.local()
