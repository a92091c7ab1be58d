"""Run a prune plan against a Remote: one listing per folder, batched deletes, under a lock.

``recursive`` prunes every folder below ``path`` that holds checkpoints, each
as its own set of families with its own plan (Ultralytics writes one
``runs/detect/<name>/weights/`` per run); the merged plan is what runs.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..config import load_settings
from ..errors import DriveSyncError, Unreadable, UsageError
from ..outcome import Outcome, Problem
from ..remotes.base import Remote, is_read_error
from ..types import Entry, Quota
from .families import parse_checkpoint
from .lease import spare_leased_newest
from .lock import FolderLock, lock_path
from .policy import PrunePlan, PrunePolicy, select_prunable

log = logging.getLogger(__name__)


@dataclass
class PruneResult(Outcome):
    """What a prune planned and did; ``problems`` = ``unreadable`` + ``failed``."""

    plan: PrunePlan = field(default_factory=PrunePlan)
    deleted: list[Entry] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)   # deletes that failed: path, error
    bytes_freed: int = 0
    requests: int = 0            # remote requests this run used (remote.stats)
    trash_emptied: bool = False
    quota: Optional[Quota] = None
    #: folders (recursive) that could not be listed: path, error; none of their
    #: checkpoints was considered or deleted
    unreadable: list[Problem] = field(default_factory=list)

    def could_not_list(self, path: str, why: str) -> None:
        self.unreadable.append(Problem(path, why))
        self.problems.append(Problem(path, why))

    def could_not_delete(self, path: str, why: str) -> None:
        self.failed.append(Problem(path, why))
        self.problems.append(Problem(path, why))


def default_lock_dir(remote: Remote) -> Path:
    settings = getattr(remote, "settings", None)
    if settings is not None and hasattr(settings, "resolved_state_dir"):
        return settings.resolved_state_dir()
    return load_settings().resolved_state_dir()


def checkpoint_folders(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Walked ``entries`` by parent folder, only for folders holding a checkpoint."""
    by_folder: dict[str, list[Entry]] = {}
    for e in entries:
        by_folder.setdefault(e.parent, []).append(e)
    return {folder: items for folder, items in sorted(by_folder.items())
            if any(parse_checkpoint(e) is not None for e in items)}


def merge_plans(plans: dict[str, PrunePlan]) -> PrunePlan:
    """One plan from per-folder plans (notes name their folder)."""
    out = PrunePlan()
    for folder, plan in plans.items():
        out.keep += plan.keep
        out.delete += plan.delete
        out.ignored += plan.ignored
        out.bytes_freed += plan.bytes_freed
        out.checkpoint_bytes += plan.checkpoint_bytes
        out.checkpoint_bytes_after += plan.checkpoint_bytes_after
        out.budget_met = out.budget_met and plan.budget_met
        out.notes += [f"{folder or '.'}: {note}" for note in plan.notes]
    return out


def _listing(read: Callable[[], list[Entry]], where: str) -> list[Entry]:
    """``read()``, with a read error said as Unreadable: exit 4, nothing deleted."""
    try:
        return read()
    except DriveSyncError as exc:
        if isinstance(exc, Unreadable) or not is_read_error(exc):
            raise
        raise Unreadable(f"{where}: cannot list ({exc}); nothing was deleted") from exc


def prune(remote: Remote, path: str = "", *, policy: PrunePolicy, permanent: bool = False,
          empty_trash: bool = False, dry_run: bool = False, lock_dir: Optional[Path] = None,
          confirm: Optional[Callable[[PrunePlan], bool]] = None, recursive: bool = False,
          now: Optional[float] = None, spare_leased: bool = True) -> PruneResult:
    """List folder ``path`` once, plan with ``policy`` and delete (unless ``dry_run``).

    ``confirm`` is asked with the plan before anything is deleted (the CLI's
    interactive prompt); it runs under the lock, so what it shows is exactly what
    gets deleted. ``empty_trash`` empties the remote's whole trash afterwards.
    ``recursive``: every folder below ``path`` with checkpoints gets its own plan
    (``max_bytes`` applies per folder; ``min_free`` is refused, since which run's
    checkpoints should go first is the user's call) and its own lock, taken
    before anything is deleted. ``now`` is what ``policy.min_age`` counts from.
    Raises LockedError (exit 8) when another run holds a folder's lock, and
    Unreadable (exit 4, nothing deleted) when ``path`` cannot be listed; with
    ``recursive``, subfolders that cannot be listed are skipped and named in
    ``result.unreadable``. The newest checkpoint of a folder under a live launch
    lease is never deleted, unless ``spare_leased`` is False: the launch holding
    the lease prunes its own folder to the user's budget (it is the one writer there).
    """
    if recursive and policy.min_free is not None:
        raise UsageError("--min-free cannot be combined with --recursive: prune each run's "
                         "folder with --min-free, or use --max-bytes (per folder)")
    where = remote.address + (f"/{path}" if path else "")
    locks = lock_dir or default_lock_dir(remote)
    start = remote.stats.requests
    with ExitStack() as held:
        held.enter_context(FolderLock(lock_path(locks, remote.address, path), where))
        unreadable: list[tuple[str, DriveSyncError]] = []
        if recursive:
            folders = checkpoint_folders(list(_listing(lambda: list(
                remote.walk(path, unreadable=unreadable)), where)))
            for folder in folders:
                if folder.strip("/") != path.strip("/"):
                    held.enter_context(FolderLock(lock_path(locks, remote.address, folder),
                                                  f"{remote.address}/{folder}"))
            quota = None
            plan = merge_plans({folder: select_prunable(items, policy, permanent=permanent,
                                                        empty_trash=empty_trash, now=now)
                                for folder, items in folders.items()})
        else:
            entries = _listing(lambda: remote.list(path), where)
            quota = remote.quota() if policy.min_free is not None else None
            plan = select_prunable(entries, policy, quota=quota, permanent=permanent,
                                   empty_trash=empty_trash, now=now)
            folders = {path: entries}
        if spare_leased:
            spare_leased_newest(remote, plan, folders)   # a live launch is writing there
        result = PruneResult(plan=plan, dry_run=dry_run, quota=quota)
        for p, e in unreadable:
            result.could_not_list(p, str(e))
        if dry_run:
            result.requests = remote.stats.requests - start
            return result
        if confirm is not None and plan.delete and not confirm(plan):
            result.confirmed = False
            result.requests = remote.stats.requests - start
            return result
        targets = [d.entry for d in plan.delete]
        failures = remote.delete_many(targets, permanent=permanent) if targets else {}
        for p, exc in failures.items():
            result.could_not_delete(p, str(exc) or type(exc).__name__)
        result.deleted = [e for e in targets if e.path not in failures]
        result.bytes_freed = sum(e.size for e in result.deleted)
        for e in result.deleted:  # the address in full: these lines end up in cron logs
            log.info("%s %s/%s (%d bytes)", "deleted" if permanent else "trashed",
                     remote.address, e.path, e.size)
        for p, msg in result.failed:  # INFO: result.failed is the report
            log.info("could not delete %s/%s: %s", remote.address, p, msg)
        if empty_trash:
            remote.empty_trash()
            result.trash_emptied = True
        result.requests = remote.stats.requests - start
        return result
