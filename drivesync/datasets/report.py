"""Collects bad input (file, line/field, reason) and writes it next to the output.

Batch steps never stop at the first bad item: they record it here, carry on
with the good ones, and the command ends with a summary and exit code 4. The
report keeps each finding's parts (for ``prepare-report.json``); a run's
outcome carries them as :class:`~drivesync.outcome.Problem` (``failures()``),
whose line is the report's line.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Union

from ..outcome import Problem
from .names import display

log = logging.getLogger(__name__)

# What a problem cost: the whole item was skipped, one box was skipped, or
# nothing was lost and it is only worth knowing (a renamed file, a background).
ITEM = "item"
BOX = "box"
NOTE = "note"


@dataclass(frozen=True)
class Finding:
    """One line of the report: the file, where in it (line, field), why, and what it cost."""

    file: str
    where: str
    reason: str
    skipped: str = ITEM

    def problem(self) -> Problem:
        """As the outcome carries it: the file and line/field, the reason and the cost."""
        where = f":{self.where}" if self.where else ""
        tag = {ITEM: "skipped item", BOX: "skipped box", NOTE: "note"}.get(
            self.skipped, self.skipped
        )
        return Problem(f"{self.file}{where}", f"{self.reason} [{tag}]")

    def line(self) -> str:
        return self.problem().line()


@dataclass
class Report:
    problems: List[Finding] = field(default_factory=list)

    def add(self, file: object, where: object, reason: str, *, skipped: str = ITEM) -> None:
        p = Finding(
            display(file) if file != "" else "", str(where) if where else "", reason, skipped
        )
        # INFO, not WARNING: the command prints a summary and the report file holds all
        log.debug("%s", p.line()) if skipped == NOTE else log.info("%s", p.line())
        self.problems.append(p)

    def extend(self, other: Report) -> None:
        self.problems.extend(other.problems)

    def count(self, skipped: str) -> int:
        return sum(1 for p in self.problems if p.skipped == skipped)

    def failures(self) -> List[Problem]:
        """What was skipped (items, boxes), as the outcome's problems; notes left out."""
        return [p.problem() for p in self.problems if p.skipped != NOTE]

    @property
    def failed(self) -> bool:
        """True when something was skipped (items or boxes): exit code 4."""
        return any(p.skipped != NOTE for p in self.problems)

    def summary(self) -> Dict[str, int]:
        c = Counter(p.skipped for p in self.problems)
        return {"skipped_items": c[ITEM], "skipped_boxes": c[BOX], "notes": c[NOTE]}

    def write(self, out: Union[str, Path], *, stem: str = "prepare-report") -> Path:
        """Write ``stem.txt`` (one line per problem) and ``stem.json``; returns the .txt path."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        txt = out / f"{stem}.txt"
        summary = self.summary()
        lines = [
            f"# {summary['skipped_items']} items skipped, {summary['skipped_boxes']} boxes "
            f"skipped, {summary['notes']} notes"
        ]
        lines += [p.line() for p in self.problems]
        atomic_write(txt, "\n".join(lines) + "\n")
        doc = {"summary": summary, "problems": [asdict(p) for p in self.problems]}
        atomic_write(out / f"{stem}.json", json.dumps(doc, indent=1) + "\n")
        return txt


def atomic_write(path: Union[str, Path], text: str, *, fsync: bool = True) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half.

    ``fsync=False`` for the many small labels a run writes: their text is also
    in the journal, and one fsync per label would cost seconds per thousand.
    """
    path = Path(path)
    tmp = path.with_name(f".drivesync-partial-{path.name}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
