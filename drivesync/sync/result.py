"""What push, pull and dedupe return: counts, cost and every problem met."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SyncResult:
    """The outcome of one push or pull (``plan`` is the plan's summary)."""

    plan: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
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
    confirmed: bool = True   # False: the deletions were not confirmed, nothing was changed
    problems: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["problems"] = [{"path": p, "reason": r} for p, r in self.problems]
        d["warnings"] = [{"path": p, "reason": r} for p, r in self.warnings]
        d["seconds"] = round(self.seconds, 3)
        return d


@dataclass
class DedupeResult:
    """The outcome of one dedupe run."""

    plan: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    folders: int = 0          # folders examined
    deleted: int = 0          # identical duplicates removed
    renamed: int = 0
    merged: int = 0           # duplicate folders merged away
    failed: int = 0
    requests: int = 0
    seconds: float = 0.0
    confirmed: bool = True    # False: the plan was not confirmed, nothing was changed
    problems: list[tuple[str, str]] = field(default_factory=list)   # failures
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # same name, other content
    actions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["problems"] = [{"path": p, "reason": r} for p, r in self.problems]
        d["conflicts"] = [{"path": p, "reason": r} for p, r in self.conflicts]
        d["seconds"] = round(self.seconds, 3)
        return d
