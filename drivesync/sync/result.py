"""What push, pull and dedupe return: counts, cost and every problem met.

Both extend :class:`~drivesync.outcome.Outcome` (``dry_run``, ``confirmed``,
``problems``, ``warnings``, ``ok``, ``to_dict``), so the CLI ends them the
same way (``Context.finish``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..outcome import Outcome, Problem
from .plan import Action


@dataclass
class SyncResult(Outcome):
    """The outcome of one push or pull (``plan`` is the plan's summary)."""

    plan: dict[str, int] = field(default_factory=dict)
    uploaded: int = 0
    downloaded: int = 0
    skipped: int = 0
    deleted: int = 0
    duplicates_removed: int = 0
    packed: int = 0          # shards uploaded as tar + manifest
    unpacked: int = 0        # shards unpacked locally
    failed: int = 0
    bytes: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    left_files: int = 0
    left_bytes: int = 0
    actions: list[Action] = field(default_factory=list)   # the plan but its skips

    def to_dict(self) -> dict[str, Any]:
        return _with_actions(self)


@dataclass
class DedupeResult(Outcome):
    """The outcome of one dedupe run (``confirmed`` False: nothing was changed)."""

    plan: dict[str, int] = field(default_factory=dict)
    folders: int = 0          # folders examined
    deleted: int = 0          # identical duplicates removed
    renamed: int = 0
    merged: int = 0           # duplicate folders merged away
    failed: int = 0
    requests: int = 0
    seconds: float = 0.0
    conflicts: list[Problem] = field(default_factory=list)  # same name, other content
    actions: list[Action] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = _with_actions(self)
        d["conflicts"] = [Problem(*p).to_dict() for p in self.conflicts]
        del d["warnings"]   # dedupe says conflicts; its --json never had "warnings"
        return d


def _with_actions(result: Any) -> dict[str, Any]:
    """``Outcome.to_dict`` with each action as its small JSON form (path, size,
    reason...), not its whole payload (a shard's members, remote entries)."""
    d = Outcome.to_dict(replace(result, actions=[]))
    d["actions"] = [a.to_dict() for a in result.actions]
    return d
