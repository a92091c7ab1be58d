"""The journaled writer for converted items (:func:`write_shards`); planning is :mod:`.plan`.

Crash safety: before touching a file the writer saves the whole plan as a
journal (``OUT/.drivesync-journal.jsonl``). Every step is idempotent and is
judged from what is on disk (source there? destination there? same inode or
same md5?), so a run killed at any point and started again finishes the
journal first: every file ends up present exactly once, nothing overwritten.
Images placed by a link or move carry md5 "" (unknown, never compared as a
value): see :func:`drivesync.datasets.hashes_images` and :mod:`.place`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import (
    Callable,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from ..config import DEFAULT_MAX_FILES
from ..errors import DatasetError
from ..progress import NULL_PROGRESS, Progress
from .apply import Apply
from .items import LABEL_EXT, Item
from .manifest import (  # noqa: F401  (JOURNAL, MANIFEST, load_manifest: re-exported)
    JOURNAL,
    MANIFEST,
    Entry,
    FileOp,
    Journal,
    Manifest,
    load_manifest,
    save_manifest,
)
from .output import (  # noqa: F401  (MODES, ShardResult, recover, ...: re-exported)
    MODES,
    ShardResult,
    dataset_dir,
    dst_path,
    open_output,
    recover,
    run_entries,
)
from .place import in_place, size_of
from .plan import ShardPlanner, Slot, plan_shards  # noqa: F401  (re-exported)
from .report import ITEM

log = logging.getLogger(__name__)


def _in_key_order(items: Iterable[Item]) -> Iterator[Item]:
    """Pass items through while they come sorted by key (a streaming converter);
    otherwise sort them first, so the plan never depends on input order."""
    if isinstance(items, (list, tuple)):
        yield from sorted(items, key=lambda it: it.key)
        return
    last = ""
    buffered: List[Item] = []
    for it in items:
        if buffered or it.key < last:
            buffered.append(it)
        else:
            last = it.key
            yield it
    if buffered:
        raise DatasetError("internal: a streaming converter yielded keys out of order")


def write_shards(
    items: Iterable[Item],
    ap: Apply,
    *,
    name: str,
    classes: Union[Sequence[str], Callable[[], Sequence[str]]] = (),
    max_files: Optional[int] = DEFAULT_MAX_FILES,
    flat: bool = False,
    progress: Progress = NULL_PROGRESS,
    total: Optional[int] = None,
    chunk: int = 1000,
) -> ShardResult:
    """Place items into shards under ``ap.out`` and record them in the manifest.

    Items may be a list or a stream sorted by key (then validation, planning
    and moving overlap, chunk by chunk: each chunk is planned, journaled,
    fsynced and only then carried out by ``ap``). Items already in the
    manifest with the same contents stay untouched; changed ones are rewritten
    in their old place. ``classes`` may be a callable, read once the stream is
    consumed. ``progress.on_progress`` is told after each item placed.
    """
    result, m, planner = open_output(
        ap, name=name, max_files=max_files, flat=flat, progress=progress
    )
    header = {
        "mode": ap.mode,
        "name": name,
        "max_files": max_files,
        "classes": m.classes if callable(classes) else list(classes),
    }
    run = _Chunks(ap, m, header, progress)
    before = set(m.entries)
    progress.on_start(files=2 * (total or 0), bytes=0, desc=f"{ap.mode} into shards")
    try:
        placed_old = _plan_and_run(items, run, planner, result, name=name, flat=flat, chunk=chunk)
    finally:
        progress.on_done()
        run.close()
    # kept: every item already in place, including moved ones no longer in the source
    result.kept = len(before) - placed_old
    names = list(classes() if callable(classes) else classes)
    if run.journal is not None or (m.entries and (m.name != name or m.classes != names)):
        m.name, m.max_files, m.classes = name, max_files, names
        ap.save_manifest(m)
    if run.journal is not None:
        ap.remove(run.journal.path)
    ex = run.ex
    result.linked, result.copied, result.moved = ex.linked, ex.copied, ex.moved
    result.images = [] if flat else m.images()
    return result


class _Chunks:
    """Journals a chunk of planned entries, then hands them to the executor."""

    def __init__(self, ap: Apply, m: Manifest, header: dict, progress: Progress):
        self.ap, self.m, self.header, self.progress = ap, m, header, progress
        self.before = set(m.entries)
        self.ex = ap.executor()
        self.journal: Optional[Journal] = None
        self.done = 0

    def run(self, todo: List[Entry]) -> None:
        if not todo:
            return
        if self.journal is None:
            self.journal = self.ap.journal(self.header)
        lines = self.journal.add(todo)  # fsynced: a crash from here on is finished by recover()
        fresh = {t[0] for t in todo if t[0] not in self.before}
        self.done += run_entries(self.ex, self.m, todo, progress=self.progress, fresh=fresh,
                                 lines=lines)
        todo.clear()

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close(remove=False)


def _plan_and_run(
    items: Iterable[Item],
    run: _Chunks,
    planner: ShardPlanner,
    result: ShardResult,
    *,
    name: str,
    flat: bool,
    chunk: int,
) -> int:
    """Plan each item's slot and file actions, running them chunk by chunk; returns
    how many items the manifest held already and are placed again (changed)."""
    m, report, out = run.m, run.ap.report, run.ap.out
    seen: Set[str] = set()
    shards = {s for s, _, _ in m.entries.values()}
    todo: List[Entry] = []
    placed_old = 0
    for it in _in_key_order(items):
        if it.key in seen:
            report.add(it.origin or it.image, "",
                       f"image {it.key} is listed twice; the first entry is used", skipped=ITEM)
            continue
        seen.add(it.key)
        slot = planner.place(it.key, it.stem)
        shards.add(slot.shard)
        ops = _ops(it, slot, name=name, flat=flat)
        old = m.entries.get(slot.key)
        if _in_place(out, old, ops, run.ap.mode):
            continue
        todo.append((slot.key, slot.shard, slot.stem, ops))
        result.placed += 1
        placed_old += old is not None
        if len(todo) >= chunk:
            run.run(todo)
    run.run(todo)
    result.shards = len(shards)
    return placed_old


def _in_place(out: str, old: Optional[tuple], ops: Tuple[FileOp, ...], mode: str) -> bool:
    """Placed by an earlier run with these contents, and still there with its size.

    An image md5 "" (unknown) equals only "" here, and then :func:`in_place`
    judges from stat (same inode, or size) instead of the digest."""
    return (
        old is not None
        and [(d, n, h) for _, d, n, h, _ in old[2]] == [(d, n, h) for _, d, n, h, _ in ops]
        and all(
            in_place(mode, s, os.path.join(out, d), n, h)
            if t is None
            else size_of(os.path.join(out, d)) == n
            for s, d, n, h, t in ops
        )
    )


def _ops(it: Item, slot: Slot, *, name: str, flat: bool) -> Tuple[FileOp, ...]:
    img = (it.image, dst_path(name, slot.shard, slot.stem, it.ext, flat), it.size, it.md5, None)
    dst = dst_path(name, slot.shard, slot.stem, LABEL_EXT, flat)
    if it.label_src is not None:
        lab: FileOp = (it.label_src, dst, it.label_size, it.label_md5, None)
    else:
        text = it.label()
        data = text.encode("utf-8")
        lab = (it.origin or it.key, dst, len(data), hashlib.md5(data).hexdigest(), text)
    return (img, lab)

