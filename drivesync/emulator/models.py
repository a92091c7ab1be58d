"""The emulator's Drive: plain-Python state behind one lock, no HTTP.

Files live in a dict by id with a children index by parent id, so listing a
folder costs the folder, not the drive. Content bytes are blob files on disk
(never held in memory; storage.py), and replaced content is kept as a revision
that keeps counting against the quota, as Drive does. With a ``data_dir`` the
metadata is a JSON snapshot plus an append-only journal (storage.py) replayed on
start, so state survives a restart without rewriting everything per change. The
records themselves are in records.py.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import mimetypes
import re
import secrets
import threading
import time
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import errors
from .query import FOLDER_MIME, compile_query, format_time, parse_time, sort_records
from .records import (
    GOOGLE_APPS_PREFIX,
    SHORTCUT_MIME,
    FileRecord,
    Revision,
    SharedDrive,
    new_file_id,
    sharing_fields,
)
from .storage import BlobStore, Content, Journal

log = logging.getLogger(__name__)

EMPTY_MD5 = hashlib.md5(b"").hexdigest()
MAX_REVISIONS = 100
MAX_DRIVE_ITEMS = 400_000   # items one shared drive may hold (trashed ones included)
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{10,100}$")


class DriveState:
    """All files of one user's My Drive. Every public method takes the lock."""

    def __init__(self, root: Path, *, persistent: bool = False):
        self.lock = threading.RLock()
        self.blobs = BlobStore(root / "blobs")
        self.journal: Optional[Journal] = Journal(root) if persistent else None
        self.quota_limit: Optional[int] = None
        self.max_children = 500_000
        self.max_drive_items = MAX_DRIVE_ITEMS
        self._clear()
        if self.journal is not None:
            self._load()

    # ------------------------------------------------------------------ bookkeeping

    def _clear(self) -> None:
        self.files: Dict[str, FileRecord] = {}
        self.children: Dict[str, Dict[str, None]] = {}
        self.drives: Dict[str, SharedDrive] = {}
        self.drive_items: Dict[str, int] = {}   # drive id -> items in it (root excluded)
        self.seq = 0
        self.usage = 0
        self.root_id = "0A" + secrets.token_urlsafe(12)[:14] + "Uk9PVA"
        now = time.time()
        self.root = FileRecord(id=self.root_id, name="My Drive", mime_type=FOLDER_MIME,
                               parents=[], created=now, modified=now, seq=0)
        self.files[self.root_id] = self.root
        self.children[self.root_id] = {}

    def _load(self) -> None:
        assert self.journal is not None
        saved = self.journal.replay()
        if saved is None:
            self._snapshot()
            return
        root_id, files, drives = saved
        if root_id is not None:
            self.files = {}
            self.children = {}
            self.root_id = root_id
        for rec in files.values():
            self._index(rec)
        self.root = self.files[self.root_id]
        self.drives.update(drives)
        self.seq = max(r.seq for r in self.files.values())
        self.usage = sum(r.quota_bytes() for r in self.files.values() if r.drive_id is None)
        for r in self.files.values():
            if r.drive_id is not None and r.id != r.drive_id:
                self.drive_items[r.drive_id] = self.drive_items.get(r.drive_id, 0) + 1
        self._snapshot()

    def _index(self, rec: FileRecord) -> None:
        self.files[rec.id] = rec
        for p in rec.parents:
            self.children.setdefault(p, {})[rec.id] = None
        if rec.is_folder:
            self.children.setdefault(rec.id, {})

    def _unindex(self, rec: FileRecord) -> None:
        self.files.pop(rec.id, None)
        for p in rec.parents:
            self.children.get(p, {}).pop(rec.id, None)

    def _persist(self, rec: FileRecord) -> None:
        if self.journal is not None:
            self.journal.append({"put": rec.to_json()})
            self._maybe_compact()

    def _persist_delete(self, file_id: str) -> None:
        if self.journal is not None:
            self.journal.append({"del": file_id})
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        assert self.journal is not None
        if self.journal.entries > 2 * len(self.files) + 1000:
            self._snapshot()

    def _snapshot(self) -> None:
        if self.journal is not None:
            self.journal.write_snapshot({"root_id": self.root_id,
                                         "files": [r.to_json() for r in self.files.values()],
                                         "drives": [asdict(d) for d in self.drives.values()]})

    def close(self) -> None:
        with self.lock:
            if self.journal is not None:
                self._snapshot()
                self.journal.close()

    def reset(self) -> None:
        """Forget every file and its bytes; limits go back to their defaults."""
        with self.lock:
            for rec in self.files.values():
                self.blobs.delete(rec.blob)
                for rev in rec.revisions:
                    self.blobs.delete(rev.blob)
            self.quota_limit = None
            self.max_children = 500_000
            self.max_drive_items = MAX_DRIVE_ITEMS
            self._clear()
            self._snapshot()

    # ------------------------------------------------------------------ lookups

    def resolve(self, file_id: str) -> str:
        return self.root_id if file_id == "root" else file_id

    def get(self, file_id: str) -> FileRecord:
        with self.lock:
            rec = self.files.get(self.resolve(file_id))
            if rec is None:
                raise errors.not_found(file_id)
            return rec

    def open_content(self, file_id: str) -> Tuple[FileRecord, Optional[Any]]:
        """The record and an open binary handle (None for an empty file).

        Opened under the lock, so a concurrent delete cannot pull the blob away
        mid-download (an unlinked file stays readable through its handle).
        """
        with self.lock:
            rec = self.get(file_id)
            if not rec.has_content:
                raise errors.ApiError(
                    403, "fileNotDownloadable",
                    "Only files with binary content can be downloaded. Use Export with "
                    "Docs Editors files.", location="alt", location_type="parameter")
            fh = open(self.blobs.path(rec.blob), "rb") if rec.blob else None  # noqa: SIM115
            return rec, fh

    def list(self, q: Optional[str], *, order_by: Optional[str], page_size: int,
             page_token: Optional[str], corpus: str = "user"
             ) -> Tuple[List[FileRecord], Optional[str]]:
        """``corpus``: "user" (My Drive items only), "all" (every drive), or
        "drive:ID" (one shared drive's items), as the list handler read the flags."""
        query = compile_query(q, resolve=self.resolve)
        fingerprint = zlib.crc32(f"{q}|{order_by}|{corpus}".encode())
        in_corpus = _corpus_filter(corpus)
        offset = _decode_token(page_token, fingerprint) if page_token else 0
        with self.lock:
            if query.parent is not None:
                ids = self.children.get(query.parent, {})
                pool = [self.files[i] for i in ids]
            else:
                pool = [r for r in self.files.values() if r.id != self.root_id]
            hits = [r for r in pool if in_corpus(r) and r.id not in self.drives
                    and query.match(r)]
        hits = sort_records(hits, order_by)
        page = hits[offset:offset + page_size]
        end = offset + len(page)
        token = _encode_token(end, fingerprint) if end < len(hits) else None
        return page, token

    def all_files(self) -> List[dict]:
        with self.lock:
            recs = sorted((r for r in self.files.values()
                           if r.id != self.root_id and r.id not in self.drives),
                          key=lambda r: r.seq)
            return [self.render(r) for r in recs]

    def quota(self) -> dict:
        with self.lock:
            # the user's quota: shared drives' items belong to their drive, not to anyone
            trash = sum(r.quota_bytes() for r in self.files.values()
                        if r.trashed and r.drive_id is None)
            doc = {"usage": str(self.usage), "usageInDrive": str(self.usage),
                   "usageInDriveTrash": str(trash)}
            if self.quota_limit is not None:
                doc["limit"] = str(self.quota_limit)
            return doc

    def check_space(self, extra: int) -> None:
        """403 storageQuotaExceeded if ``extra`` more bytes would not fit."""
        with self.lock:
            if self.quota_limit is not None and self.usage + extra > self.quota_limit:
                raise errors.quota_exceeded()

    def render(self, rec: FileRecord) -> dict:
        """The full v3 file resource (the ``fields`` mask trims it)."""
        doc: Dict[str, Any] = {
            "kind": "drive#file", "id": rec.id, "name": rec.name, "mimeType": rec.mime_type,
            "starred": False, "trashed": rec.trashed, "explicitlyTrashed": rec.explicitly_trashed,
            "spaces": ["drive"], "version": str(rec.version),
            "createdTime": format_time(rec.created), "modifiedTime": format_time(rec.modified),
            "ownedByMe": True, "quotaBytesUsed": str(rec.quota_bytes()),
        }
        if rec.parents:
            doc["parents"] = list(rec.parents)
        if rec.drive_id is not None:
            doc["driveId"] = rec.drive_id
            doc["ownedByMe"] = False
        if rec.mime_type == SHORTCUT_MIME:
            doc["shortcutDetails"] = {"targetId": rec.target_id,
                                      "targetMimeType": rec.target_mime}
        doc.update(sharing_fields(rec))
        if rec.has_content and rec.size is not None:
            doc["size"] = str(rec.size)
            doc["md5Checksum"] = rec.md5
            doc["originalFilename"] = rec.name
            doc["headRevisionId"] = f"rev{len(rec.revisions) + 1}"
            if "." in rec.name.strip("."):
                doc["fileExtension"] = rec.name.rsplit(".", 1)[1]
                doc["fullFileExtension"] = rec.name.split(".", 1)[1] if not rec.name.startswith(
                    ".") else rec.name.rsplit(".", 1)[1]
        return doc

    # ------------------------------------------------------------------ writes

    def _check_parent(self, parent_id: str, *, adding: bool = True) -> str:
        pid = self.resolve(parent_id)
        parent = self.files.get(pid)
        if parent is None:
            raise errors.not_found(parent_id)
        if not parent.is_folder:
            raise errors.bad_request(f"The parent {parent_id} is not a folder.",
                                     location="parents")
        if adding and pid != self.root_id and len(self.children.get(pid, {})) >= self.max_children:
            raise errors.too_many_children()
        return pid

    def create(self, meta: dict, content: Optional[Content] = None) -> FileRecord:
        """files.create; ``content`` (already on disk) becomes the file's bytes."""
        with self.lock:
            try:
                return self._create(meta, content)
            except BaseException:
                if content is not None:
                    self.blobs.delete(content.blob)
                raise

    def _create(self, meta: dict, content: Optional[Content]) -> FileRecord:
        file_id = self._new_id(meta.get("id"))
        name = meta.get("name")
        if name is None:
            name = "Untitled"
        if not isinstance(name, str):
            raise errors.bad_request("Invalid value for name", location="name")
        pid, drive_id = self._new_parent(meta.get("parents"))
        mime = meta.get("mimeType") or (content.mime_type if content else None)
        if not mime or mime == "application/octet-stream" and meta.get("mimeType") is None:
            mime = mimetypes.guess_type(name)[0] or mime or "application/octet-stream"
        now = time.time()
        created = _meta_time(meta, "createdTime", now)
        modified = _meta_time(meta, "modifiedTime", now)
        self.seq += 1
        rec = FileRecord(id=file_id, name=name, mime_type=mime, parents=[pid], created=created,
                         modified=modified, seq=self.seq, drive_id=drive_id)
        if content is not None and not rec.has_content:
            raise errors.bad_request(f"Content cannot be uploaded for mimeType {mime}.",
                                     location="mimeType")
        if mime == SHORTCUT_MIME:
            target = self._shortcut_target(meta)
            rec.target_id, rec.target_mime = target.id, target.mime_type
        if rec.has_content:
            self._fill(rec, content)
        if meta.get("trashed"):
            rec.trashed = rec.explicitly_trashed = True
        elif pid != self.root_id and self.files[pid].trashed:
            rec.trashed = True  # what is inside a trashed folder is trashed
        if drive_id is not None:
            self.drive_items[drive_id] = self.drive_items.get(drive_id, 0) + 1
        self._index(rec)
        self._persist(rec)
        return rec

    def _new_id(self, file_id: Any) -> str:
        """A caller's id (from files.generateIds) if usable and free, else a new one."""
        if file_id is None:
            return new_file_id()
        if not isinstance(file_id, str) or not _ID_RE.match(file_id):
            raise errors.bad_request(f"The provided file ID is not usable: {file_id}",
                                     reason="fileIdNotUsable", location="id")
        if file_id in self.files:
            raise errors.duplicate_id(file_id)
        return file_id

    def _new_parent(self, parents: Any) -> Tuple[str, Optional[str]]:
        """(parent id, shared drive id) of a new item: exactly one parent, a folder
        with room, in a shared drive under its item limit."""
        parents = parents or ["root"]
        if not isinstance(parents, list) or len(parents) != 1:
            raise errors.ApiError(403, "cannotAddParent",
                                  "A file must have exactly one parent.", location="parents",
                                  location_type="other")
        pid = self._check_parent(parents[0])
        drive_id = self.files[pid].drive_id
        if drive_id is not None and self.drive_items.get(drive_id, 0) >= self.max_drive_items:
            raise errors.ApiError(403, "teamDriveFileLimitExceeded",
                                  "The file limit for this shared drive has been exceeded.")
        return pid, drive_id

    def _fill(self, rec: FileRecord, content: Optional[Content]) -> None:
        """Give a new file its bytes (none: empty), counted against My Drive's quota."""
        size = content.size if content else 0
        if rec.drive_id is None and self.quota_limit is not None \
                and self.usage + size > self.quota_limit:
            raise errors.quota_exceeded()
        rec.size = size
        rec.md5 = content.md5 if content else EMPTY_MD5
        rec.blob = content.blob if content else None
        if rec.drive_id is None:
            self.usage += size

    def _shortcut_target(self, meta: dict) -> FileRecord:
        details = meta.get("shortcutDetails")
        target_id = details.get("targetId") if isinstance(details, dict) else None
        if not target_id or not isinstance(target_id, str):
            raise errors.bad_request("A shortcut needs shortcutDetails.targetId.",
                                     reason="required", location="shortcutDetails.targetId")
        target = self.files.get(self.resolve(target_id))
        if target is None:
            raise errors.not_found(target_id)
        return target

    def save(self, rec: FileRecord) -> None:
        """Keep a change made to ``rec`` under :attr:`lock` (a new version)."""
        with self.lock:
            rec.version += 1
            self._persist(rec)

    def update(self, file_id: str, meta: dict, *, add_parents: Optional[str] = None,
               remove_parents: Optional[str] = None, content: Optional[Content] = None
               ) -> FileRecord:
        """files.update: rename, move, (un)trash, new content (old one -> revision)."""
        with self.lock:
            try:
                return self._update(file_id, meta, add_parents, remove_parents, content)
            except BaseException:
                if content is not None:
                    self.blobs.delete(content.blob)
                raise

    def _update(self, file_id: str, meta: dict, add_parents: Optional[str],
                remove_parents: Optional[str], content: Optional[Content]) -> FileRecord:
        rec = self.get(file_id)
        if (rec.id == self.root_id or rec.id in self.drives) and (
                meta or add_parents or remove_parents or content):
            raise errors.ApiError(403, "insufficientFilePermissions",
                                  "The user does not have sufficient permissions for this file.")
        for key in ("parents", "shortcutDetails"):  # shortcutDetails: on create only
            if key in meta:
                raise errors.ApiError(
                    403, "fieldNotWritable",
                    "The resource body includes fields which are not directly writable.",
                    location=key, location_type="other")
        if "id" in meta and meta["id"] != rec.id:
            raise errors.bad_request("The id field cannot be changed.", location="id")
        # Validate everything before changing anything.
        new_parents = self._new_parents(rec, file_id, add_parents, remove_parents)
        if content is not None:
            if not rec.has_content:
                raise errors.bad_request(f"Content cannot be uploaded for {rec.mime_type}.")
            if rec.drive_id is None and self.quota_limit is not None \
                    and self.usage + content.size > self.quota_limit:
                raise errors.quota_exceeded()
        if "name" in meta and not isinstance(meta["name"], str):
            raise errors.bad_request("Invalid value for name", location="name")
        # Apply.
        if new_parents != rec.parents:
            self._move(rec, new_parents)
        if "name" in meta:
            rec.name = meta["name"]
        if meta.get("mimeType") and rec.has_content and not meta["mimeType"].startswith(
                GOOGLE_APPS_PREFIX):
            rec.mime_type = meta["mimeType"]
        now = time.time()
        if content is not None:
            self._replace_content(rec, content, now)
        if "trashed" in meta and bool(meta["trashed"]) != rec.explicitly_trashed:
            self._set_trashed(rec, bool(meta["trashed"]))
        if "modifiedTime" in meta:  # rename/move/trash leave modifiedTime alone, as on Drive
            rec.modified = _meta_time(meta, "modifiedTime", now)
        rec.version += 1
        self._persist(rec)
        return rec

    def _new_parents(self, rec: FileRecord, file_id: str, add_parents: Optional[str],
                     remove_parents: Optional[str]) -> List[str]:
        """The parents after ``addParents``/``removeParents``, checked (one, no cycle)."""
        new_parents = list(rec.parents)
        for pid in _split_ids(remove_parents):
            real = self.resolve(pid)
            if real not in new_parents:
                raise errors.bad_request(f"Parent {pid} is not a parent of {file_id}.",
                                         location="removeParents")
            new_parents.remove(real)
        for pid in _split_ids(add_parents):
            real = self._check_parent(pid)
            if real not in new_parents:
                new_parents.append(real)
        if len(new_parents) != 1:
            raise errors.ApiError(403, "cannotAddParent",
                                  "Increasing the number of parents is not allowed. A file "
                                  "must have exactly one parent.", location="addParents",
                                  location_type="parameter")
        if rec.is_folder and new_parents != rec.parents and self._is_under(new_parents[0], rec.id):
            raise errors.bad_request("A folder cannot be moved into itself or its descendants.",
                                     location="addParents")
        return new_parents

    def _move(self, rec: FileRecord, new_parents: List[str]) -> None:
        for p in rec.parents:
            self.children.get(p, {}).pop(rec.id, None)
        rec.parents = new_parents
        for p in new_parents:
            self.children.setdefault(p, {})[rec.id] = None
        target = self.files[new_parents[0]].drive_id
        if target != rec.drive_id:  # into or out of a shared drive: it changes hands
            for item in [rec] + self._descendants(rec):
                self._account(item, -1)
                item.drive_id = target
                self._account(item, +1)
        inherited = new_parents[0] != self.root_id and self.files[new_parents[0]].trashed
        if not rec.explicitly_trashed and rec.trashed != inherited:
            self._set_implicit(rec, inherited)  # moved into / out of a trashed folder

    def _replace_content(self, rec: FileRecord, content: Content, now: float) -> None:
        """New bytes; the old ones become a revision (the oldest beyond the cap go)."""
        rec.revisions.append(Revision(rec.blob, rec.size or 0, rec.md5 or EMPTY_MD5,
                                      rec.modified))
        mine = rec.drive_id is None
        while len(rec.revisions) > MAX_REVISIONS:
            old = rec.revisions.pop(0)
            self.blobs.delete(old.blob)
            self.usage -= old.size if mine else 0
        rec.blob, rec.size, rec.md5 = content.blob, content.size, content.md5
        self.usage += content.size if mine else 0
        rec.modified = now

    def _account(self, rec: FileRecord, sign: int) -> None:
        """Count ``rec`` in (+1) or out of (-1) its owner: the user's quota or its drive."""
        if rec.drive_id is None:
            self.usage += sign * rec.quota_bytes()
        else:
            self.drive_items[rec.drive_id] = self.drive_items.get(rec.drive_id, 0) + sign

    def _is_under(self, folder_id: str, ancestor_id: str) -> bool:
        cur: Optional[str] = folder_id
        for _ in range(1000):
            if cur is None:
                return False
            if cur == ancestor_id:
                return True
            parent = self.files.get(cur)
            cur = parent.parents[0] if parent and parent.parents else None
        return True

    def _descendants(self, rec: FileRecord) -> List[FileRecord]:
        out: List[FileRecord] = []
        stack = [rec.id]
        while stack:
            for cid in list(self.children.get(stack.pop(), {})):
                child = self.files[cid]
                out.append(child)
                if child.is_folder:
                    stack.append(cid)
        return out

    def _set_implicit(self, rec: FileRecord, trashed: bool) -> None:
        """Trash state inherited from the parent, for ``rec`` and what is under it."""
        for item in [rec] + self._descendants(rec):
            if not item.explicitly_trashed and item.trashed != trashed:
                item.trashed = trashed
                if item is not rec:
                    item.version += 1
                    self._persist(item)

    def _set_trashed(self, rec: FileRecord, trashed: bool) -> None:
        rec.trashed = rec.explicitly_trashed = trashed
        for child in self._descendants(rec):
            if trashed and not child.trashed:
                child.trashed = True
                child.version += 1
                self._persist(child)
            elif not trashed and child.trashed and not child.explicitly_trashed:
                child.trashed = False
                child.version += 1
                self._persist(child)

    def delete(self, file_id: str) -> None:
        """files.delete: permanent, a folder with everything under it."""
        with self.lock:
            rec = self.get(file_id)
            if rec.id == self.root_id or rec.id in self.drives:
                raise errors.ApiError(403, "insufficientFilePermissions",
                                      "The user does not have sufficient permissions for this "
                                      "file.")
            self._delete(rec)

    def _delete(self, rec: FileRecord) -> None:
        for victim in [rec] + self._descendants(rec):
            self._unindex(victim)
            self.children.pop(victim.id, None)
            self._account(victim, -1)
            self.blobs.delete(victim.blob)
            for rev in victim.revisions:
                self.blobs.delete(rev.blob)
            self._persist_delete(victim.id)

    def empty_trash(self, drive_id: Optional[str] = None) -> int:
        """files.emptyTrash: delete forever every explicitly trashed item of My Drive,
        or of shared drive ``drive_id`` (each shared drive has its own trash)."""
        with self.lock:
            victims = [r for r in self.files.values()
                       if r.explicitly_trashed and r.drive_id == drive_id]
            count = 0
            for rec in victims:
                if rec.id in self.files:
                    self._delete(rec)
                    count += 1
            return count


    # ------------------------------------------------------------------ shared drives

    def create_drive(self, name: str, *, request_id: Optional[str] = None) -> SharedDrive:
        """drives.create (also how tests seed one); a requestId used before answers 409."""
        with self.lock:
            for d in self.drives.values():
                if request_id is not None and d.request_id == request_id:
                    raise errors.ApiError(409, "duplicate", "A shared drive with this "
                                          f"requestId already exists: {d.id}.")
            drive_id = "0A" + secrets.token_urlsafe(12)[:14] + "Uk9PVA"
            now = time.time()
            drive = SharedDrive(id=drive_id, name=name, created=now, request_id=request_id)
            self.drives[drive_id] = drive
            root = FileRecord(id=drive_id, name=name, mime_type=FOLDER_MIME, parents=[],
                              created=now, modified=now, seq=0, drive_id=drive_id)
            self._index(root)
            if self.journal is not None:
                self.journal.append({"drive": asdict(drive)})
            self._persist(root)
            return drive

    def get_drive(self, drive_id: str) -> SharedDrive:
        with self.lock:
            drive = self.drives.get(drive_id)
            if drive is None:
                raise errors.ApiError(404, "notFound", f"Shared drive not found: {drive_id}",
                                      location="driveId", location_type="parameter")
            return drive

    def list_drives(self) -> List[SharedDrive]:
        with self.lock:
            return sorted(self.drives.values(), key=lambda d: (d.created, d.id))


# ---------------------------------------------------------------------------- helpers


def _corpus_filter(corpus: str) -> Any:
    if corpus == "all":
        return lambda r: True
    if corpus.startswith("drive:"):
        drive_id = corpus[len("drive:"):]
        return lambda r: r.drive_id == drive_id
    return lambda r: r.drive_id is None

def _split_ids(text: Optional[str]) -> List[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _meta_time(meta: dict, key: str, default: float) -> float:
    value = meta.get(key)
    if value is None:
        return default
    try:
        return parse_time(str(value))
    except ValueError:
        raise errors.bad_request(f"Invalid value for {key}: {value}", location=key) from None


def _encode_token(offset: int, fingerprint: int) -> str:
    return base64.urlsafe_b64encode(f"{offset}:{fingerprint}".encode()).decode().rstrip("=")


def _decode_token(token: str, fingerprint: int) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset_text, fp_text = raw.split(":")
        if int(fp_text) != fingerprint:
            raise ValueError("token from another query")
        return max(0, int(offset_text))
    except (ValueError, UnicodeDecodeError):
        raise errors.bad_request("Invalid Value", location="pageToken") from None
