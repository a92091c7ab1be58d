"""Run a prune plan against a Remote: one listing, batched deletes, under a lock."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..config import load_settings
from ..remotes.base import Remote
from ..types import Entry, Quota
from .lock import FolderLock, lock_path
from .policy import PrunePlan, PrunePolicy, select_prunable

log = logging.getLogger(__name__)


@dataclass
class PruneResult:
    plan: PrunePlan
    deleted: list[Entry] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)   # path -> error message
    bytes_freed: int = 0
    requests: int = 0            # remote requests this run used (remote.stats)
    dry_run: bool = False
    confirmed: bool = True       # False when a confirm callback said no
    trash_emptied: bool = False
    quota: Optional[Quota] = None


def default_lock_dir(remote: Remote) -> Path:
    settings = getattr(remote, "settings", None)
    if settings is not None and hasattr(settings, "resolved_state_dir"):
        return settings.resolved_state_dir()
    return load_settings().resolved_state_dir()


def prune(remote: Remote, path: str = "", *, policy: PrunePolicy, permanent: bool = False,
          empty_trash: bool = False, dry_run: bool = False, lock_dir: Optional[Path] = None,
          confirm: Optional[Callable[[PrunePlan], bool]] = None) -> PruneResult:
    """List folder ``path`` once, plan with ``policy`` and delete (unless ``dry_run``).

    ``confirm`` is asked with the plan before anything is deleted (the CLI's
    interactive prompt); it runs under the lock, so what it shows is exactly what
    gets deleted. ``empty_trash`` empties the remote's whole trash afterwards.
    Raises LockedError (exit 8) when another run holds this folder's lock.
    """
    where = remote.address + (f"/{path}" if path else "")
    start = remote.stats.requests
    with FolderLock(lock_path(lock_dir or default_lock_dir(remote), remote.address, path),
                    where):
        entries = remote.list(path)
        quota = remote.quota() if policy.min_free is not None else None
        plan = select_prunable(entries, policy, quota=quota, permanent=permanent,
                               empty_trash=empty_trash)
        result = PruneResult(plan=plan, dry_run=dry_run, quota=quota)
        if dry_run:
            result.requests = remote.stats.requests - start
            return result
        if confirm is not None and plan.delete and not confirm(plan):
            result.confirmed = False
            result.requests = remote.stats.requests - start
            return result
        targets = [d.entry for d in plan.delete]
        failures = remote.delete_many(targets, permanent=permanent) if targets else {}
        result.failed = {p: str(exc) or type(exc).__name__ for p, exc in failures.items()}
        result.deleted = [e for e in targets if e.path not in failures]
        result.bytes_freed = sum(e.size for e in result.deleted)
        for e in result.deleted:
            log.info("deleted %s (%d bytes)", e.path, e.size)
        for p, msg in result.failed.items():
            log.warning("could not delete %s: %s", p, msg)
        if empty_trash:
            remote.empty_trash()
            result.trash_emptied = True
        result.requests = remote.stats.requests - start
        return result
