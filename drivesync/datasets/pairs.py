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
from typing import Callable, List, Optional, Sequence, Set, Tuple

from ..progress import NULL_PROGRESS, Progress
from ..types import TEMP_PREFIX
from . import workers
from .items import Conversion
from .manifest import Entry, Journal, entry_line, save_manifest
from .names import display, name_fields
from .output import ShardResult, dst_path, open_output
from .pairplace import BATCH, PairTask, pair_files, run_pairs
from .report import NOTE, Report
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
    out: str,
    *,
    name: str,
    report: Report,
    classes: Optional[Sequence[str]] = None,
    max_files: Optional[int] = 2000,
    mode: str = "link",
    exclude: Optional[str] = None,
    progress: Progress = NULL_PROGRESS,
    on_step: Optional[Callable[[int], None]] = None,
) -> Tuple[ShardResult, Conversion]:
    """Validate and shard a YOLO folder in one pass; returns (ShardResult, Conversion)."""
    src = os.path.abspath(src)
    result, m, planner = open_output(
        out, name=name, mode=mode, max_files=max_files, report=report, progress=progress
    )
    out = os.path.dirname(result.manifest)
    images, texts = scan(src, exclude)
    names = list(classes) if classes is not None else classes_in(src)
    nc = len(names) if names is not None else None
    conv = Conversion(classes=names or [], expected=len(images))
    before = set(m.entries)
    used: Set[str] = set()
    handled: Set[str] = set()
    header = {
        "mode": mode,
        "name": name,
        "max_files": max_files,
        "classes": names or m.classes,
        "pairs": True,
        "nc": nc,
    }
    journal = Journal(out, header)

    def plan(batch: List[str]) -> List[PairTask]:
        """Plan a batch and make its journal lines durable before it is handed out."""
        tasks: List[PairTask] = []
        entries: List[Entry] = []
        for image in batch:
            label = find_label(image, texts)
            if label is not None:
                used.add(label)
            key, stem, ext, why = name_fields(src, image)
            if why:
                report.add(display(image), "name", f"{why}; written as {stem}{ext}", skipped=NOTE)
            slot = planner.place(key, stem)
            old = m.entries.get(key)
            expect = None
            if old is not None and len(old[2]) == 2:
                (_, _, s1, h1, _), (_, _, s2, h2, _) = old[2]
                expect = (s1, h1, s2, h2)
            idst = dst_path(name, slot.shard, slot.stem, ext, False)
            ldst = dst_path(name, slot.shard, slot.stem, ".txt", False)
            tasks.append((key, image, label, idst, ldst, expect, key not in before))
            files = (
                (image, idst, -1, "", None),
                (label or key, ldst, -1, "", None if label else ""),
            )
            entries.append((key, slot.shard, slot.stem, files))
        journal.add(entries)
        return tasks

    batches = (plan(images[i : i + BATCH]) for i in range(0, len(images), BATCH))
    progress.on_start(files=2 * len(images), bytes=0, desc=f"validate and {mode}")
    state = {"done": 0, "top": -1}
    shards = {s for s, _, _ in m.entries.values()}
    # new manifest lines go straight to a file (in key order), not into memory
    body_path = os.path.join(out, TEMP_PREFIX + "manifest-body")
    body = open(body_path, "w", encoding="utf-8", newline="\n")
    pending: List[str] = []

    def on_result(task: PairTask, res: tuple) -> None:
        key, img, lab, idst, ldst, _, _ = task
        report_pair(report, src, img, lab, res)  # a bad pair, or a background note
        if res[0] in ("kept", "ok", "failed"):
            kind, got, count, top, problems = res
            conv.counts.boxes += count
            state["top"] = max(state["top"], top)
            for file, where, reason in problems:
                report.add(file, where, reason)
            if kind != "failed":
                shard = int(idst.rsplit("/", 2)[-2])
                stem = ldst.rsplit("/", 1)[-1][: -len(".txt")]
                shards.add(shard)
                pending.append(entry_line(key, shard, stem, pair_files(task, got), text=False))
                if len(pending) >= BATCH:
                    body.write("".join(pending))
                    pending.clear()
                handled.add(key)
                if kind == "kept":
                    result.kept += 1
                else:
                    result.placed += 1
        state["done"] += 1
        if on_step is not None:
            on_step(state["done"])

    try:
        run_pairs(
            out,
            mode,
            nc,
            batches,
            recovering=False,
            progress=progress,
            on_result=on_result,
            parallel=len(images) >= workers.PARALLEL_MIN,
        )
    finally:
        progress.on_done()
        journal.close(remove=False)
        body.write("".join(pending))
        body.close()
    report_orphans(report, src, texts, used)
    names = classes_for(names, state["top"], m.classes)
    conv.classes = list(names)
    m.name, m.max_files, m.classes = name, max_files, list(names)
    save_manifest(out, m, body=body_path, superseded=handled)
    os.unlink(body_path)
    os.unlink(journal.path)  # closed above; the manifest now holds everything
    result.kept += len(before - handled)  # moved earlier, no longer in the source
    result.shards = len(shards)
    return result, conv

