"""The parts of Drive's small languages the emulator understands: ``q``, ``fields``, ``orderBy``.

Pure functions over plain values, so they are easy to test and cost nothing
per request beyond the parse. ``q`` supports ``'ID' in parents``, ``name``/
``mimeType`` with ``=``, ``!=`` and ``contains``, ``trashed``, ``starred``,
``createdTime``/``modifiedTime`` comparisons, joined by ``and``/``or``/``not``
and parentheses.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import ApiError, bad_request

FOLDER_MIME = "application/vnd.google-apps.folder"

# ---------------------------------------------------------------------------- time

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$")


def parse_time(text: str) -> float:
    """RFC 3339 (the forms Drive accepts) -> seconds since the epoch, UTC."""
    m = _RFC3339.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0)))
    if frac:
        secs += float("0." + frac)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        secs -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return float(secs)


def format_time(epoch: float) -> str:
    """Seconds since the epoch -> ``2024-05-01T12:00:00.123Z`` as Drive writes it."""
    millis = int(round(epoch * 1000))
    secs, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


# ---------------------------------------------------------------------------- q

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.)*')
  | (?P<op>!=|<=|>=|=|<|>)
  | (?P<paren>[()])
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
)""", re.X | re.S)


def _tokenize(q: str) -> List[Tuple[str, str]]:
    tokens: List[Tuple[str, str]] = []
    pos = 0
    q = q.strip()
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if not m or m.end() == pos:
            raise _bad_q(q, f"unexpected text at offset {pos}")
        pos = m.end()
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "str":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        elif kind == "word":
            low = text.lower()
            if low in ("and", "or", "not", "in", "contains", "true", "false", "has"):
                kind, text = "kw", low
        tokens.append((kind, text))
    return tokens


def _bad_q(q: str, why: str) -> ApiError:
    return bad_request(f"Invalid Value ({why}) in query: {q}", location="q")


@dataclass
class Query:
    """A compiled ``q``: a predicate plus, when ``'X' in parents`` is a top-level
    conjunct, that parent id (so the caller can scan one folder, not the drive)."""

    match: Callable[[Any], bool]
    parent: Optional[str] = None


Rec = Any  # records.FileRecord; duck-typed to keep this module free of the model


class _Parser:
    def __init__(self, q: str, resolve: Callable[[str], str]):
        self.q = q
        self.tokens = _tokenize(q)
        self.i = 0
        self.resolve = resolve
        self.parent_hints: List[str] = []

    def peek(self) -> Tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "")

    def take(self, kind: str, text: Optional[str] = None) -> str:
        k, t = self.peek()
        if k != kind or (text is not None and t != text):
            raise _bad_q(self.q, f"expected {text or kind}, got {t or 'end'}")
        self.i += 1
        return t

    def parse(self) -> Query:
        fn = self.or_expr(top=True)
        if self.peek()[0] != "end":
            raise _bad_q(self.q, f"unexpected {self.peek()[1]!r}")
        return Query(fn, self.parent_hints[0] if len(self.parent_hints) == 1 else None)

    def or_expr(self, top: bool = False) -> Callable[[Rec], bool]:
        parts = [self.and_expr(top)]
        while self.peek() == ("kw", "or"):
            self.i += 1
            parts.append(self.and_expr(False))
        if len(parts) > 1:
            if top:
                self.parent_hints.clear()
            return lambda r: any(p(r) for p in parts)
        return parts[0]

    def and_expr(self, top: bool) -> Callable[[Rec], bool]:
        start_hints = len(self.parent_hints)
        parts = [self.unary(top)]
        while self.peek() == ("kw", "and"):
            self.i += 1
            parts.append(self.unary(top))
        if not top:
            del self.parent_hints[start_hints:]
        if len(parts) > 1:
            return lambda r: all(p(r) for p in parts)
        return parts[0]

    def unary(self, top: bool) -> Callable[[Rec], bool]:
        k, t = self.peek()
        if (k, t) == ("kw", "not"):
            self.i += 1
            hints = len(self.parent_hints)
            inner = self.unary(False)
            del self.parent_hints[hints:]
            return lambda r: not inner(r)
        if (k, t) == ("paren", "("):
            self.i += 1
            inner = self.or_expr(top=False)
            self.take("paren", ")")
            return inner
        return self.term(top)

    def term(self, top: bool) -> Callable[[Rec], bool]:
        k, t = self.peek()
        if k == "str":
            self.i += 1
            return self._membership(t, top)
        field = self.take("word")
        k, op = self.peek()
        if (k, op) == ("kw", "contains"):
            self.i += 1
            return self._contains(field, self.take("str").lower())
        if k != "op":
            raise _bad_q(self.q, f"expected an operator after {field}")
        self.i += 1
        vk, value = self.peek()
        self.i += 1
        return self._comparison(field, op, vk, value)

    def _membership(self, value: str, top: bool) -> Callable[[Rec], bool]:
        """``'ID' in parents``, ``'EMAIL' in owners|writers|readers``."""
        self.take("kw", "in")
        field = self.take("word")
        if field == "parents":
            pid = self.resolve(value)
            if top:
                self.parent_hints.append(pid)
            return lambda r: pid in r.parents
        if field in ("owners", "writers", "readers"):
            return _grantee_test(value, field)
        raise _bad_q(self.q, f"unsupported collection {field!r}")

    def _contains(self, field: str, needle: str) -> Callable[[Rec], bool]:
        if field in ("name", "fullText"):
            return lambda r: needle in r.name.lower()
        if field == "mimeType":
            return lambda r: needle in r.mime_type.lower()
        raise _bad_q(self.q, f"'contains' is not supported for {field}")

    def _comparison(self, field: str, op: str, vk: str, value: str) -> Callable[[Rec], bool]:
        """``field OP value`` for the string, boolean and time fields."""
        if field in ("name", "mimeType"):
            if vk != "str" or op not in ("=", "!="):
                raise _bad_q(self.q, f"{field} takes = or != and a quoted string")
            attr = "name" if field == "name" else "mime_type"
            if op == "=":
                return lambda r: getattr(r, attr) == value
            return lambda r: getattr(r, attr) != value
        if field in ("trashed", "starred", "sharedWithMe", "hidden"):
            if vk != "kw" or value not in ("true", "false") or op not in ("=", "!="):
                raise _bad_q(self.q, f"{field} takes = or != and true/false")
            want = (value == "true") == (op == "=")
            if field == "trashed":
                return lambda r: r.trashed == want
            return lambda r: want is False
        if field in ("modifiedTime", "createdTime"):
            if vk != "str":
                raise _bad_q(self.q, f"{field} takes a quoted RFC 3339 time")
            try:
                when = parse_time(value)
            except ValueError as exc:
                raise _bad_q(self.q, str(exc)) from None
            attr = "modified" if field == "modifiedTime" else "created"
            cmp = _CMP[op]
            return lambda r: cmp(getattr(r, attr), when)
        raise _bad_q(self.q, f"unsupported field {field!r}")


ME = ("me", "emulated.user@example.com")  # the one user, who owns everything
_ROLES = {"owners": ("owner",), "writers": ("owner", "organizer", "fileOrganizer", "writer"),
          "readers": ("owner", "organizer", "fileOrganizer", "writer", "commenter", "reader")}


def _grantee_test(who: str, collection: str) -> Callable[[Rec], bool]:
    """``'X' in owners|writers|readers``: me, or a share (by address or 'anyone') whose
    role is in that collection, as the permissions of the item say."""
    if who.lower() in ME:
        return lambda r: True
    who, roles = who.lower(), _ROLES[collection]

    def test(r: Rec) -> bool:
        return any(p["role"] in roles and who in (p.get("emailAddress"), p.get("domain"),
                                                   p["type"] if p["type"] == "anyone" else None)
                   for p in r.permissions)
    return test


_CMP: Dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: abs(a - b) < 0.0005, "!=": lambda a, b: abs(a - b) >= 0.0005,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def compile_query(q: Optional[str], *, resolve: Callable[[str], str]) -> Query:
    """Parse ``q``; ``resolve`` maps an id (or the alias 'root') to a real id."""
    if not q or not q.strip():
        return Query(lambda r: True)
    return _Parser(q, resolve).parse()


# ---------------------------------------------------------------------------- orderBy

_ORDER_KEYS: Dict[str, Callable[[Rec], Any]] = {
    "folder": lambda r: 0 if r.mime_type == FOLDER_MIME else 1,
    "name": lambda r: (r.name.casefold(), r.name),
    "name_natural": lambda r: [int(p) if p.isdigit() else p.casefold()
                               for p in re.split(r"(\d+)", r.name)],
    "createdTime": lambda r: r.created,
    "modifiedTime": lambda r: r.modified,
    "modifiedByMeTime": lambda r: r.modified,
    "recency": lambda r: r.modified,
    "viewedByMeTime": lambda r: r.modified,
    "quotaBytesUsed": lambda r: r.quota_bytes(),
    "starred": lambda r: 0,
    "sharedWithMeTime": lambda r: 0,
}


def sort_records(records: List[Rec], order_by: Optional[str]) -> List[Rec]:
    """Stable multi-key sort; without ``orderBy`` the order is creation order."""
    records = sorted(records, key=lambda r: r.seq)
    if not order_by:
        return records
    keys = []
    for part in order_by.split(","):
        bits = part.split()
        if not bits:
            continue
        if bits[0] not in _ORDER_KEYS or len(bits) > 2 or (len(bits) == 2 and bits[1] != "desc"):
            raise bad_request(f"Invalid sort order: {order_by}", location="orderBy")
        keys.append((_ORDER_KEYS[bits[0]], len(bits) == 2))
    for key, desc in reversed(keys):
        records.sort(key=key, reverse=desc)
    return records


# ---------------------------------------------------------------------------- fields

FieldMask = Optional[Dict[str, Any]]  # None = everything; {name: sub-mask}


def parse_fields(text: Optional[str]) -> FieldMask:
    """``nextPageToken,files(id,name),files/parents`` -> a nested dict mask."""
    if text is None or not text.strip() or text.strip() == "*":
        return None
    pos = 0

    def parse_list(end: Optional[str]) -> Dict[str, Any]:
        nonlocal pos
        mask: Dict[str, Any] = {}
        while True:
            m = re.compile(r"\s*([A-Za-z0-9_*]+(?:/[A-Za-z0-9_*]+)*)\s*").match(text, pos)
            if not m:
                raise bad_request(f"Invalid field selection {text}", reason="invalidParameter",
                                  location="fields")
            pos = m.end()
            path = m.group(1).split("/")
            sub: Any = None
            if pos < len(text) and text[pos] == "(":
                pos += 1
                sub = parse_list(")")
            _merge(mask, path, sub)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if end is not None:
                if pos < len(text) and text[pos] == end:
                    pos += 1
                    while pos < len(text) and text[pos] == " ":
                        pos += 1
                    return mask
                raise bad_request(f"Invalid field selection {text}", reason="invalidParameter",
                                  location="fields")
            if pos != len(text):
                raise bad_request(f"Invalid field selection {text}", reason="invalidParameter",
                                  location="fields")
            return mask

    return parse_list(None)


def _merge(mask: Dict[str, Any], path: List[str], sub: Any) -> None:
    head, rest = path[0], path[1:]
    if rest:
        child = mask.setdefault(head, {})
        if child is None:
            return
        _merge(child, rest, sub)
        return
    if head == "*":
        mask.clear()
        mask["*"] = None
        return
    if head in mask and mask[head] is None:
        return  # already "everything"
    if sub is None or head not in mask:
        mask[head] = sub
        return
    for k, v in sub.items():
        mask[head].setdefault(k, v)


def apply_fields(doc: Any, mask: FieldMask) -> Any:
    """Keep only what ``mask`` selects (lists are filtered element-wise)."""
    if mask is None or "*" in mask:
        return doc
    if isinstance(doc, list):
        return [apply_fields(item, mask) for item in doc]
    if not isinstance(doc, dict):
        return doc
    return {k: apply_fields(doc[k], sub) for k, sub in mask.items() if k in doc}


# What a ``fields`` mask may name (from the v3 discovery document's schemas): Drive
# answers 400 invalidParameter for an unknown name, so a typo in a client's mask
# must fail here too instead of silently returning less. None: any sub-selection.
Schema = Dict[str, Any]
USER_SCHEMA: Schema = dict.fromkeys(
    ["displayName", "emailAddress", "kind", "me", "permissionId", "photoLink"])
FILE_SCHEMA: Schema = dict.fromkeys([
    "appProperties", "capabilities", "clientEncryptionDetails", "contentHints",
    "contentRestrictions", "copyRequiresWriterPermission", "createdTime", "description",
    "downloadRestrictions", "driveId", "explicitlyTrashed", "exportLinks", "fileExtension",
    "folderColorRgb", "fullFileExtension", "hasAugmentedPermissions", "hasThumbnail",
    "headRevisionId", "iconLink", "id", "imageMediaMetadata", "inheritedPermissionsDisabled",
    "isAppAuthorized", "kind", "labelInfo", "lastModifyingUser", "linkShareMetadata",
    "md5Checksum", "mimeType", "modifiedByMe", "modifiedByMeTime", "modifiedTime", "name",
    "originalFilename", "ownedByMe", "owners", "parents", "permissionIds", "permissions",
    "properties", "quotaBytesUsed", "resourceKey", "sha1Checksum", "sha256Checksum", "shared",
    "sharedWithMeTime", "sharingUser", "shortcutDetails", "size", "spaces", "starred",
    "teamDriveId", "thumbnailLink", "thumbnailVersion", "trashed", "trashedTime",
    "trashingUser", "version", "videoMediaMetadata", "viewedByMe", "viewedByMeTime",
    "viewersCanCopyContent", "webContentLink", "webViewLink", "writersCanShare"])
PERMISSION_SCHEMA: Schema = dict.fromkeys([
    "allowFileDiscovery", "deleted", "displayName", "domain", "emailAddress", "expirationTime",
    "id", "inheritedPermissionsDisabled", "kind", "pendingOwner", "permissionDetails",
    "photoLink", "role", "teamDrivePermissionDetails", "type", "view"])
PERMISSION_LIST_SCHEMA: Schema = {"kind": None, "nextPageToken": None,
                                  "permissions": PERMISSION_SCHEMA}
FILE_SCHEMA.update(lastModifyingUser=USER_SCHEMA, sharingUser=USER_SCHEMA,
                   trashingUser=USER_SCHEMA, owners=USER_SCHEMA, permissions=PERMISSION_SCHEMA)
FILE_LIST_SCHEMA: Schema = {"files": FILE_SCHEMA, "incompleteSearch": None, "kind": None,
                            "nextPageToken": None}
ABOUT_SCHEMA: Schema = dict.fromkeys([
    "appInstalled", "canCreateDrives", "canCreateTeamDrives", "driveThemes", "exportFormats",
    "folderColorPalette", "importFormats", "kind", "maxImportSizes", "maxUploadSize"])
ABOUT_SCHEMA.update(user=USER_SCHEMA, storageQuota=dict.fromkeys(
    ["limit", "usage", "usageInDrive", "usageInDriveTrash"]))


def check_fields(mask: FieldMask, schema: Schema, *, prefix: str = "") -> FieldMask:
    """``mask`` if every name in it exists in ``schema``; else 400 invalidParameter."""
    if mask is None:
        return None
    for name, sub in mask.items():
        if name == "*":
            continue
        if name not in schema:
            raise bad_request(f"Invalid field selection {prefix}{name}",
                              reason="invalidParameter", location="fields")
        if sub is not None and isinstance(schema[name], dict):
            check_fields(sub, schema[name], prefix=f"{prefix}{name}/")
    return mask
