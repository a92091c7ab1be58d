"""Sharding: pure planning (:func:`plan_shards`) and a journaled writer (:func:`write_shards`).

Layout: ``OUT/NAME/000/``, ``001/``, ... with each image beside its label and
at most ``max_files`` files per folder. Stable: what the manifest already
places stays there; new items fill shards with room, then new shards.

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
from dataclasses import dataclass, field
from typing import (
    Callable,
    Container,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from ..errors import DatasetError, UsageError
from ..progress import NULL_PROGRESS, Progress
from . import LABEL_EXT, Item, display
from .manifest import (  # noqa: F401  (JOURNAL, MANIFEST, save_manifest: re-exported)
    JOURNAL,
    MANIFEST,
    Entry,
    FileOp,
    Journal,
    Manifest,
    load_manifest,
    read_journal,
    save_manifest,
)
from .place import Executor, in_place, size_of
from .report import ITEM, Report

log = logging.getLogger(__name__)

MODES = ("link", "copy", "move")


@dataclass(frozen=True)
class Slot:
    """Where one item goes: shard number and output stem (unique, case-insensitively)."""

    key: str
    shard: int
    stem: str


class ShardPlanner:
    """Places items one at a time; pure (no I/O), deterministic, stable.

    ``existing`` (key -> (shard, stem), from the manifest) is kept as-is and
    occupies ``files_per_item`` files each; ``foreign`` counts other files
    already in a shard and ``taken`` their stems. Each new key goes into the
    lowest-numbered shard with room; its stem gets ``_1``, ``_2``, ... when
    another item already holds it (compared case-insensitively, for Windows,
    macOS and Drive for desktop). ``max_files=None`` means a flat folder.
    """

    def __init__(
        self,
        *,
        existing: Mapping[str, Tuple[int, str]] = {},
        foreign: Mapping[int, int] = {},
        taken: Iterable[str] = (),
        max_files: Optional[int] = 2000,
        files_per_item: int = 2,
    ):
        if max_files is not None and max_files < files_per_item:
            raise UsageError(
                f"--max-files must be at least {files_per_item} (an image and its label)"
            )
        self.existing = existing
        self.max_files, self.per = max_files, files_per_item
        self.used: Dict[int, int] = dict(foreign)
        self.stems: Set[str] = {t.casefold() for t in taken}
        for shard, stem in existing.values():
            self.used[shard] = self.used.get(shard, 0) + files_per_item
            self.stems.add(stem.casefold())
        self.shard = 0  # shards below this one are full

    def place(self, key: str, stem: str) -> Slot:
        if key in self.existing:
            shard, old = self.existing[key]
            return Slot(key, shard, old)
        if self.max_files is not None:
            while self.used.get(self.shard, 0) + self.per > self.max_files:
                self.shard += 1
        self.used[self.shard] = self.used.get(self.shard, 0) + self.per
        name, n = stem, 0
        while name.casefold() in self.stems:
            n += 1
            name = f"{stem}_{n}"
        self.stems.add(name.casefold())
        return Slot(key, self.shard, name)


def plan_shards(
    new: Iterable[Tuple[str, str]],
    *,
    existing: Mapping[str, Tuple[int, str]] = {},
    foreign: Mapping[int, int] = {},
    taken: Iterable[str] = (),
    max_files: Optional[int] = 2000,
    files_per_item: int = 2,
) -> List[Slot]:
    """Place items ``(key, wanted_stem)`` (see :class:`ShardPlanner`), new keys in sorted order.

    Returns one slot per distinct input key, in sorted key order.
    """
    planner = ShardPlanner(
        existing=existing,
        foreign=foreign,
        taken=taken,
        max_files=max_files,
        files_per_item=files_per_item,
    )
    unique = dict(reversed(list(new)))  # first stem given for a key wins
    return [planner.place(k, unique[k]) for k in sorted(unique)]


# ---------------------------------------------------------------- writer


@dataclass
class ShardResult:
    dataset: str
    manifest: str
    shards: int = 0
    placed: int = 0  # items written this run
    kept: int = 0  # items already in place from an earlier run
    recovered: int = 0  # items finished from an interrupted run's journal
    linked: int = 0
    copied: int = 0
    moved: int = 0
    slots: List[Slot] = field(default_factory=list)


def dataset_dir(out: str, name: str, *, flat: bool = False) -> str:
    return out if flat else os.path.join(out, name)


def dst_path(name: str, shard: int, stem: str, ext: str, flat: bool) -> str:
    return f"{stem}{ext}" if flat else f"{name}/{shard:03d}/{stem}{ext}"


def _foreign(out: str, name: str, flat: bool, known: Set[str]) -> Tuple[Dict[int, int], Set[str]]:
    """Files in the shard folders that the manifest does not know (never overwritten)."""
    counts: Dict[int, int] = {}
    stems: Set[str] = set()
    base = dataset_dir(out, name, flat=flat)
    if not os.path.isdir(base):
        return counts, stems
    dirs = (
        [(0, base, "")]
        if flat
        else [
            (int(e.name), e.path, f"{name}/{e.name}/")
            for e in os.scandir(base)
            if e.is_dir() and e.name.isdigit()
        ]
    )
    for shard, path, prefix in dirs:
        for e in os.scandir(path):
            if e.name.startswith(".drivesync") or not e.is_file() or prefix + e.name in known:
                continue
            if flat and (
                e.name in (MANIFEST, "classes.txt")
                or e.name.startswith(("prepare-report", "check-report"))
            ):
                continue
            counts[shard] = counts.get(shard, 0) + 1
            stems.add(os.path.splitext(e.name)[0])
    return counts, stems


def _run_entries(
    ex: Executor,
    m: Manifest,
    entries: Iterable[Entry],
    *,
    progress: Progress,
    on_step: Optional[Callable[[int], None]],
    fresh: Container[str] = (),
    start: int = 0,
    lines: Optional[List[str]] = None,
) -> int:
    done = files_done = bytes_done = 0
    for i, (key, shard, stem, files) in enumerate(entries):
        ok = True
        new = key in fresh
        for op in files:
            ok = ex.run(op, fresh=new) and ok
            files_done += 1
            bytes_done += op[2]
        if ok:
            # the manifest keeps no label text: it is on disk and md5 is enough
            m.entries[key] = (
                shard,
                stem,
                tuple((s, d, n, h, None if t is None else "") for s, d, n, h, t in files),
            )
            if lines is not None and all(op[4] is None for op in files):
                m.lines[key] = lines[i]
            else:
                m.lines.pop(key, None)
        done += 1
        if files_done >= 512:
            progress.on_progress(files=files_done, bytes=bytes_done)
            files_done = bytes_done = 0
        if on_step is not None:
            on_step(start + done)
    progress.on_progress(files=files_done, bytes=bytes_done)
    return done


def recover(
    out: str,
    *,
    report: Report,
    progress: Progress = NULL_PROGRESS,
    on_step: Optional[Callable[[int], None]] = None,
) -> int:
    """Finish an interrupted run's journal, if any; returns the items it covered."""
    path = os.path.join(out, JOURNAL)
    if not os.path.exists(path):
        return 0
    m = load_manifest(out) or Manifest()
    header, entries = read_journal(path)
    m.name = header.get("name", m.name)
    m.max_files = header.get("max_files", m.max_files)
    m.classes = header.get("classes") or m.classes
    log.warning("finishing an interrupted run (%d items in its journal)", len(entries))
    if header.get("pairs"):  # the YOLO fast path: validated and placed pair by pair
        from .pairs import recover_pairs

        done = recover_pairs(out, header, entries, m, report, progress, on_step)
    else:
        ex = Executor(out, header.get("mode", "copy"), report)
        done = _run_entries(ex, m, entries, progress=progress, on_step=on_step)
    save_manifest(out, m)
    os.unlink(path)
    return done


def open_output(
    out: str,
    *,
    name: str,
    mode: str,
    max_files: Optional[int],
    report: Report,
    flat: bool = False,
    progress: Progress = NULL_PROGRESS,
    dry_run: bool = False,
) -> Tuple[ShardResult, Manifest, ShardPlanner]:
    """What every writer does first: finish an interrupted run, read the manifest,
    refuse another dataset's folder, and plan around what is already there."""
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    out = os.path.abspath(out)
    result = ShardResult(
        dataset=dataset_dir(out, name, flat=flat), manifest=os.path.join(out, MANIFEST)
    )
    if not dry_run:
        os.makedirs(out, exist_ok=True)
        result.recovered = recover(out, report=report, progress=progress)
    m = load_manifest(out) or Manifest()
    if m.entries and m.name and m.name != name:
        raise UsageError(
            f"{display(out)} already holds dataset {m.name!r}; use --name {m.name} "
            "or another output folder"
        )
    foreign, taken = _foreign(out, name, flat, m.destinations())
    planner = ShardPlanner(
        existing={k: (s, st) for k, (s, st, _) in m.entries.items()},
        foreign=foreign,
        taken=taken,
        max_files=max_files,
    )
    return result, m, planner


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
        done += _run_entries(
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
