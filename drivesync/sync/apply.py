"""Run a Plan with a thread pool; the one place where --dry-run stops everything.

Phases: folder creates one at a time (parents first, so parallel uploads never
race to create the same folder twice), then transfers in parallel, then deletes.
An error on one item is recorded and the rest go on; a quota or auth error
cancels what has not started, lets running transfers finish, and is raised.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from ..errors import AuthError, DiskFull, DriveSyncError, NetworkDown, QuotaExceeded
from ..outcome import Problem
from ..progress import NULL_PROGRESS, Progress
from .plan import DELETE, MKDIR, SKIP, TRANSFER_KINDS, Action, Plan

log = logging.getLogger(__name__)

#: Errors after which no further request can succeed: stop the whole run.
FATAL = (QuotaExceeded, AuthError, DiskFull, NetworkDown)


@dataclass
class ApplyReport:
    done: Counter = field(default_factory=Counter)   # action kind -> count completed
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    failed: int = 0
    left_files: int = 0      # transfers not done (failed, cancelled)
    left_bytes: int = 0
    fatal: Optional[DriveSyncError] = None


def apply_plan(plan: Plan, run: Callable[[Action], int], *, jobs: int = 4,
               dry_run: bool = False, progress: Progress = NULL_PROGRESS,
               serial: Sequence[str] = (MKDIR,), last: Sequence[str] = (DELETE,),
               desc: str = "", interrupt: Callable[[bool], None] = lambda flag: None
               ) -> ApplyReport:
    """Execute ``plan`` by calling ``run(action)`` (returns bytes moved) for each action.

    With ``dry_run`` nothing is called and the report is empty. On Ctrl-C,
    ``interrupt(True)`` makes running transfers stop (``Remote.set_interrupted``),
    the workers are joined, ``interrupt(False)`` is called and KeyboardInterrupt
    is raised: no thread goes on uploading after the call returned.
    """
    report = ApplyReport()
    if dry_run:
        return report
    report.done[SKIP] = len(plan.of(SKIP))
    first = [a for a in plan.actions if a.kind in serial]
    middle = [a for a in plan.actions if a.kind not in serial and a.kind not in last
              and a.kind != SKIP]
    final = [a for a in plan.actions if a.kind in last]
    transfers = [a for a in middle if a.kind in TRANSFER_KINDS]
    progress.on_start(files=len(transfers), bytes=sum(a.size for a in transfers),
                      desc=desc or "files")
    lock = threading.Lock()
    try:
        for phase, width in ((first, 1), (middle, jobs), (final, jobs)):
            if report.fatal is not None:
                _count_left(report, phase)
                continue
            _run_phase(phase, run, width, report, lock, progress, interrupt)
    finally:
        progress.on_done()
    return report


def _count_left(report: ApplyReport, actions: Sequence[Action]) -> None:
    for a in actions:
        if a.kind in TRANSFER_KINDS:
            report.left_files += 1
            report.left_bytes += a.size


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

    def settle(a: Action, fut: Future) -> None:
        exc = fut.exception() if not fut.cancelled() else _Cancelled()
        if exc is None:
            return
        if a.kind in TRANSFER_KINDS:
            report.left_files += 1
            report.left_bytes += a.size
        if isinstance(exc, _Cancelled):
            return
        if isinstance(exc, FATAL):
            if report.fatal is None:
                report.fatal = exc
            stop.set()
            return
        if isinstance(exc, (DriveSyncError, OSError, ValueError)):
            log.info("%s %s failed: %s", a.kind, a.path, exc)  # listed again at the end
            report.failed += 1
            report.problems.append(Problem(a.path or a.local, f"{a.kind}: {exc}"))
            return
        raise exc  # a bug: let it surface

    pool = ThreadPoolExecutor(max_workers=max(1, width), thread_name_prefix="drivesync")
    futures: dict[Future, Action] = {}
    try:
        for a in actions:
            futures[pool.submit(one, a)] = a
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                settle(futures[fut], fut)
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


class _Cancelled(Exception):
    """An action not started because the run is stopping."""
