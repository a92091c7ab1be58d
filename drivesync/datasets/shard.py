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

from ..errors import DatasetError
from ..progress import NULL_PROGRESS, Progress
from .items import LABEL_EXT, Item
from .manifest import (  # noqa: F401  (JOURNAL, MANIFEST, load_manifest: re-exported)
    JOURNAL,
    MANIFEST,
    Entry,
    FileOp,
    Journal,
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
from .place import Executor, in_place, size_of
from .plan import ShardPlanner, Slot, plan_shards  # noqa: F401  (re-exported)
from .report import ITEM, Report

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
    out: str,
    *,
    name: str,
    classes: Union[Sequence[str], Callable[[], Sequence[str]]] = (),
    max_files: Optional[int] = 2000,
    mode: str = "link",
    flat: bool = False,
    report: Optional[Report] = None,
    progress: Progress = NULL_PROGRESS,
    dry_run: bool = False,
    on_step: Optional[Callable[[int], None]] = None,
    total: Optional[int] = None,
    chunk: int = 1000,
) -> ShardResult:
    """Place items into shards under ``out`` and record them in the manifest.

    Items may be a list or a stream sorted by key (then validation, planning
    and moving overlap, chunk by chunk: each chunk is planned, journaled,
    fsynced and only then carried out). Items already in the manifest with the
    same contents stay untouched; changed ones are rewritten in their old
    place. ``classes`` may be a callable, read once the stream is consumed.
    ``on_step`` is called after each item (tests use it to crash a run).
    """
    report = report if report is not None else Report()
    result, m, planner = open_output(
        out,
        name=name,
        mode=mode,
        max_files=max_files,
        flat=flat,
        report=report,
        progress=progress,
        dry_run=dry_run,
    )
    out = os.path.dirname(result.manifest)
    before = set(m.entries)
    header = {
        "mode": mode,
        "name": name,
        "max_files": max_files,
        "classes": m.classes if callable(classes) else list(classes),
    }
    journal: Optional[Journal] = None
    ex = Executor(out, mode, report)
    seen: Set[str] = set()
    shards = {s for s, _, _ in m.entries.values()}
    todo: List[Entry] = []
    done = placed_old = 0
    progress.on_start(files=2 * (total or 0), bytes=0, desc=f"{mode} into shards")

    def flush() -> None:
        nonlocal journal, done
        if not todo or dry_run:
            todo.clear()
            return
        if journal is None:
            journal = Journal(out, header)
        lines = journal.add(todo)
        fresh = {t[0] for t in todo if t[0] not in before}
        done += run_entries(
            ex, m, todo, progress=progress, on_step=on_step, fresh=fresh, start=done, lines=lines
        )
        todo.clear()

    try:
        for it in _in_key_order(items):
            if it.key in seen:
                report.add(
                    it.origin or it.image,
                    "",
                    f"image {it.key} is listed twice; the first entry is used",
                    skipped=ITEM,
                )
                continue
            seen.add(it.key)
            slot = planner.place(it.key, it.stem)
            result.slots.append(slot)
            shards.add(slot.shard)
            ops = _ops(it, slot, name=name, flat=flat)
            old = m.entries.get(slot.key)
            if _in_place(out, old, ops, mode):
                continue
            todo.append((slot.key, slot.shard, slot.stem, ops))
            result.placed += 1
            placed_old += old is not None
            if len(todo) >= chunk:
                flush()
        flush()
    finally:
        progress.on_done()
        if journal is not None:
            journal.close(remove=False)
    result.shards = len(shards)
    # kept: every item already in place, including moved ones no longer in the source
    result.kept = len(before) - placed_old
    if dry_run:
        return result
    names = list(classes() if callable(classes) else classes)
    if journal is not None or (m.entries and (m.name != name or m.classes != names)):
        m.name, m.max_files, m.classes = name, max_files, names
        save_manifest(out, m)
    if journal is not None:
        os.unlink(journal.path)
    result.linked, result.copied, result.moved = ex.linked, ex.copied, ex.moved
    return result



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

