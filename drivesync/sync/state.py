"""What a push remembers between runs besides file md5s: built shard tars.

The tar of a shard is deterministic, so its md5 follows from the members'
(name, size, md5). Remembering that mapping lets a packed re-push of an
unchanged dataset compare with the remote listing without rebuilding any tar.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Optional, Union


class PackState:
    """members_key -> (tar_size, tar_md5); ``path=None`` keeps it in memory."""

    def __init__(self, path: Optional[Union[str, Path]] = None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False,
                                   timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS packs (key TEXT PRIMARY KEY,"
                             " tar_size INTEGER, tar_md5 TEXT)")
            self._db.commit()

    def get(self, key: str) -> Optional[tuple[int, str]]:
        with self._lock:
            row = self._db.execute("SELECT tar_size, tar_md5 FROM packs WHERE key=?",
                                   (key,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def put(self, key: str, tar_size: int, tar_md5: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO packs VALUES (?,?,?)",
                             (key, tar_size, tar_md5))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
