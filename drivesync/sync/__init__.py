"""push, pull and dedupe between a local folder and a Remote (Drive or a folder)."""

from __future__ import annotations

from .dedupe import dedupe
from .options import SyncOptions
from .pull import pull
from .push import push
from .result import DedupeResult, SyncResult

__all__ = ["push", "pull", "dedupe", "SyncOptions", "SyncResult", "DedupeResult"]
