"""The temporary file a download streams into, shared by every Remote.

Bytes go to a hidden sibling of the destination (resumed when an interrupted
run left one), are hashed as they are written, and the file is renamed onto the
destination only when the md5 matches: a half-written or corrupt destination
never exists, and a bad partial is thrown away.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO, Optional, Union

from ..errors import ChecksumMismatch
from ..hashing import CHUNK
from ..types import temp_name


class PartialDownload:
    """``with PartialDownload(dest, size=...) as part: part.write(...)`` then ``commit``."""

    def __init__(self, dest: Union[str, Path], *, size: int):
        self.dest = Path(dest)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dest.parent / temp_name(self.dest.name)
        self.have = self.tmp.stat().st_size if self.tmp.exists() else 0
        if self.have > size:  # not a prefix of this file: start again
            self.tmp.unlink()
            self.have = 0
        self._digest = hashlib.md5()
        if self.have:  # resuming: the bytes already on disk count towards the md5
            with open(self.tmp, "rb") as part:
                for block in iter(lambda: part.read(CHUNK), b""):
                    self._digest.update(block)
        self._out: Optional[BinaryIO] = None

    def __enter__(self) -> PartialDownload:
        self._out = open(self.tmp, "ab")
        return self

    def write(self, data: bytes) -> None:
        assert self._out is not None, "use PartialDownload as a context manager"
        self._out.write(data)
        self._digest.update(data)

    def __exit__(self, *exc: object) -> None:
        if self._out is not None:
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()
            self._out = None

    def commit(self, expected_md5: Optional[str], *, label: str) -> None:
        """Rename onto the destination if the md5 matches; else drop the partial."""
        got = self._digest.hexdigest()
        if got != expected_md5:
            self.tmp.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{label}: downloaded md5 {got}, expected {expected_md5}")
        os.replace(self.tmp, self.dest)
