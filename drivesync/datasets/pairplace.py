"""Validate and place YOLO pairs, batch by batch, in forked workers for a big folder.

The engine under :func:`.pairs.shard_yolo` and the recovery of its journal
(:func:`recover_pairs`): a pair is validated where its files are now and
placed whole (image and label), or not at all. Workers only validate and
place; the parent plans, journals and records.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Type

from ..progress import Progress
from . import workers
from .items import hashes_images
from .manifest import Entry, Manifest
from .place import Executor, in_place, size_of
from .report import Report
from .workers import fork_context, imap_forked
from .yolo import report_pair, validate_pair

log = logging.getLogger(__name__)

# (key, image src, label src or None, image dst, label dst, expected (4 values) or None, fresh)
PairTask = Tuple[str, str, Optional[str], str, str, Optional[tuple], bool]

BATCH = 500


def place_pairs(args: tuple, ex: Optional[Executor] = None) -> List[tuple]:
    """Validate and place a batch of pairs (in a worker, or in-process with ``ex``).

    One result per task: ``("bad", ...)`` / ``("label", ...)`` from validation, or
    ``(kind, (size, md5, label size, label md5), boxes, top class, problems)``
    with kind ``kept`` (already in place), ``ok`` or ``failed``.
    """
    out, mode, nc, recovering, tasks, executor_type = args
    ex = ex or executor_type(out, mode, Report())
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


def run_pairs(
    out: str,
    mode: str,
    nc: Optional[int],
    batches: Iterable[List[PairTask]],
    *,
    recovering: bool,
    progress: Progress,
    executor_type: Type[Executor] = Executor,
    on_result: Callable[[PairTask, tuple], None],
    parallel: bool,
) -> None:
    """Run task batches in order; in forked workers when ``parallel`` and possible.

    ``batches`` is consumed lazily (by the pool's feeder thread when parallel),
    so planning and journaling the next batch overlaps with placing this one.
    """
    ctx = fork_context() if parallel else None
    if ctx is None:
        ex = executor_type(out, mode, Report())
        for batch in batches:
            for task in batch:  # one at a time: progress is told of each placed pair
                (res,) = place_pairs((out, mode, nc, recovering, [task], executor_type), ex)
                on_result(task, res)
                progress.on_progress(files=2)
        return
    keep: List[List[PairTask]] = []

    def args() -> Iterator[tuple]:
        for batch in batches:
            keep.append(batch)
            yield (out, mode, nc, recovering, batch, executor_type)

    for i, results in enumerate(imap_forked(place_pairs, args(), ctx=ctx)):
        batch, keep[i] = keep[i], []  # let it go: memory stays flat
        for task, res in zip(batch, results):
            on_result(task, res)
            progress.on_progress(files=2)


def pair_files(task: PairTask, got: tuple) -> tuple:
    key, img, lab, idst, ldst, _, _ = task
    size, md5, lsize, lmd5 = got
    return ((img, idst, size, md5, None), (lab or key, ldst, lsize, lmd5, None if lab else ""))


def recover_pairs(
    out: str,
    header: dict,
    entries: Sequence[Entry],
    m: Manifest,
    report: Report,
    progress: Progress,
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
            m.entries[key] = (*slots[key], pair_files(task, res[1]))
        elif res[0] == "failed":
            for file, where, reason in res[4]:
                report.add(file, where, reason)
        else:
            report_pair(report, "", img, lab, res)
        done += 1

    run_pairs(
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

