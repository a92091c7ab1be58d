"""What to keep and what to delete in a checkpoint folder, and why (pure: no I/O).

Rules, in order of strength (README "Checkpoints" has the user-facing version):

0. *young* (never deleted, and left out of the rules below): a checkpoint
   modified less than ``min_age`` seconds ago may still be being written; the
   folder is planned as if it were not there yet (its bytes still count
   towards ``max_bytes``), and the next run decides about it;
1. *protected* (never deleted): the newest ``last``/``.backup``, ``best``,
   ``final`` and ``ema`` file of each family, and the family's newest complete
   checkpoint (so no family is ever left without something to resume from);
2. *retained* (never deleted to meet a budget): the newest ``keep_last``
   numbers of each family and every number that is a multiple of ``keep_every``;
3. identical copies (same md5 and size) are kept once: the copy with the
   strongest protection, then the newest, stays; the others are deleted unless
   they are themselves protected (a trainer resumes from ``last.pt`` by name even
   when ``best.pt`` holds the same bytes);
4. everything else is a *candidate*. Without a budget every candidate is
   deleted; with ``max_bytes``/``min_free`` candidates are deleted oldest first
   (incomplete ones before complete ones) only until the budget is met.

The plan is a fixpoint: it is recomputed on what would remain until that adds
no deletion, so running prune again right after deletes nothing.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..errors import UsageError
from ..progress import human_bytes
from ..types import Entry, Quota
from .families import NAMED_ROLES, NUMBERED, Checkpoint, classify, group_families
from .latest import incomplete_reasons, order_newest_first, young_reason

log = logging.getLogger(__name__)

PROTECTED, RETAINED, CANDIDATE = 2, 1, 0


@dataclass(frozen=True)
class PrunePolicy:
    """How much history to keep; sizes in bytes (see :func:`parse_size`)."""

    keep_last: int = 3
    keep_every: Optional[int] = None
    max_bytes: Optional[int] = None
    min_free: Optional[int] = None
    min_age: float = 0.0         # seconds; younger checkpoints are never deleted

    def __post_init__(self) -> None:
        if not self.min_age >= 0:   # also refuses NaN
            raise UsageError(f"min_age must be >= 0 seconds, got {self.min_age}")
        if self.keep_last < 0:
            raise UsageError(f"keep_last must be >= 0, got {self.keep_last}")
        if self.keep_every is not None and self.keep_every < 1:
            raise UsageError(f"keep_every must be >= 1, got {self.keep_every}")
        for name in ("max_bytes", "min_free"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageError(f"{name} must be >= 0 bytes, got {value}")

    @property
    def has_budget(self) -> bool:
        return self.max_bytes is not None or self.min_free is not None


@dataclass(frozen=True)
class Decision:
    entry: Entry
    reason: str


@dataclass
class PrunePlan:
    """Decisions for every checkpoint; ``ignored`` are the non-checkpoint items."""

    keep: list[Decision] = field(default_factory=list)
    delete: list[Decision] = field(default_factory=list)
    ignored: list[Entry] = field(default_factory=list)
    bytes_freed: int = 0            # checkpoint bytes the deletes remove from the folder
    budget_met: bool = True
    checkpoint_bytes: int = 0       # before
    checkpoint_bytes_after: int = 0
    free_before: Optional[int] = None   # quota free (limit - usage); None: unlimited/unknown
    free_after: Optional[int] = None    # projected, given permanent/empty_trash
    notes: list[str] = field(default_factory=list)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_UNITS = {"": 1, "b": 1,
          "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
          "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12}


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes from ``15G``, ``500MiB``, ``1.5GB`` or ``1048576``.

    Single letters and ``KiB/MiB/GiB/TiB`` are binary (like rclone and ``du``:
    Google's "15 GB" free quota is reported as 15 GiB); ``KB/MB/GB/TB`` are decimal.
    """
    m = _SIZE.match(str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise UsageError(f"{what}: expected a size like 15G, 500MiB, 1.5GB or 1048576, "
                         f"got {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


# ---- one pass ------------------------------------------------------------------
@dataclass
class _Pass:
    level: dict[int, int]
    why: dict[int, str]
    delete: dict[int, str]


def _protect(checkpoints: list[Checkpoint], policy: PrunePolicy) -> _Pass:
    """Protection level and reason of every checkpoint (before dedupe and budget)."""
    bad = incomplete_reasons(checkpoints)
    level: dict[int, int] = {}
    why: dict[int, str] = {}
    for (_parent, fam), members in group_families(checkpoints).items():
        label = repr(fam)
        ordered = order_newest_first(members)
        for role in NAMED_ROLES:
            of_role = [c for c in ordered if c.role == role]
            if of_role:
                level[id(of_role[0])] = PROTECTED
                why[id(of_role[0])] = f"newest {role} of family {label}"
        complete = [c for c in ordered if id(c) not in bad]
        if complete and id(complete[0]) not in level:
            level[id(complete[0])] = PROTECTED
            why[id(complete[0])] = f"newest complete checkpoint of family {label}"
        numbers = sorted({c.number for c in members if c.role == NUMBERED}, reverse=True)
        newest = set(numbers[:policy.keep_last])
        for c in members:
            if id(c) in level or c.role != NUMBERED:
                continue
            if c.number in newest:
                level[id(c)] = RETAINED
                why[id(c)] = f"one of the newest {policy.keep_last} numbered of family {label}"
            elif policy.keep_every and c.number % policy.keep_every == 0:
                level[id(c)] = RETAINED
                why[id(c)] = f"number {c.number} is a multiple of {policy.keep_every}"
        for c in members:
            if id(c) not in level:
                level[id(c)] = CANDIDATE
                why[id(c)] = _candidate_reason(c, policy, bad.get(id(c)))
            elif id(c) in bad:
                why[id(c)] += f" (incomplete: {bad[id(c)]})"
    return _Pass(level, why, {})


def _candidate_reason(c: Checkpoint, policy: PrunePolicy, incomplete: Optional[str]) -> str:
    if incomplete:
        return f"incomplete ({incomplete}), not the newest of its role"
    if c.role == NUMBERED:
        parts = [f"older than the newest {policy.keep_last} numbered" if policy.keep_last
                 else "numbered, and --keep-last is 0"]
        if policy.keep_every:
            parts.append(f"{c.number} not a multiple of {policy.keep_every}")
        return "; ".join(parts)
    return f"older {c.role} (a newer {c.role} of the family is kept)"


def _number_rules(checkpoints: list[Checkpoint], policy: PrunePolicy) -> dict[int, set[str]]:
    """Which numbering rules keep each numbered checkpoint: "newest" (--keep-last,
    which lapses as newer numbers arrive) and "every" (--keep-every, for good)."""
    rules: dict[int, set[str]] = {}
    for members in group_families(checkpoints).values():
        numbers = sorted({c.number for c in members if c.role == NUMBERED}, reverse=True)
        newest = set(numbers[:policy.keep_last])
        for c in members:
            if c.role == NUMBERED:
                rules[id(c)] = ({"newest"} if c.number in newest else set()) | (
                    {"every"} if policy.keep_every and c.number % policy.keep_every == 0
                    else set())
    return rules


def _outlives(keeper: Checkpoint, copy: Checkpoint, rules: dict[int, set[str]]) -> bool:
    """Will ``keeper`` stay kept at least as long as the retained ``copy`` would?

    A place (newest complete, a ``last`` the trainer rewrites) is not enough: it
    moves, and the next run would delete the last copy of a checkpoint the policy
    keeps (``epoch20`` under --keep-every 10, dropped for a twin ``epoch27``).
    """
    mine, theirs = rules.get(id(keeper), set()), rules.get(id(copy), set())
    if "every" in mine:
        return True
    return bool(mine) and "every" not in theirs


def _durability(c: Checkpoint, p: _Pass, rules: dict[int, set[str]]) -> int:
    """How long a retained copy stays kept: --keep-every for good, --keep-last for now."""
    if p.level[id(c)] != RETAINED:
        return 0
    mine = rules.get(id(c), set())
    return 2 if "every" in mine else 1 if "newest" in mine else 0


def _dedupe(checkpoints: list[Checkpoint], p: _Pass, rank: dict[int, int],
            policy: PrunePolicy) -> None:
    """Mark extra identical copies for deletion; the strongest/newest copy stays.

    A retained copy is only dropped for a copy that outlives it; when the copy
    that stays is protected by its place alone, the most durable retained copy
    stays beside it (kept for its number).
    """
    rules = _number_rules(checkpoints, policy)
    groups: dict[tuple[str, int], list[Checkpoint]] = {}
    for c in checkpoints:
        if c.entry.md5 and c.entry.size > 0:
            groups.setdefault((c.entry.md5, c.entry.size), []).append(c)
    for copies in groups.values():
        if len(copies) < 2:
            continue
        copies.sort(key=lambda c: (-p.level[id(c)], -_durability(c, p, rules), rank[id(c)]))
        keeper = copies[0]
        orphans = [c for c in copies[1:] if p.level[id(c)] == RETAINED
                   and not _outlives(keeper, c, rules)]
        anchor = max(orphans, key=lambda c: (_durability(c, p, rules), c.number or -1),
                     default=None)
        for c in copies[1:]:
            stays = anchor if c in orphans else keeper
            if p.level[id(c)] == PROTECTED:
                p.why[id(c)] += f" (identical to {keeper.entry.path}, kept for its name)"
            elif c is anchor or (stays is anchor and not _outlives(anchor, c, rules)):
                p.why[id(c)] += f" (identical to {keeper.entry.path}, kept for its number)"
            else:
                p.delete[id(c)] = f"identical copy of {stays.entry.path} (md5 {c.entry.md5})"


def _plan_once(checkpoints: list[Checkpoint], policy: PrunePolicy, *,
               free: Optional[int], frees_space: bool,
               pinned_bytes: int = 0) -> tuple[_Pass, bool, list[str]]:
    """One pass; ``free`` is the projected quota free space before this pass;
    ``pinned_bytes`` are checkpoints outside the plan (young) that stay anyway."""
    ordered = order_newest_first(checkpoints)
    rank = {id(c): i for i, c in enumerate(ordered)}   # 0 = newest
    p = _protect(checkpoints, policy)
    _dedupe(checkpoints, p, rank, policy)
    bad = incomplete_reasons(checkpoints)
    candidates = [c for c in ordered
                  if p.level[id(c)] == CANDIDATE and id(c) not in p.delete]
    # oldest first; incomplete files first of all
    candidates.sort(key=lambda c: (id(c) not in bad, -rank[id(c)]))
    removed = sum(c.entry.size for c in checkpoints if id(c) in p.delete)
    total = sum(c.entry.size for c in checkpoints) - removed + pinned_bytes
    if free is not None and frees_space:
        free += removed
    notes: list[str] = []

    def over_bytes() -> bool:
        return policy.max_bytes is not None and total > policy.max_bytes

    def short_free() -> bool:
        return policy.min_free is not None and free is not None and free < policy.min_free

    if not policy.has_budget:
        for c in candidates:
            p.delete[id(c)] = p.why[id(c)]
        return p, True, notes
    for c in candidates:
        if not (over_bytes() or (frees_space and short_free())):
            break
        if over_bytes():
            need = (f"checkpoints hold {human_bytes(total)} "
                    f"> --max-bytes {human_bytes(policy.max_bytes)}")
        else:
            need = f"free {human_bytes(free)} < --min-free {human_bytes(policy.min_free)}"
        p.delete[id(c)] = f"oldest unprotected: {need}; {p.why[id(c)]}"
        total -= c.entry.size
        if free is not None and frees_space:
            free += c.entry.size
    met = not over_bytes() and not short_free()
    if over_bytes():
        young = " and young" if pinned_bytes else ""
        notes.append(f"--max-bytes {human_bytes(policy.max_bytes)} not reachable: the protected"
                     f"{young} and retained checkpoints alone hold {human_bytes(total)}")
    if short_free():
        if frees_space:
            notes.append(f"--min-free {human_bytes(policy.min_free)} not reachable: deleting every "
                         f"unprotected checkpoint leaves {human_bytes(free)} free")
        else:
            notes.append(f"--min-free {human_bytes(policy.min_free)} not met ({human_bytes(free)} "
                         "free): deleting to the trash frees nothing until the trash is emptied; "
                         "use --permanent or --empty-trash")
    return p, met, notes


def select_prunable(entries: Sequence[Entry], policy: PrunePolicy, *,
                    quota: Optional[Quota] = None, permanent: bool = False,
                    empty_trash: bool = False, now: Optional[float] = None) -> PrunePlan:
    """Decide, for one folder listing, which checkpoints to delete and why.

    ``quota`` is needed when ``policy.min_free`` is set. Deleted files only stop
    counting against it when ``permanent`` is set or the trash is emptied
    afterwards (``empty_trash``, which also frees what the trash held already).
    ``now`` (default: the current time) is what ``policy.min_age`` counts from.
    """
    if policy.min_free is not None and quota is None:
        raise UsageError("--min-free needs the remote's storage quota")
    files = [e for e in entries if not e.is_dir]
    checkpoints = classify(files)
    is_ckpt = {id(c.entry) for c in checkpoints}
    plan = PrunePlan(ignored=[e for e in entries if id(e) not in is_ckpt])
    plan.checkpoint_bytes = sum(c.entry.size for c in checkpoints)
    frees_space = permanent or empty_trash
    free: Optional[int] = None
    if quota is not None and quota.limit is not None:
        free = quota.limit - quota.usage
        plan.free_before = free
        if empty_trash:
            free += quota.trash

    now = time.time() if now is None else now
    young: list[Decision] = []
    remaining = []
    for c in checkpoints:
        why = young_reason(c, min_age=policy.min_age, now=now)
        if why is None:
            remaining.append(c)
        else:
            young.append(Decision(c.entry, why))
    pinned = sum(d.entry.size for d in young)
    deleted: list[tuple[Checkpoint, str]] = []
    while True:
        p, met, notes = _plan_once(remaining, policy, free=free, frees_space=frees_space,
                                   pinned_bytes=pinned)
        by_id = {id(c): c for c in remaining}
        gone = [by_id[i] for i in p.delete]   # in decision order: copies, then oldest
        if not gone:
            break
        deleted.extend((c, p.delete[id(c)]) for c in gone)
        if free is not None and frees_space:
            free += sum(c.entry.size for c in gone)
        remaining = [c for c in remaining if id(c) not in p.delete]
    plan.delete = [Decision(c.entry, reason) for c, reason in deleted]
    plan.keep = [Decision(c.entry, p.why[id(c)] if p.level[id(c)] != CANDIDATE else
                          f"not protected, but the budget is met without deleting it "
                          f"({p.why[id(c)]})")
                 for c in order_newest_first(remaining)] + young
    plan.bytes_freed = sum(c.entry.size for c, _ in deleted)
    plan.checkpoint_bytes_after = plan.checkpoint_bytes - plan.bytes_freed
    plan.free_after = free
    plan.budget_met = met
    plan.notes = notes
    for d in plan.delete:
        log.debug("delete %s: %s", d.entry.path, d.reason)
    return plan
