"""The YOLO fast path: plan from the scan, then validate and place whole pairs.

For YOLO input the files are only validated and passed through, so the
layout can be planned from the scan alone (a pair found bad later leaves its
planned name unused). Pairs are validated and placed batch by batch, in
forked workers for a big folder (:mod:`.workers`); the parent only plans,
journals and records. The journal is written and fsynced before any file of
a batch moves; its entries carry no md5 (not known yet), so recovery
validates again and reads each file where it is now.

Only a copy hashes images (:func:`hashes_images`): a link or move reads each
image's header and takes its size from fstat, and records md5 "" (unknown).
"""

from __future__ import annotations

import logging
import os
from typing import List, Optional, Sequence, Set, Tuple

from ..config import DEFAULT_MAX_FILES
from ..progress import NULL_PROGRESS, Progress
from ..types import TEMP_PREFIX
from . import workers
from .apply import Apply
from .items import Conversion
from .manifest import Entry, Journal, Manifest, entry_line
from .names import display, name_fields
from .output import ShardResult, dst_path, open_output
from .pairplace import BATCH, PairTask, pair_files, run_pairs
from .plan import ShardPlanner
from .report import NOTE
from .yolo import (
    classes_for,
    classes_in,
    find_label,
    report_orphans,
    report_pair,
    scan,
)

log = logging.getLogger(__name__)


def shard_yolo(
    src: str,
    ap: Apply,
    *,
    name: str,
    classes: Optional[Sequence[str]] = None,
    max_files: Optional[int] = DEFAULT_MAX_FILES,
    exclude: Optional[str] = None,
    progress: Progress = NULL_PROGRESS,
) -> Tuple[ShardResult, Conversion]:
    """Validate and shard a YOLO folder in one pass; returns (ShardResult, Conversion)."""
    src = os.path.abspath(src)
    result, m, planner = open_output(ap, name=name, max_files=max_files, progress=progress)
    images, texts = scan(src, exclude)
    names = list(classes) if classes is not None else classes_in(src)
    run = _PairRun(ap, src, texts, m, planner, result, name=name, names=names)
    run.conv.expected = len(images)
    header = {"mode": ap.mode, "name": name, "max_files": max_files,
              "classes": names or m.classes, "pairs": True, "nc": run.nc}
    run.journal = ap.journal(header)
    batches = (run.plan(images[i : i + BATCH]) for i in range(0, len(images), BATCH))
    progress.on_start(files=2 * len(images), bytes=0, desc=f"validate and {ap.mode}")
    try:
        run_pairs(ap.out, ap.mode, run.nc, batches, recovering=False, progress=progress,
                  executor_type=ap.executor_type, on_result=run.on_result,
                  parallel=len(images) >= workers.PARALLEL_MIN)
    finally:
        progress.on_done()
        run.close()
    report_orphans(ap.report, src, texts, run.used)
    run.conv.classes = list(classes_for(names, run.top, m.classes))
    m.name, m.max_files, m.classes = name, max_files, list(run.conv.classes)
    ap.save_manifest(m, body=run.body_path, superseded=run.handled)
    ap.remove(run.body_path)
    ap.remove(run.journal.path)  # closed above; the manifest now holds everything
    result.kept += len(run.before - run.handled)  # moved earlier, no longer in the source
    result.shards = len(run.shards)
    return result, run.conv


class _PairRun:
    """One YOLO fast-path run: plans and journals batches, records what comes back."""

    journal: Journal

    def __init__(self, ap: Apply, src: str, texts: Set[str], m: Manifest, planner: ShardPlanner,
                 result: ShardResult, *, name: str, names: Optional[List[str]]):
        self.ap, self.src, self.texts, self.m, self.planner = ap, src, texts, m, planner
        self.result, self.name = result, name
        self.nc = len(names) if names is not None else None
        self.conv = Conversion(classes=names or [])
        self.before = set(m.entries)
        self.used: Set[str] = set()
        self.handled: Set[str] = set()
        self.shards = {s for s, _, _ in m.entries.values()}
        self.done, self.top = 0, -1
        # new manifest lines go straight to a file (in key order), not into memory
        self.body_path = os.path.join(ap.out, TEMP_PREFIX + "manifest-body")
        self.body = ap.body(self.body_path)
        self.pending: List[str] = []

    def plan(self, batch: List[str]) -> List[PairTask]:
        """Plan a batch and make its journal lines durable before it is handed out."""
        tasks: List[PairTask] = []
        entries: List[Entry] = []
        for image in batch:
            label = find_label(image, self.texts)
            if label is not None:
                self.used.add(label)
            key, stem, ext, why = name_fields(self.src, image)
            if why:
                self.ap.report.add(display(image), "name", f"{why}; written as {stem}{ext}",
                                   skipped=NOTE)
            slot = self.planner.place(key, stem)
            old = self.m.entries.get(key)
            expect = None
            if old is not None and len(old[2]) == 2:
                (_, _, s1, h1, _), (_, _, s2, h2, _) = old[2]
                expect = (s1, h1, s2, h2)
            idst = dst_path(self.name, slot.shard, slot.stem, ext, False)
            ldst = dst_path(self.name, slot.shard, slot.stem, ".txt", False)
            tasks.append((key, image, label, idst, ldst, expect, key not in self.before))
            lab_text = None if label else ""
            files = ((image, idst, -1, "", None), (label or key, ldst, -1, "", lab_text))
            entries.append((key, slot.shard, slot.stem, files))
        self.journal.add(entries)
        return tasks

    def on_result(self, task: PairTask, res: tuple) -> None:
        key, img, lab, idst, ldst, _, _ = task
        report_pair(self.ap.report, self.src, img, lab, res)  # a bad pair, or a background note
        if res[0] in ("kept", "ok", "failed"):
            kind, got, count, top, problems = res
            self.conv.counts.boxes += count
            self.top = max(self.top, top)
            for file, where, reason in problems:
                self.ap.report.add(file, where, reason)
            if kind != "failed":
                self._record(task, got, kind)
        self.done += 1

    def _record(self, task: PairTask, got: tuple, kind: str) -> None:
        key, _, _, idst, ldst, _, _ = task
        shard = int(idst.rsplit("/", 2)[-2])
        stem = ldst.rsplit("/", 1)[-1][: -len(".txt")]
        self.shards.add(shard)
        self.result.images.append(idst.split("/", 1)[1])
        self.pending.append(entry_line(key, shard, stem, pair_files(task, got), text=False))
        if len(self.pending) >= BATCH:
            self.body.write("".join(self.pending))
            self.pending.clear()
        self.handled.add(key)
        if kind == "kept":
            self.result.kept += 1
        else:
            self.result.placed += 1

    def close(self) -> None:
        self.journal.close(remove=False)
        self.body.write("".join(self.pending))
        self.body.close()
