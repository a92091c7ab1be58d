"""What every verb that changes something returns: one ``Problem`` type and one ``Outcome``.

Sync, dedupe, prune and prepare each extend :class:`Outcome` with their own
counts; the CLI reads ``ok``, ``problems`` and ``to_dict()`` the same way for
all of them, so "some items failed -> exit 4" is decided once. A run that has
to stop part-way (quota, network, disk) raises :class:`~drivesync.errors.Stopped`
carrying the outcome of what it did first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple


class Problem(NamedTuple):
    """One item that failed or was left alone, and why (a path and a sentence).

    A tuple, so ``for path, reason in outcome.problems`` reads naturally.
    """

    path: str
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def problems(pairs: Any) -> list[Problem]:
    """``Problem`` values from (path, reason) pairs or a {path: reason} mapping."""
    items = pairs.items() if hasattr(pairs, "items") else pairs
    return [p if isinstance(p, Problem) else Problem(str(p[0]), str(p[1])) for p in items]


@dataclass
class Outcome:
    """The common part of every verb's result.

    ``problems`` are failures (exit 4 when any), ``warnings`` are said but are
    not failures; ``confirmed`` is False when a prompt was declined and nothing
    changed.
    """

    dry_run: bool = False
    confirmed: bool = True
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))

    def warn(self, path: str, reason: str) -> None:
        self.warnings.append(Problem(path, reason))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: problems and warnings as {path, reason}, floats rounded, plus ``ok``."""
        d = asdict(self)
        for name, value in list(d.items()):
            if isinstance(value, list) and value and all(isinstance(v, Problem) for v in value):
                d[name] = [v.to_dict() for v in value]
            elif isinstance(value, float):
                d[name] = round(value, 3)
        d["problems"] = [Problem(*p).to_dict() for p in self.problems]
        d["warnings"] = [Problem(*p).to_dict() for p in self.warnings]
        d["ok"] = self.ok
        return d
