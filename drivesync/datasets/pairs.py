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
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from ..progress import NULL_PROGRESS, Progress
from ..types import TEMP_PREFIX
from . import Conversion, display, hashes_images, name_fields, workers
from .manifest import Entry, Journal, Manifest, entry_line, save_manifest
from .place import Executor, in_place, size_of
from .report import NOTE, Report
from .shard import ShardResult, dst_path, open_output
from .workers import fork_context, imap_forked
from .yolo import (
    classes_for,
    classes_in,
    find_label,
    report_orphans,
    report_pair,
    scan,
    validate_pair,
)

log = logging.getLogger(__name__)

# (key, image src, label src or None, image dst, label dst, expected (4 values) or None, fresh)
PairTask = Tuple[str, str, Optional[str], str, str, Optional[tuple], bool]
BATCH = 500


def _place_pairs(args: tuple, ex: Optional[Executor] = None) -> List[tuple]:
    """Validate and place a batch of pairs (in a worker, or in-process with ``ex``).

    One result per task: ``("bad", ...)`` / ``("label", ...)`` from validation, or
    ``(kind, (size, md5, label size, label md5), boxes, top class, problems)``
    with kind ``kept`` (already in place), ``ok`` or ``failed``.
    """
    out, mode, nc, recovering, tasks = args
    ex = ex or Executor(out, mode, Report())
    hashed = hashes_images(mode)
    results = []
    for key, img, lab, img_dst, lab_dst, expect, fresh in tasks:
        img_at, lab_at = img, lab
        if recovering:  # a move may have happened already: read the file where it is now
            if not os.path.lexists(img):
                img_at = os.path.join(out, img_dst)
            if lab is not None and not os.path.lexists(lab):
                lab_at = os.path.join(out, lab_dst)
        res = validate_pair(img_at, lab_at, nc, hash_image=hashed)
        if res[0] != "ok":
            results.append(res)
            continue
        _, info, (lsize, lmd5, count, top) = res
        got = (info.size, info.md5, lsize, lmd5)
        if (
            expect == got  # md5 "" equals only "": a real md5 never matches an unknown one
            and in_place(mode, img_at, os.path.join(out, img_dst), info.size, info.md5)
            and size_of(os.path.join(out, lab_dst)) == lsize
        ):
            results.append(("kept", got, count, top, ()))
            continue
        seen = len(ex.report.problems)
        ok = ex.run((img, img_dst, info.size, info.md5, None), fresh=fresh)
        placed_label = os.path.join(out, lab_dst)
        if ok and lab is None and not fresh and size_of(placed_label) > 0:
            # The image came back without its label, but the shard holds one: after a
            # move that file is the only copy, so an empty background label never
            # replaces it. The manifest keeps the pair as it was.
            ex.report.add(img, "", f"no label beside it, but {lab_dst} holds one: kept; put "
                          f"the label back, or delete {lab_dst} to make it a background image")
            ok = False
        elif ok:  # an image left where it is keeps its label beside it: a pair is never split
            label_op = (lab, lab_dst, lsize, lmd5, None) if lab else (key, lab_dst, 0, lmd5, "")
            ok = ex.run(label_op, fresh=fresh)
        problems = tuple((p.file, p.where, p.reason) for p in ex.report.problems[seen:])
        results.append(("ok" if ok else "failed", got, count, top, problems))
    return results


def _run_pairs(
    out: str,
    mode: str,
    nc: Optional[int],
    batches: Iterable[List[PairTask]],
    *,
    recovering: bool,
    progress: Progress,
    on_result: Callable[[PairTask, tuple], None],
    parallel: bool,
) -> None:
    """Run task batches in order; in forked workers when ``parallel`` and possible.

    ``batches`` is consumed lazily (by the pool's feeder thread when parallel),
    so planning and journaling the next batch overlaps with placing this one.
    """
    ctx = fork_context() if parallel else None
    if ctx is None:
        ex = Executor(out, mode, Report())
        for batch in batches:
            for task in batch:  # one at a time, so on_step sees each placed pair
                (res,) = _place_pairs((out, mode, nc, recovering, [task]), ex)
                on_result(task, res)
            progress.on_progress(files=2 * len(batch))
        return
    keep: List[List[PairTask]] = []

    def args() -> Iterator[tuple]:
        for batch in batches:
            keep.append(batch)
            yield (out, mode, nc, recovering, batch)

    for i, results in enumerate(imap_forked(_place_pairs, args(), ctx=ctx)):
        batch, keep[i] = keep[i], []  # let it go: memory stays flat
        for task, res in zip(batch, results):
            on_result(task, res)
        progress.on_progress(files=2 * len(results))


def _files(task: PairTask, got: tuple) -> tuple:
    key, img, lab, idst, ldst, _, _ = task
    size, md5, lsize, lmd5 = got
    return ((img, idst, size, md5, None), (lab or key, ldst, lsize, lmd5, None if lab else ""))


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
                pending.append(entry_line(key, shard, stem, _files(task, got), text=False))
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
        _run_pairs(
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


def recover_pairs(
    out: str,
    header: dict,
    entries: Sequence[Entry],
    m: Manifest,
    report: Report,
    progress: Progress,
    on_step: Optional[Callable[[int], None]],
) -> int:
    """Finish a fast-path journal: validate each pair where its files are now, place it."""
    tasks: List[PairTask] = []
    for key, _shard, _stem, files in entries:
        (img, idst, _, _, _), (lab, ldst, _, _, text) = files
        tasks.append((key, img, None if text is not None else lab, idst, ldst, None, False))
    slots = {key: (shard, stem) for key, shard, stem, _ in entries}
    done = 0

    def on_result(task: PairTask, res: tuple) -> None:
        nonlocal done
        key, img, lab = task[:3]
        if res[0] in ("ok", "kept"):
            m.entries[key] = (*slots[key], _files(task, res[1]))
        elif res[0] == "failed":
            for file, where, reason in res[4]:
                report.add(file, where, reason)
        else:
            report_pair(report, "", img, lab, res)
        done += 1
        if on_step is not None:
            on_step(done)

    _run_pairs(
        out,
        header.get("mode", "copy"),
        header.get("nc"),
        (tasks[i : i + 250] for i in range(0, len(tasks), 250)),
        recovering=True,
        progress=progress,
        on_result=on_result,
        parallel=len(tasks) >= workers.PARALLEL_MIN,
    )
    return done
