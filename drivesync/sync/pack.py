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
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

from ..errors import DatasetError, DiskFull
from ..hashing import CHUNK
from ..localdisk import DISK, LocalDisk, is_disk_full
from ..progress import human_bytes
from ..types import temp_name

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
               on_member: Optional[Callable[[str, str], None]] = None,
               disk: LocalDisk = DISK) -> list[tuple[str, str]]:
    """:func:`unpack_stream` of the tar file at ``tar_path``."""
    with open(tar_path, "rb") as f:
        return unpack_stream(f, manifest, dest_dir, on_bytes=on_bytes, on_member=on_member,
                             disk=disk)


def unpack_stream(source: BinaryIO, manifest: Manifest, dest_dir: Union[str, Path], *,
                  on_bytes: Optional[Callable[[int], None]] = None,
                  on_member: Optional[Callable[[str, str], None]] = None,
                  disk: LocalDisk = DISK) -> list[tuple[str, str]]:
    """Unpack a tar read from ``source`` (e.g. as it downloads) into ``dest_dir``.

    Members are checked against the manifest (size and md5) and written into a
    hidden staging folder beside ``dest_dir`` while the whole stream is hashed;
    they are moved into ``dest_dir`` only when the archive's size and md5 match
    the manifest too. So a bad, truncated or tampered archive never leaves a
    file that looks valid, and the tar is never written to disk whole and read
    back. Returns problems as (member, reason) (member "" for the archive);
    links, devices, unsafe names and members the manifest does not list are
    refused. ``on_member(path, md5)`` is told about each verified file placed.
    A full disk raises :class:`DiskFull` and leaves nothing staged behind.
    """
    dest_dir = str(dest_dir)
    want = {m.name: m for m in manifest.members}
    problems: list[tuple[str, str]] = []
    stage = os.path.join(os.path.dirname(os.path.abspath(dest_dir)),
                         temp_name("unpack:" + os.path.basename(os.path.abspath(dest_dir))))
    _remove_tree(stage)  # left by an interrupted run: it is never resumed
    os.mkdir(stage, 0o700)
    reader = _HashingReader(source)
    try:
        staged, seen = _stage_members(reader, want, stage, problems, on_bytes=on_bytes,
                                      disk=disk)
        while reader.read(CHUNK):  # the end blocks after the last member count too
            pass
        got = reader.h.hexdigest()
        if reader.n != manifest.tar_size or got != manifest.tar_md5:
            problems.append(("", f"the archive's size/md5 {reader.n}/{got} differ from the "
                                 f"manifest's {manifest.tar_size}/{manifest.tar_md5}; "
                                 "nothing of it was unpacked"))
            return problems
        _land(staged, stage, dest_dir, problems, on_member=on_member)
    except OSError as exc:
        if is_disk_full(exc):
            free = disk.free_bytes(dest_dir)
            raise DiskFull(f"{dest_dir}: no space left on its disk while unpacking shard "
                           f"{manifest.shard} (needed {human_bytes(manifest.tar_size)}, "
                           f"{human_bytes(free)} free); the staged part was removed: free "
                           "some space and re-run") from exc
        raise
    finally:
        _remove_tree(stage)
    for name in sorted(set(want) - seen):
        if not any(p[0] == name for p in problems):
            problems.append((name, "listed in the manifest but missing from the archive"))
    return problems


def _stage_members(reader: BinaryIO, want: dict[str, Member], stage: str,
                   problems: list[tuple[str, str]], *,
                   on_bytes: Optional[Callable[[int], None]], disk: LocalDisk
                   ) -> tuple[list[tuple[list[str], str]], set[str]]:
    """Read the tar from ``reader`` (streamed) and write each member the manifest
    lists into ``stage``, checked by size and md5: (safe path parts, md5) of each
    staged member, and the manifest names staged. Every refused member is added
    to ``problems``."""
    from .names import ensure_dir, safe_part

    staged: list[tuple[list[str], str]] = []
    seen: set[str] = set()
    with tarfile.open(fileobj=reader, mode="r|", bufsize=CHUNK,  # type: ignore[call-overload]
                      encoding="utf-8") as tar:
        for ti in tar:
            name, refused = _member_name(ti, want, seen)
            if refused:
                problems.append((name, refused))
                continue
            parts = [safe_part(p) for p in name.split("/")]
            try:
                staged_path = os.path.join(ensure_dir(stage, parts[:-1]), parts[-1])
            except ValueError as exc:  # "a" and "a/b" both in the archive
                problems.append((name, str(exc)))
                continue
            src = tar.extractfile(ti)
            assert src is not None
            m = want[name]
            n, md5 = _copy_hashed(src, disk.open_new(staged_path), on_bytes)
            if n != m.size or md5 != m.md5:
                os.unlink(staged_path)
                problems.append((name, f"size/md5 {n}/{md5} differ from the "
                                       f"manifest's {m.size}/{m.md5}"))
                continue
            staged.append((parts, m.md5 or ""))
            seen.add(name)
    return staged, seen


def _member_name(ti: tarfile.TarInfo, want: dict[str, Member], seen: set[str]
                 ) -> tuple[str, str]:
    """(the member's checked name, why it is refused or "")."""
    try:
        name = check_member_name(ti.name)
    except DatasetError as exc:
        return ti.name, str(exc)
    if not ti.isreg():
        return name, "not a regular file (links and devices are refused)"
    if name not in want:
        return name, "not listed in the manifest"
    if name in seen:
        return name, "appears twice in the archive"
    return name, ""


def _land(staged: list[tuple[list[str], str]], stage: str, dest_dir: str,
          problems: list[tuple[str, str]], *,
          on_member: Optional[Callable[[str, str], None]]) -> None:
    """Move the verified members from ``stage`` into ``dest_dir`` (the archive matched
    its manifest), never outside it and never over a folder."""
    from .names import ensure_dir, inside

    for parts, md5 in staged:
        name = "/".join(parts)
        try:
            folder = ensure_dir(dest_dir, parts[:-1])
        except ValueError as exc:
            problems.append((name, f"would be written outside the target folder ({exc})"))
            continue
        final = os.path.join(folder, parts[-1])
        if not inside(dest_dir, os.path.dirname(final)) or os.path.islink(final):
            problems.append((name, "would be written outside the target folder"))
            continue
        if os.path.isdir(final):
            problems.append((name, "a folder is in the way"))
            continue
        os.replace(os.path.join(stage, *parts), final)
        if on_member is not None:
            on_member(final, md5)


def _copy_hashed(src: BinaryIO, out: BinaryIO,
                 on_bytes: Optional[Callable[[int], None]]) -> tuple[int, str]:
    """Copy ``src`` into ``out`` and close it; (bytes, md5) of what was written."""
    h = hashlib.md5()
    n = 0
    with out:
        while True:
            block = src.read(CHUNK)
            if not block:
                break
            out.write(block)
            h.update(block)
            n += len(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return n, h.hexdigest()


def _remove_tree(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)
