"""Stage a dataset from the Remote onto the runtime's local disk, once per runtime.

Reading tens of thousands of small files through the Drive mount is what made
training slow; :func:`drivesync.sync.pull` copies (and unpacks packed shards,
verifying every md5) onto local disk. A small marker file remembers what was
staged, so running the same cell again in the same runtime costs one listing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from ..config import Settings
from ..errors import PartialFailure
from ..progress import NULL_PROGRESS, Progress
from ..remotes.base import Remote

log = logging.getLogger(__name__)

MARKER = ".drivesync-staged.json"
MARKER_FORMAT = "drivesync-staged/1"


@dataclass(frozen=True)
class StageResult:
    dest: Path
    skipped: bool
    digest: str
    files: int = 0           # plain files copied or already in place
    bytes: int = 0
    detail: Any = None  # the SyncResult of the pull, when one ran
    shards: int = 0     # packed shards (tar + manifest) unpacked


def listing_digest(remote: Remote, path: str = "") -> tuple[str, int]:
    """A digest of every file's path, size and md5 below ``path`` (and the file count).

    Packed shards are covered by their tar's md5 and their ``.json`` manifest,
    so any change on the Remote changes the digest.
    """
    h = hashlib.sha256()
    count = 0
    rows = sorted((e.path, e.size, e.md5 or "") for e in remote.walk(path) if not e.is_dir)
    for row in rows:
        h.update(json.dumps(row).encode())
        count += 1
    return h.hexdigest(), count


def read_marker(dest: Union[str, Path]) -> Optional[dict]:
    p = Path(dest) / MARKER
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == MARKER_FORMAT else None


def stage_dataset(remote: Remote, dest: Union[str, Path], *, path: str = "",
                  jobs: int = Settings.jobs, progress: Progress = NULL_PROGRESS,
                  force: bool = False) -> StageResult:
    """Pull ``path`` into ``dest`` (unpacking packed shards) unless already staged."""
    from ..sync import pull  # the sync package owns copying, unpacking and md5 checks

    dest = Path(dest)
    digest, count = listing_digest(remote, path)
    marker = read_marker(dest)
    if not force and marker and marker.get("digest") == digest and marker.get("source") == (
            f"{remote.address}/{path}".rstrip("/")):
        log.info("dataset already staged in %s (%d remote files unchanged)", dest, count)
        return StageResult(dest=dest, skipped=True, digest=digest, files=marker.get("files", 0),
                           bytes=marker.get("bytes", 0), shards=marker.get("shards", 0))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).unlink(missing_ok=True)  # a half-finished stage is never "staged"
    result = pull(remote, dest, path=path, jobs=jobs, unpack=True, progress=progress)
    if result.failed or result.problems:
        shown = "; ".join(f"{where}: {why}" for where, why in result.problems[:5])
        raise PartialFailure(f"staging {remote.address}/{path} into {dest}: "
                             f"{max(result.failed, len(result.problems))} item(s) failed "
                             f"({shown}); re-run to retry, nothing was marked staged")
    files = result.downloaded + result.skipped
    size = result.bytes
    doc = {"format": MARKER_FORMAT, "source": f"{remote.address}/{path}".rstrip("/"),
           "digest": digest, "files": files, "shards": result.unpacked, "bytes": size,
           "remote_files": count}
    tmp = dest / (MARKER + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(dest / MARKER)
    return StageResult(dest=dest, skipped=False, digest=digest, files=files, bytes=size,
                       detail=result, shards=result.unpacked)
