"""Checkpoint folders: recognise families, prune against a budget, find the latest.

``families`` names files, ``policy`` decides (pure), ``prune`` executes a plan
against a Remote under a lock, ``latest`` finds/pulls the newest complete one.
"""

from __future__ import annotations

from .families import Checkpoint, classify, parse_checkpoint
from .latest import complete_checkpoints, find_latest, pull_latest
from .policy import Decision, PrunePlan, PrunePolicy, parse_size, select_prunable
from .prune import PruneResult, prune

__all__ = [
    "Checkpoint", "classify", "parse_checkpoint",
    "complete_checkpoints", "find_latest", "pull_latest",
    "Decision", "PrunePlan", "PrunePolicy", "parse_size", "select_prunable",
    "PruneResult", "prune",
]
