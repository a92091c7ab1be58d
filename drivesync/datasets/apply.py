"""The one place a dataset run writes, and so the one dry-run gate.

Every verb that changes an output folder (prepare, shard, convert, configs)
plans first - shard slots, then batches of file actions (link, copy, move,
write a label) that are journaled before they run - and hands each action to
the :class:`Apply` it was given: the file ops go to its executor, and the
lock, journal, manifest, configs and report go through its methods. A dry
run gets a :class:`DryRun` instead, which takes the same calls and writes
nothing at all (no folder, no report, no lock file); it logs what it would
do. So a dry run and a real run of the same input walk the same code up to
here, and ``dry_run`` is read in one place: :func:`apply_for`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from typing import Callable, ContextManager, Optional, Sequence, TextIO, TypeVar

from ..progress import Progress
from .lock import out_lock
from .manifest import Entry, FileOp, Journal, Manifest, entry_line, save_manifest
from .names import display
from .output import recover
from .place import Executor
from .report import Report, atomic_write

log = logging.getLogger(__name__)

T = TypeVar("T")


class Apply:
    """Carries out a run's plan in ``out``: file actions, journal, manifest, texts, report."""

    dry_run = False
    executor_type = Executor

    def __init__(self, out: str, mode: str, report: Report):
        self.out, self.mode, self.report = out, mode, report

    def executor(self) -> Executor:
        """An executor for file actions (one per process: workers make their own)."""
        return self.executor_type(self.out, self.mode, self.report)

    def lock(self) -> ContextManager[None]:
        return out_lock(self.out)

    def recover(self, progress: Progress) -> int:
        """Finish an interrupted run's journal, if there is an output to finish."""
        if not os.path.isdir(self.out):
            return 0
        return recover(self.out, report=self.report, progress=progress)

    def makedirs(self) -> None:
        os.makedirs(self.out, exist_ok=True)

    def write(self, path: str, text: str) -> None:
        """A whole text file (configs, classes.txt), atomically."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, text)

    def journal(self, header: dict) -> Journal:
        return Journal(self.out, header)

    def body(self, path: str) -> TextIO:
        """A file for manifest lines streamed while the run goes (see :func:`save_manifest`)."""
        return open(path, "w", encoding="utf-8", newline="\n")

    def save_manifest(self, m: Manifest, **kw) -> None:
        save_manifest(self.out, m, **kw)

    def remove(self, path: str) -> None:
        os.unlink(path)

    def write_report(self) -> Optional[str]:
        return str(self.report.write(self.out))

    def read_back(self, step: Callable[[], T]) -> Optional[T]:
        """Run a step that reads what was written (the check); a dry run has nothing to read."""
        return step()


class DryExecutor(Executor):
    """Takes file actions, logs what it would do, touches nothing."""

    def __init__(self, out: str, mode: str, report: Report):
        super().__init__(out, mode, report)
        self.would: Counter = Counter()  # action kind -> how many

    def run(self, op: FileOp, *, fresh: bool = False) -> bool:
        src, dst, _, _, text = op
        kind = "write" if text is not None else self.mode
        self.would[kind] += 1
        log.debug("would %s %s -> %s", kind, display(src), dst)
        return True


class _NullJournal:
    path = ""

    def __init__(self, out: str, header: dict):
        pass

    def add(self, entries: Sequence[Entry]) -> list:
        return [entry_line(*e, text=True) for e in entries]

    def close(self, *, remove: bool) -> None:
        pass


class _NullFile:
    def write(self, text: str) -> int:
        return len(text)

    def close(self) -> None:
        pass


class DryRun(Apply):
    """Reads and plans, and writes nothing at all: no folder, no report, no lock file."""

    dry_run = True
    executor_type = DryExecutor

    def lock(self) -> ContextManager[None]:
        return contextlib.nullcontext()

    def recover(self, progress: Progress) -> int:
        return 0  # a dry run reads the output as it is, journal and all

    def makedirs(self) -> None:
        pass

    def write(self, path: str, text: str) -> None:
        log.info("would write %s", display(path))

    def journal(self, header: dict) -> Journal:
        return _NullJournal(self.out, header)  # type: ignore[return-value]

    def body(self, path: str) -> TextIO:
        return _NullFile()  # type: ignore[return-value]

    def save_manifest(self, m: Manifest, **kw) -> None:
        pass

    def remove(self, path: str) -> None:
        pass

    def write_report(self) -> Optional[str]:
        return None

    def read_back(self, step: Callable[[], T]) -> Optional[T]:
        return None


def apply_for(out: str, mode: str, report: Report, *, dry_run: bool) -> Apply:
    """The Apply for a run: the only place that reads ``dry_run``."""
    return (DryRun if dry_run else Apply)(os.path.abspath(out), mode, report)
