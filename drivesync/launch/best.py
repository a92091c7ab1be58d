"""Keep the remote ``_best`` checkpoint the best one, across restarts.

darknet forgets its best mAP when it restarts, so after a resume it writes a
worse ``_best.weights`` ("New best mAP!" against its own fresh start). The mAP
each mirrored best file had is recorded beside it on the remote, in a small
sidecar ``.drivesync-best-<NAME>.json`` (hidden from listings; written through
the Remote interface, so it works on Drive and on a folder alike) holding the
file's md5 and its metric; a new best replaces the remote one only when its
metric is higher. Ultralytics' ``best.pt`` carries ``best_fitness`` in its
data.pkl: the same rule applies with that number.

The sidecar's content comes from the remote and is untrusted: anything that
is not the expected small JSON object counts as "no record".
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import DriveSyncError, NotFound
from ..remotes.base import Remote
from ..types import INTERNAL_PREFIX, Entry, join

log = logging.getLogger(__name__)

SIDECAR_PREFIX = INTERNAL_PREFIX + "-best-"
_MAX_SIDECAR = 4096


def is_best_name(name: str) -> bool:
    """``yolo_best.weights`` / ``best.pt``: the files a trainer rewrites on a new best."""
    low = name.lower()
    stem = low.rsplit(".", 1)[0]
    return stem == "best" or stem.endswith("_best")


def sidecar_name(name: str) -> str:
    return f"{SIDECAR_PREFIX}{name}.json"


@dataclass(frozen=True)
class BestRecord:
    name: str
    md5: str
    metric: float
    what: str  # "mAP@0.50" / "best_fitness"

    def describe(self) -> str:
        return f"{self.what} {self.metric:.6g}"


def read_record(remote: Remote, folder: str, name: str) -> Optional[BestRecord]:
    """The recorded metric of remote ``folder/name``, or None (no record, or junk)."""
    try:
        entries = [e for e in remote.list_internal(folder) if e.name == sidecar_name(name)]
    except (NotFound, NotImplementedError):
        return None
    entries.sort(key=lambda e: (e.modified, e.id), reverse=True)
    for e in entries[:1]:
        if e.size > _MAX_SIDECAR:
            return None
        try:
            _entry, reader = remote.open_read(e)
            try:
                doc = json.loads(reader.read(_MAX_SIDECAR + 1).decode("utf-8"))
            finally:
                reader.close()
        except (DriveSyncError, ValueError, UnicodeDecodeError, OSError):
            return None
        if not isinstance(doc, dict):
            return None
        metric, md5, what = doc.get("metric"), doc.get("md5"), doc.get("what", "metric")
        if isinstance(metric, (int, float)) and metric == metric and isinstance(md5, str) \
                and isinstance(what, str):
            return BestRecord(name=name, md5=md5[:64], metric=float(metric), what=what[:40])
    return None


def write_record(remote: Remote, folder: str, record: BestRecord) -> None:
    """Upload the sidecar anew, then remove older copies of it (never in place)."""
    path = join(folder, sidecar_name(record.name))
    try:
        old = [e for e in remote.list_internal(folder) if e.name == sidecar_name(record.name)]
    except (NotFound, NotImplementedError):
        old = []
    doc = {"format": "drivesync-best/1", "name": record.name, "md5": record.md5,
           "metric": record.metric, "what": record.what}
    with tempfile.TemporaryDirectory(prefix="drivesync-best-") as tmp:
        src = Path(tmp) / "best.json"
        src.write_text(json.dumps(doc), encoding="utf-8")
        new = remote.upload(src, path)
    for e in old:
        if e.id != new.id:
            try:
                remote.delete(e, permanent=True)
            except NotFound:
                pass


def current_record(remote: Remote, folder: str, name: str,
                   on_remote: Optional[Entry]) -> Optional[BestRecord]:
    """The record, only if it belongs to the very file now on the remote (same md5)."""
    if on_remote is None:
        return None
    rec = read_record(remote, folder, name)
    if rec is None or (on_remote.md5 and rec.md5 != on_remote.md5):
        return None
    return rec


def pt_best_fitness(path: Path) -> Optional[float]:
    """``best_fitness`` from a torch checkpoint's data.pkl (read without torch)."""
    from .weights import peek_pt

    ckpt = peek_pt(path)
    value = ckpt.get("best_fitness") if isinstance(ckpt, dict) else None
    return float(value) if isinstance(value, (int, float)) and value == value else None
