"""Run a Plan: the engine of push, pull, dedupe and prune, and the one dry-run gate.

A verb plans with the same code for a dry and a real run and hands the plan
here; only this module decides whether anything acts. With ``dry_run`` nothing
runs: the report is empty but for ``blockers``, which become warnings. A real
run, in order: ``blockers`` are raised (nothing can be done: the disk is too
small); ``ask`` goes to ``progress.confirm`` (a no stops with ``confirmed``
False); ``prepare`` runs (make the target folder); then the phases: ``serial``
kinds one at a time (folders, parents first, so parallel uploads never race to
create the same folder twice), the other actions in parallel (transfers),
DELETE actions batched through ``remote.delete_many`` (one request per 100 on
Drive), and ``last`` kinds (empty the trash). An error on one item is recorded
and the rest go on; a quota or auth error cancels what has not started, lets
running transfers finish, and is kept in ``report.fatal`` for the verb to raise
as a :class:`~drivesync.errors.Stopped` with its outcome.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from ..config import Settings
from ..errors import AuthError, DiskFull, DriveSyncError, NetworkDown, NotFound, QuotaExceeded
from ..outcome import Problem
from ..progress import NULL_PROGRESS, Progress
from ..remotes.base import Remote
from ..types import Entry
from .plan import DELETE, EMPTY_TRASH, MKDIR, SKIP, TRANSFER_KINDS, Action, Plan

log = logging.getLogger(__name__)

#: Errors after which no further request can succeed: stop the whole run.
FATAL = (QuotaExceeded, AuthError, DiskFull, NetworkDown)


@dataclass(frozen=True)
class Ask:
    """What to ask before a destructive plan runs (``items``: one line per change)."""

    question: str
    items: Sequence[str] = ()


@dataclass
class ApplyReport:
    done: Counter = field(default_factory=Counter)   # action kind -> count completed
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    failed: int = 0
    left_files: int = 0      # transfers not done (failed, cancelled)
    left_bytes: int = 0
    fatal: Optional[DriveSyncError] = None
    confirmed: bool = True   # False: ``ask`` was answered no and nothing ran
    #: what the DELETE actions removed, with the action each came from
    removed: list[tuple[Action, Entry]] = field(default_factory=list)
    #: path -> why, for every target a DELETE could not remove (gone already is no failure)
    delete_errors: dict[str, DriveSyncError] = field(default_factory=dict)


def apply_plan(plan: Plan, run: Callable[[Action], int], *, remote: Remote,
               jobs: int = Settings.jobs, dry_run: bool = False, progress: Progress = NULL_PROGRESS,
               serial: Sequence[str] = (MKDIR,), last: Sequence[str] = (EMPTY_TRASH,),
               ask: Optional[Ask] = None, prepare: Callable[[], object] = lambda: None,
               blockers: Sequence[tuple[str, DriveSyncError]] = (), desc: str = ""
               ) -> ApplyReport:
    """Execute ``plan``: ``run(action)`` (returns bytes moved) for each action but
    SKIP and DELETE, which the engine does itself.

    On Ctrl-C, running transfers are told to stop (``remote.set_interrupted``),
    the workers are joined and KeyboardInterrupt is raised: no thread goes on
    uploading after the call returned.
    """
    report = ApplyReport()
    if dry_run:
        report.warnings += [Problem(path, str(exc)) for path, exc in blockers]
        return report
    for _path, exc in blockers:
        raise exc
    if ask is not None and not progress.confirm(ask.question, ask.items):
        report.confirmed = False
        return report
    report.done[SKIP] = len(plan.of(SKIP))
    phases = _phases(plan, serial, last, jobs)
    try:
        prepare()
    except FATAL as exc:
        report.fatal = exc
    transfers = [a for a in plan.actions if a.kind in TRANSFER_KINDS]
    if transfers:
        progress.on_start(files=len(transfers), bytes=sum(a.size for a in transfers),
                          desc=desc or "files")
    lock = threading.Lock()
    try:
        for actions, width in phases:
            if report.fatal is not None:
                _count_left(report, actions)
            elif width == 0:
                _delete_batched(actions, remote, report)
            else:
                _run_phase(actions, run, width, report, lock, progress,
                           remote.set_interrupted)
    finally:
        if transfers:
            progress.on_done()
    return report


def _phases(plan: Plan, serial: Sequence[str], last: Sequence[str],
            jobs: int) -> list[tuple[list[Action], int]]:
    """(actions, parallel width) in the order they run; width 0: batched deletes."""
    def of(test: Callable[[Action], bool]) -> list[Action]:
        return [a for a in plan.actions if test(a)]

    ends = set(serial) | set(last) | {SKIP, DELETE}
    return [(of(lambda a: a.kind in serial), 1), (of(lambda a: a.kind not in ends), jobs),
            (of(lambda a: a.kind == DELETE), 0), (of(lambda a: a.kind in last), 1)]


def _count_left(report: ApplyReport, actions: Sequence[Action]) -> None:
    for a in actions:
        if a.kind in TRANSFER_KINDS:
            report.left_files += 1
            report.left_bytes += a.size


def _delete_batched(actions: Sequence[Action], remote: Remote, report: ApplyReport) -> None:
    """Every DELETE's targets in one ``delete_many`` per kind (trash / for good)."""
    for permanent in (True, False):
        group = [a for a in actions if a.permanent == permanent]
        targets = [t for a in group for t in a.targets]
        if not targets:
            continue
        failed = {p: e for p, e in remote.delete_many(targets, permanent=permanent).items()
                  if not isinstance(e, NotFound)}   # already gone: not a failure
        for a in group:
            bad = [t for t in a.targets if t.path in failed]
            report.removed += [(a, t) for t in a.targets if t.path not in failed]
            report.done[DELETE] += not bad
            for t in bad:
                exc = failed.pop(t.path, None)
                if exc is not None:     # one line per path, same-named copies share it
                    report.delete_errors[t.path] = exc
                    report.problems.append(Problem(t.path, f"delete: {exc}"))
                    report.failed += 1


def _run_phase(actions: Sequence[Action], run: Callable[[Action], int], width: int,
               report: ApplyReport, lock: threading.Lock, progress: Progress,
               interrupt: Callable[[bool], None]) -> None:
    if not actions:
        return
    stop = threading.Event()

    def one(a: Action) -> None:
        if stop.is_set():
            raise _Cancelled()
        moved = run(a)
        with lock:
            report.done[a.kind] += 1
            report.bytes += moved
        if a.kind in TRANSFER_KINDS:
            progress.on_progress(files=1)

    pool = ThreadPoolExecutor(max_workers=max(1, width), thread_name_prefix="drivesync")
    futures: dict[Future, Action] = {}
    try:
        for a in actions:
            futures[pool.submit(one, a)] = a
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                if _settle(futures[fut], fut, report):
                    stop.set()
            if stop.is_set():
                for fut in pending:
                    fut.cancel()
    except BaseException:
        stop.set()
        interrupt(True)
        pool.shutdown(wait=True, cancel_futures=True)  # prompt: transfers stop at once
        interrupt(False)
        raise
    pool.shutdown(wait=True)


def _settle(a: Action, fut: Future, report: ApplyReport) -> bool:
    """Record how ``a`` ended; True when the run must stop (a fatal error)."""
    exc = fut.exception() if not fut.cancelled() else _Cancelled()
    if exc is None:
        return False
    if a.kind in TRANSFER_KINDS:
        report.left_files += 1
        report.left_bytes += a.size
    if isinstance(exc, _Cancelled):
        return False
    if isinstance(exc, FATAL):
        if report.fatal is None:
            report.fatal = exc
        return True
    if isinstance(exc, (DriveSyncError, OSError, ValueError)):
        log.info("%s %s failed: %s", a.kind, a.path, exc)  # listed again at the end
        report.failed += 1
        report.problems.append(Problem(a.path or a.local, f"{a.kind}: {exc}"))
        return False
    raise exc  # a bug: let it surface


class _Cancelled(Exception):
    """An action not started because the run is stopping."""
