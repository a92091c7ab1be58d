"""One uncompressed tar per shard folder, plus a JSON manifest beside it.

Drive accepts about 3 new files per second, so 30,000 small files take hours;
one archive per shard takes seconds. The tar is deterministic (sorted members,
mtime 0, uid/gid 0, mode 0644), so the same content always gives the same tar
bytes and md5, and an unchanged shard is recognised without re-reading it.

Layout: local ``X/NAME/000/`` <-> remote ``X/NAME/000.tar`` and
``X/NAME/000.tar.json`` = ``{"format": "drivesync-pack/1", "shard": "000",
"tar_size": N, "tar_md5": "...", "members": [{"name", "size", "md5"}]}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

from ..errors import DatasetError
from ..hashing import CHUNK
from ..types import TEMP_PREFIX

log = logging.getLogger(__name__)

FORMAT = "drivesync-pack/1"
TAR_SUFFIX = ".tar"
MANIFEST_SUFFIX = ".tar.json"


@dataclass(frozen=True)
class Member:
    name: str           # POSIX name relative to the shard folder
    size: int
    md5: Optional[str]  # None until known
    source: str = ""    # absolute local path when packing


@dataclass(frozen=True)
class Manifest:
    shard: str
    tar_size: int
    tar_md5: str
    members: tuple[Member, ...]

    def to_bytes(self) -> bytes:
        """Canonical bytes: equal manifests have equal md5s on Drive."""
        doc = {"format": FORMAT, "shard": self.shard, "tar_size": self.tar_size,
               "tar_md5": self.tar_md5,
               "members": [{"name": m.name, "size": m.size, "md5": m.md5}
                           for m in sorted(self.members, key=lambda m: m.name)]}
        return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")

    @property
    def md5(self) -> str:
        return hashlib.md5(self.to_bytes()).hexdigest()


def members_key(members: Union[list[Member], tuple[Member, ...]]) -> str:
    """A digest of (name, size, md5) of all members: the cache key of a built tar."""
    h = hashlib.md5()
    for m in sorted(members, key=lambda m: m.name):
        h.update(f"{m.name}\0{m.size}\0{m.md5}\n".encode())
    return h.hexdigest()


def parse_manifest(data: bytes, *, where: str = "manifest") -> Manifest:
    """Read a manifest; DatasetError naming the field when it is malformed."""
    try:
        doc: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DatasetError(f"{where}: field 'format' must be {FORMAT!r}")
    try:
        members = tuple(Member(name=str(m["name"]), size=int(m["size"]), md5=str(m["md5"]))
                        for m in doc["members"])
        return Manifest(shard=str(doc["shard"]), tar_size=int(doc["tar_size"]),
                        tar_md5=str(doc["tar_md5"]), members=members)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: missing or bad field {exc}") from exc


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti


class _HashingReader:
    """Reads a file while hashing it, so packing reads each member once."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.h = hashlib.md5()
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        block = self.f.read(size)
        self.h.update(block)
        self.n += len(block)
        return block


class _HashingWriter:
    def __init__(self, f: BinaryIO, on_bytes: Optional[Callable[[int], None]] = None):
        self.f = f
        self.h = hashlib.md5()
        self.n = 0
        self.on_bytes = on_bytes

    def write(self, data: bytes) -> int:
        self.f.write(data)
        self.h.update(data)
        self.n += len(data)
        return len(data)

    def tell(self) -> int:
        return self.n

    def flush(self) -> None:
        self.f.flush()


def tar_size(members: Union[list[Member], tuple[Member, ...]]) -> int:
    """The exact size :func:`write_tar` gives these members (headers, padding and
    end blocks included), known before building it: the byte total of progress."""
    n = 0
    for m in members:
        n += len(_tarinfo(m.name, m.size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        n += -(-m.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    n += 2 * tarfile.BLOCKSIZE
    return -(-n // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def write_tar(shard: str, members: list[Member], dest: Union[str, Path]) -> Manifest:
    """Stream the members into a deterministic tar at ``dest``; return its manifest.

    Member md5s in the manifest are those of the bytes actually packed.
    """
    done: list[Member] = []
    with open(dest, "wb") as raw:
        out = _HashingWriter(raw)
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                          encoding="utf-8") as tar:
            for m in sorted(members, key=lambda m: m.name):
                with open(m.source, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    reader = _HashingReader(f)
                    tar.addfile(_tarinfo(m.name, size), reader)  # type: ignore[arg-type]
                done.append(Member(name=m.name, size=size, md5=reader.h.hexdigest()))
        raw.flush()
        os.fsync(raw.fileno())
    return Manifest(shard=shard, tar_size=out.n, tar_md5=out.h.hexdigest(), members=tuple(done))


def check_member_name(name: str) -> str:
    """Refuse archive names that could leave the shard folder."""
    if (not name or name.startswith("/") or "\\" in name or "\x00" in name
            or any(p in ("", ".", "..") for p in name.split("/"))):
        raise DatasetError(f"archive member {name!r}: unsafe name")
    return posixpath.normpath(name)


def unpack_tar(tar_path: Union[str, Path], manifest: Manifest, dest_dir: Union[str, Path], *,
               on_bytes: Optional[Callable[[int], None]] = None,
               on_member: Optional[Callable[[str, str], None]] = None
               ) -> list[tuple[str, str]]:
    """Stream ``tar_path`` into ``dest_dir``, verifying each member against the manifest.

    Each member goes to a temporary sibling and is renamed into place only when
    its size and md5 match, so a bad or truncated archive never leaves a wrong
    file. Returns problems as (member, reason); links, devices, unsafe names and
    members the manifest does not list are refused. ``on_member(path, md5)`` is
    told about each verified file written.
    """
    from .names import ensure_dir, inside, safe_part

    dest_dir = str(dest_dir)
    want = {m.name: m for m in manifest.members}
    seen: set[str] = set()
    problems: list[tuple[str, str]] = []
    with tarfile.open(tar_path, mode="r|", encoding="utf-8") as tar:
        for ti in tar:
            try:
                name = check_member_name(ti.name)
            except DatasetError as exc:
                problems.append((ti.name, str(exc)))
                continue
            if not ti.isreg():
                problems.append((name, "not a regular file (links and devices are refused)"))
                continue
            m = want.get(name)
            if m is None:
                problems.append((name, "not listed in the manifest"))
                continue
            parts = [safe_part(p) for p in name.split("/")]
            folder = ensure_dir(dest_dir, parts[:-1])
            final = os.path.join(folder, parts[-1])
            if not inside(dest_dir, os.path.dirname(final)) or os.path.islink(final):
                problems.append((name, "would be written outside the target folder"))
                continue
            tmp = os.path.join(folder, TEMP_PREFIX + parts[-1])
            src = tar.extractfile(ti)
            assert src is not None
            h = hashlib.md5()
            n = 0
            with open(tmp, "wb") as out:
                while True:
                    block = src.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    n += len(block)
                    if on_bytes is not None:
                        on_bytes(len(block))
            if n != m.size or h.hexdigest() != m.md5:
                os.unlink(tmp)
                problems.append((name, f"size/md5 {n}/{h.hexdigest()} differ from the "
                                       f"manifest's {m.size}/{m.md5}"))
                continue
            os.replace(tmp, final)
            seen.add(name)
            if on_member is not None:
                on_member(final, m.md5 or "")
    for name in sorted(set(want) - seen):
        if not any(p[0] == name for p in problems):
            problems.append((name, "listed in the manifest but missing from the archive"))
    return problems
