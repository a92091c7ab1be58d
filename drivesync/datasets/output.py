"""An output folder opened for writing: recovery, the manifest, and the planner around it.

What every writer (:func:`.shard.write_shards`, :func:`.pairs.shard_yolo`) does
first: finish an interrupted run's journal (:func:`recover`), read the
manifest, refuse another dataset's folder, and plan around the files already
there. A journal written by the YOLO fast path is finished by
:func:`.pairplace.recover_pairs`; any other by :func:`run_entries`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Container, Dict, Iterable, List, Optional, Set, Tuple

from ..errors import UsageError
from ..progress import NULL_PROGRESS, Progress
from .manifest import JOURNAL, MANIFEST, Entry, Manifest, load_manifest, read_journal, save_manifest
from .names import display
from .pairplace import recover_pairs
from .place import Executor
from .plan import ShardPlanner
from .report import Report

if TYPE_CHECKING:  # the Apply a writer is given imports recover from here
    from .apply import Apply

log = logging.getLogger(__name__)

MODES = ("link", "copy", "move")


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
    images: List[str] = field(default_factory=list)  # placed or kept, relative to the dataset


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


def run_entries(
    ex: Executor,
    m: Manifest,
    entries: Iterable[Entry],
    *,
    progress: Progress,
    fresh: Container[str] = (),
    lines: Optional[List[str]] = None,
) -> int:
    """Carry out entries' file actions and record each done one in ``m``; returns how many.

    ``progress.on_progress`` is told after each item (its image and label), so a
    subscriber sees every placed item (the crash tests stop a run at the Nth)."""
    done = 0
    for i, (key, shard, stem, files) in enumerate(entries):
        ok = True
        new = key in fresh
        for op in files:
            ok = ex.run(op, fresh=new) and ok
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
        progress.on_progress(files=len(files), bytes=sum(max(op[2], 0) for op in files))
    return done


def recover(
    out: str,
    *,
    report: Report,
    progress: Progress = NULL_PROGRESS,
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
        done = recover_pairs(out, header, entries, m, report, progress)
    else:
        ex = Executor(out, header.get("mode", "copy"), report)
        done = run_entries(ex, m, entries, progress=progress)
    save_manifest(out, m)
    os.unlink(path)
    return done


def open_output(
    ap: Apply,
    *,
    name: str,
    max_files: Optional[int],
    flat: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Tuple[ShardResult, Manifest, ShardPlanner]:
    """What every writer does first: finish an interrupted run, read the manifest,
    refuse another dataset's folder, and plan around what is already there."""
    if ap.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {ap.mode!r}")
    out = ap.out
    result = ShardResult(
        dataset=dataset_dir(out, name, flat=flat), manifest=os.path.join(out, MANIFEST)
    )
    ap.makedirs()
    result.recovered = ap.recover(progress)
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
