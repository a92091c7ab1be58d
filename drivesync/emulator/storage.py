"""The emulator's bytes and durability: content as one blob file each (written
to a temp file while hashed, renamed into place when whole) and the metadata
journal (a snapshot written atomically plus an append-only log replayed on start).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .records import FileRecord, SharedDrive


@dataclass
class Content:
    """Bytes already written to a blob file by :class:`BlobWriter`, not yet owned."""

    blob: str
    size: int
    md5: str
    mime_type: Optional[str] = None


class BlobStore:
    """Content bytes as one file per blob under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob("tmp-*"):  # uploads cut off by a crash
            stale.unlink(missing_ok=True)

    def path(self, blob: str) -> Path:
        return self.root / blob

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def delete(self, blob: Optional[str]) -> None:
        if blob:
            (self.root / blob).unlink(missing_ok=True)


class BlobWriter:
    """Streams bytes into a temp file, hashing as it goes."""

    def __init__(self, store: BlobStore):
        self.store = store
        self.blob = uuid.uuid4().hex
        self.tmp = store.root / f"tmp-{self.blob}"
        self.fh = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish/abort
        self.hasher = hashlib.md5()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.hasher.update(data)
        self.size += len(data)

    def finish(self, mime_type: Optional[str] = None) -> Content:
        self.fh.close()
        os.replace(self.tmp, self.store.root / self.blob)
        return Content(self.blob, self.size, self.hasher.hexdigest(), mime_type)

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)


class Journal:
    """Snapshot + append-only log of changed records under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.snapshot = root / "metadata.json"
        self.log_path = root / "journal.jsonl"
        self.entries = 0
        self.fh: Any = None

    def load(self) -> Tuple[Optional[dict], List[dict]]:
        snap = json.loads(self.snapshot.read_text()) if self.snapshot.exists() else None
        lines: List[dict] = []
        if self.log_path.exists():
            for line in self.log_path.read_text().splitlines():
                try:
                    lines.append(json.loads(line))
                except ValueError:  # a line cut off by a crash: the rest is lost anyway
                    break
        return snap, lines

    def replay(self) -> Optional[Tuple[Optional[str], Dict[str, FileRecord],
                                       Dict[str, SharedDrive]]]:
        """What the snapshot and the log after it describe: (root id or None when
        there is no snapshot, records by id in the order they were last written,
        shared drives); None when nothing was ever saved."""
        snap, lines = self.load()
        if snap is None and not lines:
            return None
        root_id: Optional[str] = None
        files: Dict[str, FileRecord] = {}
        drives: Dict[str, SharedDrive] = {}
        if snap is not None:
            for doc in snap["files"]:
                files[doc["id"]] = FileRecord.from_json(doc)
            root_id = snap["root_id"]
            for doc in snap.get("drives", []):
                drives[doc["id"]] = SharedDrive(**doc)
        for entry in lines:
            if "put" in entry:
                rec = FileRecord.from_json(entry["put"])
                files.pop(rec.id, None)   # a rewritten record moves to the end, as it was indexed
                files[rec.id] = rec
            elif "del" in entry:
                files.pop(entry["del"], None)
            elif "drive" in entry:
                drives[entry["drive"]["id"]] = SharedDrive(**entry["drive"])
        return root_id, files, drives

    def append(self, doc: dict) -> None:
        if self.fh is None:
            self.fh = open(self.log_path, "a")  # noqa: SIM115 - closed in close()
        self.fh.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self.fh.flush()
        self.entries += 1

    def write_snapshot(self, doc: dict) -> None:
        tmp = self.snapshot.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(doc, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.snapshot)
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        self.log_path.unlink(missing_ok=True)
        self.entries = 0

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
