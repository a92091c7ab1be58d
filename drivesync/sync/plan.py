"""Pure planning: what to create, upload, skip, delete, download, rename or merge.

No I/O here: inputs are lists of local files and remote :class:`Entry` values,
the output a :class:`Plan`. That keeps the decisions table-testable and makes
``--dry-run`` a matter of not running the plan (see apply.py).
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from ..outcome import Problem
from ..types import Entry, is_internal

MKDIR = "mkdir"
UPLOAD = "upload"        # a new file where none was
REPLACE = "replace"      # upload as a new file, then remove ``targets`` (older versions)
PACK = "pack"            # build a shard's tar + manifest, upload both, remove ``targets``
SKIP = "skip"            # already identical
DELETE = "delete"        # remove ``targets``
DOWNLOAD = "download"
UNPACK = "unpack"        # download a shard's tar and unpack it into a local folder
RENAME = "rename"        # give a same-named, different file a distinct name
MERGE = "merge"          # move a duplicate folder's children into the oldest one
EMPTY_TRASH = "empty_trash"  # empty the remote's whole trash (prune --empty-trash)

TRANSFER_KINDS = (UPLOAD, REPLACE, PACK, DOWNLOAD, UNPACK)
ABSENT = "absent locally"  # the reason of a --delete deletion


@dataclass(frozen=True)
class LocalFile:
    """A file to push. ``rel`` is relative to the local root, POSIX separators."""

    rel: str
    size: int
    md5: Optional[str] = None   # None when not needed (no same-sized remote copy)
    source: str = ""            # absolute local path


@dataclass(frozen=True)
class Action:
    kind: str
    path: str                        # remote path (relative to the remote root)
    local: str = ""                  # local absolute path (source or destination)
    size: int = 0
    md5: Optional[str] = None
    targets: tuple[Entry, ...] = ()  # remote items removed (delete/replace) or acted on
    reason: str = ""
    permanent: bool = False          # delete for good (old versions) vs trash
    data: Any = None                 # kind-specific payload (a shard, a manifest)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"action": self.kind, "path": self.path}
        if self.local:
            d["local"] = self.local
        if self.size:
            d["size"] = self.size
        if self.targets:
            d["targets"] = len(self.targets)
        if self.reason:
            d["reason"] = self.reason
        return d

    def __str__(self) -> str:
        extra = f" ({self.reason})" if self.reason else ""
        return f"{self.kind:8} {self.path or '.'}{extra}"


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # said, not failures

    def of(self, *kinds: str) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]

    def summary(self) -> dict[str, int]:
        c = Counter(a.kind for a in self.actions)
        out = {k: c.get(k, 0) for k in (MKDIR, UPLOAD, REPLACE, PACK, SKIP, DELETE,
                                        DOWNLOAD, UNPACK, RENAME, MERGE) if c.get(k)}
        out["bytes"] = sum(a.size for a in self.actions if a.kind in TRANSFER_KINDS)
        out["deleted_items"] = sum(len(a.targets) for a in self.actions if a.kind == DELETE)
        return out


def is_native(e: Entry) -> bool:
    """A Google Docs/Sheets/Slides file or a shortcut: a Drive file with no bytes, so no md5.

    Every file with content on Drive has an md5; these never came from a local
    folder, so sync neither downloads them nor deletes or replaces them.
    """
    return not e.is_dir and e.md5 is None


NATIVE = "a Google Docs file or shortcut (no bytes to sync)"


def excluded(rel: str, patterns: Sequence[str]) -> bool:
    """fnmatch on the relative path and on the bare name."""
    name = posixpath.basename(rel)
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _age(e: Entry) -> tuple[float, str]:
    return (e.modified, e.id)


def rel_to(base: str, path: str) -> Optional[str]:
    """``path`` relative to ``base``; None when it is not below ``base``."""
    if not base:
        return path
    if path == base:
        return ""
    if path.startswith(base + "/"):
        return path[len(base) + 1:]
    return None


def index_remote(base: str, entries: Iterable[Entry]) -> tuple[dict[str, list[Entry]],
                                                              dict[str, list[Entry]]]:
    """{rel: [files]} and {rel: [folders]} below ``base``; duplicates kept, ids unique."""
    files: dict[str, list[Entry]] = defaultdict(list)
    dirs: dict[str, list[Entry]] = defaultdict(list)
    seen: set[str] = set()
    for e in entries:
        key = e.id or e.path
        if key in seen:
            continue
        seen.add(key)
        rel = rel_to(base, e.path)
        if rel is None or rel == "":
            continue
        (dirs if e.is_dir else files)[rel].append(e)
    return dict(files), dict(dirs)


def below(path: str, top: str) -> bool:
    """``path`` is ``top`` or inside it (relative POSIX paths)."""
    return path == top or path.startswith(top + "/")


def plan_push(files: Sequence[LocalFile], dirs: Sequence[str], remote: Iterable[Entry], *,
              base: str = "", base_exists: bool = True, delete: bool = False,
              packs: Sequence[Action] = (), excludes: Sequence[str] = (),
              blocked: Sequence[str] = ()) -> Plan:
    """Decide each action of a push.

    ``files``/``dirs`` are relative to the local root; ``remote`` is every entry
    below ``base`` (the target path). ``packs`` are PACK actions for shards whose
    tar is not known to be on the remote; their tar/manifest names and old copies
    are handled here. A local file is skipped when one remote copy has the same
    size and md5; other same-named copies are removed as duplicates.

    ``blocked`` are relative paths that could not be read (a local folder or
    file, a remote folder whose listing failed): no action touches anything at
    or below one of them, and no deletion takes one of them along with a folder.
    A read error is never taken for "absent".
    """
    plan = Plan()
    mine = []
    for e in remote:
        if is_native(e):
            plan.notes.append(Problem(e.path, f"{NATIVE}: left as it is"))
        else:
            mine.append(e)
    rfiles, rdirs = index_remote(base, mine)

    def full(rel: str) -> str:
        return posixpath.join(base, rel) if base else rel

    if not base_exists:  # even for an empty LOCAL: the target exists afterwards
        plan.actions.append(Action(MKDIR, base))
    for d in sorted(set(dirs), key=lambda p: (p.count("/"), p)):
        if d and d not in rdirs:
            plan.actions.append(Action(MKDIR, full(d)))
        elif d and len(rdirs[d]) > 1:
            plan.problems.append(Problem(full(d), f"{len(rdirs[d])} remote folders share this "
                                                  "name; run `drivesync dedupe` to merge them"))
    local_names = _plan_files(plan, files, rfiles, full)
    for p in packs:
        rel_tar = rel_to(base, p.path) if base else p.path
        assert rel_tar is not None
        olds = tuple(sorted(rfiles.get(rel_tar, []) + rfiles.get(rel_tar + ".json", []),
                            key=_age))
        local_names.update((rel_tar, rel_tar + ".json"))
        plan.actions.append(Action(PACK, p.path, local=p.local, size=p.size, targets=olds,
                                   permanent=True, data=p.data, reason=p.reason))
    if delete:
        _plan_absent(plan, dirs, rfiles, rdirs, local_names, full, excludes)
    if blocked:
        plan.actions = [a for a in plan.actions if not _touches(a, base, blocked)]
    return plan


def _plan_files(plan: Plan, files: Sequence[LocalFile], rfiles: dict[str, list[Entry]],
                full: Callable[[str], str]) -> set[str]:
    """UPLOAD, SKIP (plus a DELETE of identical duplicates) or REPLACE per local file;
    the relative paths seen."""
    local_names: set[str] = set()
    for f in sorted(files, key=lambda f: f.rel):
        local_names.add(f.rel)
        cands = sorted(rfiles.get(f.rel, []), key=_age)
        if not cands:
            plan.actions.append(Action(UPLOAD, full(f.rel), local=f.source, size=f.size,
                                       md5=f.md5))
            continue
        same = [e for e in cands if f.md5 and e.size == f.size and e.md5 == f.md5]
        if same:
            plan.actions.append(Action(SKIP, full(f.rel), local=f.source, size=f.size,
                                       md5=f.md5, targets=(same[0],)))
            extra = tuple(e for e in cands if e is not same[0])
            if extra:
                plan.actions.append(Action(DELETE, full(f.rel), targets=extra, permanent=True,
                                           reason=f"{len(extra)} duplicate(s)"))
        else:
            plan.actions.append(Action(REPLACE, full(f.rel), local=f.source, size=f.size,
                                       md5=f.md5, targets=tuple(cands), permanent=True,
                                       reason="changed"))
    return local_names


def _plan_absent(plan: Plan, dirs: Sequence[str], rfiles: dict[str, list[Entry]],
                 rdirs: dict[str, list[Entry]], local_names: set[str],
                 full: Callable[[str], str], excludes: Sequence[str]) -> None:
    """--delete: a remote item goes when its parent exists locally but it does not;
    items deeper down go with their folder."""
    keep_dirs = set(dirs) | {""}
    for rel, entries in sorted(rdirs.items()):
        if (rel not in keep_dirs and posixpath.dirname(rel) in keep_dirs
                and not excluded(rel, excludes) and not is_internal(posixpath.basename(rel))):
            for e in entries:
                plan.actions.append(Action(DELETE, e.path, targets=(e,), reason=ABSENT))
    for rel, entries in sorted(rfiles.items()):
        if (rel not in local_names and posixpath.dirname(rel) in keep_dirs
                and not excluded(rel, excludes) and not is_internal(posixpath.basename(rel))):
            plan.actions.append(Action(DELETE, full(rel), targets=tuple(entries),
                                       reason=ABSENT))


def _touches(a: Action, base: str, blocked: Sequence[str]) -> bool:
    """Whether ``a`` acts on or below a blocked path (a delete: also above one)."""
    if a.kind == SKIP:
        return False
    rel = rel_to(base, a.path)
    if rel is None:
        return False
    return any(below(rel, b) or (a.kind == DELETE and below(b, rel)) for b in blocked)


@dataclass(frozen=True)
class PullItem:
    """A remote file and the (sanitised, unique) local path it maps to."""

    entry: Entry
    local: str
    local_size: Optional[int] = None   # None: no local file
    local_md5: Optional[str] = None


def plan_pull(items: Sequence[PullItem], *, unpacks: Sequence[Action] = ()) -> Plan:
    """Download what differs; skip files already identical (size and md5)."""
    plan = Plan()
    for it in sorted(items, key=lambda i: i.local):
        e = it.entry
        if it.local_size == e.size and it.local_md5 is not None and it.local_md5 == e.md5:
            plan.actions.append(Action(SKIP, e.path, local=it.local, size=e.size))
        else:
            plan.actions.append(Action(DOWNLOAD, e.path, local=it.local, size=e.size, md5=e.md5,
                                       targets=(e,)))
    plan.actions.extend(unpacks)
    return plan


def plan_dedupe(folder: str, children: Sequence[Entry], *, rename: bool = False) -> Plan:
    """Actions for one folder's direct children.

    Same name and same content: keep the oldest (modified, then id), delete the
    rest. Same name, other content: report, or with ``rename`` give each later
    one ``name (n).ext``. Same-named folders: merge into the oldest.
    """
    from .names import numbered

    plan = Plan()
    by_name: dict[tuple[str, bool], list[Entry]] = defaultdict(list)
    for e in children:
        by_name[(e.name, e.is_dir)].append(e)
    taken = {e.name for e in children}
    for (name, is_dir), group in sorted(by_name.items()):
        if len(group) < 2:
            continue
        group = sorted(group, key=_age)
        path = posixpath.join(folder, name) if folder else name
        if is_dir:
            for extra in group[1:]:
                plan.actions.append(Action(MERGE, path, targets=(group[0], extra),
                                           reason="duplicate folder"))
            continue
        kept: list[Entry] = []
        for e in group:
            twin = next((k for k in kept if k.md5 and k.md5 == e.md5 and k.size == e.size), None)
            if twin is not None:
                plan.actions.append(Action(DELETE, path, targets=(e,), permanent=False,
                                           reason=f"identical to the older {twin.id}"))
            else:
                kept.append(e)
        for n, e in enumerate(kept[1:], start=2):
            if rename:
                m = n
                while numbered(name, m) in taken:
                    m += 1
                new = numbered(name, m)
                taken.add(new)
                plan.actions.append(Action(RENAME, path, targets=(e,),
                                           data=posixpath.join(folder, new) if folder else new,
                                           reason="same name, different content"))
            else:
                plan.problems.append(Problem(path, f"{len(kept)} files share this name with "
                                                   "different content (use --rename to give "
                                                   "them distinct names)"))
                break
    return plan
