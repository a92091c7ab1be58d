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

from ..errors import DriveSyncError, Stopped, Unreadable, UsageError
from ..outcome import Outcome, Problem
from ..progress import NULL_PROGRESS, Progress, columns, human_bytes
from ..remotes.base import Remote, is_read_error
from ..sync.apply import Ask, apply_plan
from ..sync.plan import DELETE, EMPTY_TRASH, Action, Plan
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
          lock_dir: Path, empty_trash: bool = False, dry_run: bool = False,
          recursive: bool = False, now: Optional[float] = None, spare_leased: bool = True,
          progress: Progress = NULL_PROGRESS) -> PruneResult:
    """List folder ``path`` once, plan with ``policy`` and delete (unless ``dry_run``).

    The plan becomes DELETE actions (and an empty-trash one) run by the sync
    engine: batched deletes, and ``progress.confirm`` asked with the plan
    before anything is deleted (the CLI's prompt); it runs under the lock, so
    what it shows is exactly what gets deleted. ``empty_trash`` empties the
    remote's whole trash afterwards. ``recursive``: every folder below ``path``
    with checkpoints gets its own plan (``max_bytes`` applies per folder;
    ``min_free`` is refused, since which run's checkpoints should go first is
    the user's call) and its own lock, taken before anything is deleted. ``now``
    is what ``policy.min_age`` counts from. Raises LockedError (exit 8) when
    another run holds a folder's lock, and Unreadable (exit 4, nothing deleted)
    when ``path`` cannot be listed; with ``recursive``, subfolders that cannot be
    listed are skipped and named in ``result.unreadable``. The newest checkpoint
    of a folder under a live launch lease is never deleted, unless
    ``spare_leased`` is False: the launch holding the lease prunes its own folder
    to the user's budget (it is the one writer there). The folder locks are files
    in ``lock_dir`` (the CLI passes its state dir: ``Settings.resolved_state_dir``).
    """
    if recursive and policy.min_free is not None:
        raise UsageError("--min-free cannot be combined with --recursive: prune each run's "
                         "folder with --min-free, or use --max-bytes (per folder)")
    where = remote.address + (f"/{path}" if path else "")
    locks = Path(lock_dir)
    start = remote.stats.requests
    with ExitStack() as held:
        held.enter_context(FolderLock(lock_path(locks, remote.address, path), where))
        unreadable: list[tuple[str, DriveSyncError]] = []
        plan, folders, quota = _plan(remote, path, policy, permanent=permanent,
                                     empty_trash=empty_trash, now=now, recursive=recursive,
                                     unreadable=unreadable, lock=lambda folder: held.enter_context(
                                         FolderLock(lock_path(locks, remote.address, folder),
                                                    f"{remote.address}/{folder}")))
        if spare_leased:
            spare_leased_newest(remote, plan, folders)   # a live launch is writing there
        result = PruneResult(plan=plan, dry_run=dry_run, quota=quota)
        for p, e in unreadable:
            result.could_not_list(p, str(e))
        fatal = _run(remote, result, permanent=permanent, empty_trash=empty_trash,
                     progress=progress)
        result.requests = remote.stats.requests - start
        if fatal is not None:
            raise Stopped.of(fatal, result)
        return result


def _plan(remote: Remote, path: str, policy: PrunePolicy, *, permanent: bool,
          empty_trash: bool, now: Optional[float], recursive: bool,
          unreadable: list[tuple[str, DriveSyncError]], lock: Callable[[str], object]
          ) -> tuple[PrunePlan, dict[str, list[Entry]], Optional[Quota]]:
    """(plan, the entries of each folder planned, quota): pure but for the listing.
    ``lock(folder)`` takes each subfolder's lock (recursive) before anything runs."""
    where = remote.address + (f"/{path}" if path else "")
    if not recursive:
        entries = _listing(lambda: remote.list(path), where)
        quota = remote.quota() if policy.min_free is not None else None
        return (select_prunable(entries, policy, quota=quota, permanent=permanent,
                                empty_trash=empty_trash, now=now), {path: entries}, quota)
    folders = checkpoint_folders(list(_listing(lambda: list(
        remote.walk(path, unreadable=unreadable)), where)))
    for folder in folders:
        if folder.strip("/") != path.strip("/"):
            lock(folder)
    plan = merge_plans({folder: select_prunable(items, policy, permanent=permanent,
                                                empty_trash=empty_trash, now=now)
                        for folder, items in folders.items()})
    return plan, folders, None


def plan_rows(plan: PrunePlan, *, done: bool) -> list[list[str]]:
    """The plan as table rows: ACTION, SIZE, PATH, REASON (what the prompt shows)."""
    verb = "deleted" if done else "delete"
    rows = [["keep", human_bytes(d.entry.size), d.entry.path, d.reason] for d in plan.keep]
    rows += [[verb, human_bytes(d.entry.size), d.entry.path, d.reason] for d in plan.delete]
    return rows


ROWS_HEADER = ["ACTION", "SIZE", "PATH", "REASON"]


def _run(remote: Remote, result: PruneResult, *, permanent: bool, empty_trash: bool,
         progress: Progress) -> Optional[DriveSyncError]:
    """The plan as DELETE actions (and an empty-trash one) through the sync engine;
    the error that stopped it, if one did."""
    plan = result.plan
    actions = [Action(DELETE, d.entry.path, size=d.entry.size, targets=(d.entry,),
                      permanent=permanent, reason=d.reason) for d in plan.delete]
    if empty_trash:
        actions.append(Action(EMPTY_TRASH, ""))
    where = "permanently" if permanent else "to the trash"
    ask = Ask(f"delete {len(plan.delete)} files ({human_bytes(plan.bytes_freed)}) {where}?",
              columns(plan_rows(plan, done=False), ROWS_HEADER)) if plan.delete else None

    def run(a: Action) -> int:
        if a.kind != EMPTY_TRASH:  # deletes run in the engine; nothing else is planned
            raise ValueError(f"prune cannot run a {a.kind!r} action")
        remote.empty_trash()
        return 0

    report = apply_plan(Plan(actions), run, remote=remote, jobs=1, dry_run=result.dry_run,
                        progress=progress, ask=ask, desc="prune")
    result.confirmed = report.confirmed
    result.deleted = [e for _, e in report.removed]
    result.bytes_freed = sum(e.size for e in result.deleted)
    for e in result.deleted:  # the address in full: these lines end up in cron logs
        log.info("%s %s/%s (%d bytes)", "deleted" if permanent else "trashed",
                 remote.address, e.path, e.size)
    for p, exc in report.delete_errors.items():  # INFO: result.failed is the report
        log.info("could not delete %s/%s: %s", remote.address, p, exc)
        result.could_not_delete(p, str(exc) or type(exc).__name__)
    result.problems += [p for p in report.problems if p.path not in report.delete_errors]
    result.trash_emptied = report.done[EMPTY_TRASH] > 0
    return report.fatal
