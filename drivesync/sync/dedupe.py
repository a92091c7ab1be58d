"""dedupe: clean up what Drive allows and file systems do not (several items, one name).

Per folder, recursively: identical files (same name, size and md5) -> keep the
oldest, trash the rest; same name, other content -> reported, or renamed to
``name (2).ext`` with ``rename``; same-named folders -> the younger ones are
merged into the oldest (children moved, then the empty folder trashed).

A merge first renames the younger folder to ``NAME (merging ID)``: addressing
by path always reaches the oldest of same-named folders, so the rename is what
makes the younger one's children reachable. A run killed mid-merge leaves that
folder, and the next run finishes the merge.
"""

from __future__ import annotations

import logging
import posixpath
import re
import time
from collections import Counter
from typing import Optional

from ..errors import DriveSyncError, NotFound, Stopped
from ..outcome import Problem
from ..remotes.base import Remote, is_read_error
from ..types import Entry
from .apply import apply_plan
from .plan import MERGE, RENAME, Action, Plan, plan_dedupe
from .result import DedupeResult

log = logging.getLogger(__name__)

_MERGING = re.compile(r"^(?P<name>.+) \(merging (?P<id>[^)]*)\)$")


def _merging_name(name: str, entry: Entry) -> str:
    return f"{name} (merging {(entry.id or 'x')[-12:]})"


def dedupe(remote: Remote, path: str = "", *, rename: bool = False,
           dry_run: bool = False) -> DedupeResult:
    """Remove duplicates below ``remote:path``; NotFound when it is absent.

    A folder whose listing fails (below ``path``) is reported in
    ``result.problems`` and left alone with everything below it: a failed
    listing is never taken for an empty one. Each folder's plan runs through
    the engine (renames and merges one at a time, deletes batched).
    """
    t0 = time.monotonic()
    req0 = remote.stats.requests
    result = DedupeResult(dry_run=dry_run)
    summary: Counter = Counter()
    queue = [path.strip("/")]
    visited: set[str] = set()
    while queue:
        folder = queue.pop(0)
        if folder in visited:
            continue
        visited.add(folder)
        children = _children(remote, folder, result, first=len(visited) == 1)
        if children is None:
            continue
        result.folders += 1
        plan = plan_dedupe(folder, children, rename=rename)
        _resume_merges(folder, children, plan)
        summary.update(plan.summary())
        result.conflicts.extend(plan.problems)
        result.actions.extend(plan.actions)
        report = apply_plan(plan, _DedupeRunner(remote).run, remote=remote, jobs=1,
                            dry_run=dry_run, serial=(MERGE, RENAME), desc="dedupe")
        result.deleted += len(report.removed)
        result.renamed += report.done[RENAME]
        result.merged += report.done[MERGE]
        result.failed += report.failed
        result.problems.extend(report.problems)
        if report.fatal is not None:
            raise Stopped.of(report.fatal, result)
        queue.extend(sorted({c.path for c in children if c.is_dir
                             and not _MERGING.match(c.name)}))
    summary.pop("bytes", None)
    result.plan = dict(summary)
    result.requests = remote.stats.requests - req0
    result.seconds = time.monotonic() - t0
    return result


def _children(remote: Remote, folder: str, result: DedupeResult, *,
              first: bool) -> Optional[list[Entry]]:
    """The folder's children; None (said in ``result``) when it cannot be listed.
    The top folder's errors are raised: there is nothing to dedupe."""
    try:
        return remote.list(folder)
    except NotFound:
        if first:
            raise
        result.problems.append(Problem(folder, "folder vanished during the run"))
    except DriveSyncError as exc:
        if first or not is_read_error(exc):
            raise
        result.problems.append(Problem(folder, f"cannot list ({exc}); left as it is, with "
                                               "everything below it"))
        result.failed += 1
    return None


def _resume_merges(folder: str, children: list[Entry], plan: Plan) -> None:
    """Folders left as ``NAME (merging ID)`` by a killed run are merged again."""
    dirs = {c.name for c in children if c.is_dir}
    for c in children:
        m = _MERGING.match(c.name) if c.is_dir else None
        if m and m.group("name") in dirs:
            target = posixpath.join(folder, m.group("name")) if folder else m.group("name")
            plan.actions.append(Action(MERGE, target, targets=(Entry(target, kind="folder"), c),
                                       reason="finishing an interrupted merge", data="resume"))


class _DedupeRunner:
    def __init__(self, remote: Remote):
        self.remote = remote

    def run(self, a: Action) -> int:
        if a.kind == RENAME:
            self.remote.move(a.targets[0], a.data)
            return 0
        if a.kind == MERGE:
            self._merge(a)
            return 0
        raise ValueError(f"dedupe cannot run a {a.kind!r} action")

    def _merge(self, a: Action) -> None:
        """Move the younger folder's children into the oldest one, never over a file.

        ``move`` replaces a same-named file at its destination, so children whose
        name is taken are handled first: an identical file is trashed, a different
        one gets a distinct name, a folder becomes ``NAME (merging ID)`` inside
        the target and is merged when the target is visited.
        """
        from .names import numbered

        keep, extra = a.targets
        parent = posixpath.dirname(a.path)
        if a.data == "resume":
            tmp = extra.path
        else:
            name = posixpath.basename(a.path)
            tmp = posixpath.join(parent, _merging_name(name, extra)) if parent else \
                _merging_name(name, extra)
            self.remote.move(extra, tmp)
        there = self.remote.list(a.path)
        taken = {e.name for e in there}
        for child in self.remote.list(tmp):
            same = [e for e in there if e.name == child.name]
            if not same:
                dest = child.name
            elif child.is_dir:
                dest = _merging_name(child.name, child)
            elif any(not e.is_dir and e.md5 and e.md5 == child.md5 and e.size == child.size
                     for e in same):
                self.remote.delete(child, permanent=False)
                continue
            else:
                n = 2
                while numbered(child.name, n) in taken:
                    n += 1
                dest = numbered(child.name, n)
                log.warning("%s: a different file of that name is in %s; moved as %s",
                            child.path, a.path, dest)
            taken.add(dest)
            self.remote.move(child, posixpath.join(a.path, dest))
        if self.remote.list(tmp):
            raise NotFound(f"{tmp}: not empty after moving its children; left in place")
        self.remote.delete(tmp, permanent=False)
