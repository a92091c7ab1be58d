"""YOLO input (image + same-stem ``.txt``) is validated and passed through as-is.

A label is found next to its image, or under ``labels/`` when the image sits
under ``images/`` (the Ultralytics layout). An image with no label file is a
background image: an empty label is written for it and it is noted. A label
with any bad line skips the whole pair (its files are left where they are),
because passing half a label through would teach the model wrong background.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import threading
from typing import (
    Any,
    Callable,
    Container,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from ..errors import UsageError
from ..progress import NULL_PROGRESS, Progress
from ..types import TEMP_PREFIX
from . import (
    IMAGE_EXTS,
    Conversion,
    Item,
    display,
    image_item,
    is_bad,
    name_fields,
    probe,
    relkey,
    report_bad_image,
)
from .report import NOTE, Report

log = logging.getLogger(__name__)

# .txt files in a YOLO folder that are not labels
NOT_LABELS = {
    "classes.txt",
    "obj.names",
    "train.txt",
    "valid.txt",
    "val.txt",
    "test.txt",
    "readme.txt",
    "labels.txt",
    "license.txt",
}
_IMAGE_EXTS = frozenset(IMAGE_EXTS)
_RDONLY = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_EMPTY_MD5 = hashlib.md5(b"").hexdigest()


def parse_label(data: bytes, *, nc: Optional[int]) -> Tuple[int, List[Tuple[int, str]]]:
    """(box count, [(line number, reason), ...]) for the bytes of one label file."""
    count, errors, _ = _parse(data, nc)
    return count, errors


def _parse(data: bytes, nc: Optional[int]) -> Tuple[int, List[Tuple[int, str]], int]:
    """(box count, errors, highest class id) of one label file."""
    errors: List[Tuple[int, str]] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return 0, [(0, "label is not UTF-8 text")], -1
    boxes = 0
    top = -1
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            errors.append((n, f"expected 5 fields 'class cx cy w h', found {len(parts)}"))
            continue
        try:
            c = int(parts[0])
            cx, cy, w, h = float(parts[1]), float(parts[2]), float(parts[3]), float(parts[4])
        except ValueError:
            errors.append((n, "expected an integer class and four numbers"))
            continue
        if c < 0 or (nc is not None and c >= nc):
            errors.append((n, f"class id {c} out of range (0..{(nc or 1) - 1})"))
        elif not (0.0 <= cx <= 1.0 and 0.0 <= cy <= 1.0 and 0.0 < w <= 1.0 and 0.0 < h <= 1.0):
            errors.append((n, "values must be in [0, 1] with w, h > 0"))
        else:
            boxes += 1
            if c > top:
                top = c
    return boxes, errors, top


def _label_for(image: str) -> str:
    stem = os.path.splitext(image)[0]
    return stem + ".txt"


def _scan(root: str, exclude: Optional[str]) -> Tuple[List[str], Dict[str, str]]:
    """Images (sorted) and every .txt (lower-case path -> path) under root, using scandir."""
    images: List[str] = []
    texts: Dict[str, str] = {}
    ex = os.path.abspath(exclude) if exclude else None
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                name = e.name
                if name.startswith(".drivesync"):
                    continue
                if e.is_dir(follow_symlinks=False):
                    if ex is None or e.path != ex:
                        stack.append(e.path)
                    continue
                ext = os.path.splitext(name)[1].lower()
                if ext in _IMAGE_EXTS:
                    images.append(e.path)
                elif ext == ".txt":
                    texts[e.path] = e.path
    images.sort()
    return images, texts


# Below this many images the work is done in-process; above it, forked workers
# validate in parallel (reading and hashing is CPU-bound Python per small file).
PARALLEL_MIN = 4000


def _check_pair(root: str, image: str, label: Optional[str], nc: Optional[int]) -> tuple:
    """Validate one pair without touching the report (runs in a worker process).

    Returns ``(image info or (kind, reason), label result)`` where the label
    result is None (no label), ``("err", [(line, reason)])`` or
    ``("ok", size, md5, boxes, max class id)``.
    """
    info = probe(image)
    if is_bad(info):
        return info, None, None
    names = name_fields(root, image)
    if label is None:
        return info, None, names
    try:
        fd = os.open(label, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            data = os.read(fd, 1 << 16)
            if len(data) == 1 << 16:
                with os.fdopen(os.dup(fd), "rb") as f:
                    f.seek(len(data))
                    data += f.read()
        finally:
            os.close(fd)
    except OSError as exc:
        return info, ("err", [(0, f"cannot read label: {exc.strerror or exc}")]), names
    count, errors = parse_label(data, nc=nc)
    if errors:
        return info, ("err", errors), names
    top = -1
    if nc is None:
        for line in data.split(b"\n"):
            if line.strip():
                top = max(top, int(line.split()[0]))
    return info, ("ok", len(data), hashlib.md5(data).hexdigest(), count, top), names


def _check_chunk(
    args: Tuple[str, List[Tuple[str, Optional[str]]], Optional[int]],
) -> List[tuple]:
    root, pairs, nc = args
    return [_check_pair(root, i, lab, nc) for i, lab in pairs]


def _check_all(
    root: str, pairs: List[Tuple[str, Optional[str]]], nc: Optional[int], progress: Progress
) -> Iterator[tuple]:
    """Results in input order, in parallel where that is safe and worth it."""
    cpus = os.cpu_count() or 1
    jobs = max(1, min(8, cpus - 1))  # the parent is busy too: it moves what was validated
    ctx = None
    if len(pairs) >= PARALLEL_MIN and cpus > 1 and threading.active_count() == 1:
        try:
            ctx = multiprocessing.get_context("fork")  # no re-import, no pickled state
        except ValueError:  # Windows / no fork
            ctx = None
    if ctx is None:
        for image, label in pairs:
            progress.on_progress(files=1)
            yield _check_pair(root, image, label, nc)
        return
    size = max(200, len(pairs) // (jobs * 8))
    chunks = [(root, pairs[i : i + size], nc) for i in range(0, len(pairs), size)]
    with ctx.Pool(jobs) as pool:
        for results in pool.imap(_check_chunk, chunks):
            progress.on_progress(files=len(results))
            yield from results


def convert_yolo(
    src: str,
    *,
    report: Report,
    classes: Optional[Sequence[str]] = None,
    exclude: Optional[str] = None,
    moved: Container[str] = (),
    progress: Progress = NULL_PROGRESS,
    lazy: bool = False,
) -> Conversion:
    """Validate every pair under ``src``. ``lazy``: ``items`` is a key-sorted stream, so
    the sharder can move validated pairs while later ones are still being read."""
    src = os.path.abspath(src)
    images, texts = _scan(src, exclude)
    progress.on_start(files=len(images), bytes=0, desc="validate")
    names = list(classes) if classes is not None else _classes_in(src)
    nc = len(names) if names is not None else None
    conv = Conversion(classes=names or [])
    used: Set[str] = set()
    sep_images = f"{os.sep}images{os.sep}"
    pairs: List[Tuple[str, Optional[str]]] = []
    for image in images:
        label = image.rsplit(".", 1)[0] + ".txt"
        if label not in texts and sep_images in image:
            alt = _label_for(f"{os.sep}labels{os.sep}".join(image.rsplit(sep_images, 1)))
            if alt in texts:
                label = alt
        used.add(label)
        pairs.append((image, label if label in texts else None))
    conv.expected = len(pairs)
    stream = _items(src, pairs, texts, used, conv, names, nc, report, moved, progress)
    if lazy:
        conv.items = stream
    else:
        conv.items = list(stream)
    return conv


def _items(
    src: str,
    pairs: List[Tuple[str, Optional[str]]],
    texts: Dict[str, str],
    used: Set[str],
    conv: Conversion,
    names: Optional[List[str]],
    nc: Optional[int],
    report: Report,
    moved: Container[str],
    progress: Progress,
) -> Iterator[Item]:
    max_class = -1
    for (image, label), (info, lab, names) in zip(pairs, _check_all(src, pairs, nc, progress)):
        if is_bad(info):
            report_bad_image(report, src, image, info, moved=moved)
            continue
        if lab is not None and lab[0] == "err":
            for n, reason in lab[1]:
                report.add(label, f"line {n}" if n else "", reason)
            continue
        item = image_item(src, image, info, report, names=names)
        if lab is not None:
            _, item.label_size, item.label_md5, count, top = lab
            item.label_src = label
            max_class = max(max_class, top)
            conv.counts.boxes += count
        else:
            report.add(
                image,
                "",
                "no label file: written as a background image (empty label)",
                skipped=NOTE,
            )
        yield item
    progress.on_done()
    for t in sorted(texts):
        if t in used or os.path.basename(t).lower() in NOT_LABELS:
            continue
        if relkey(src, t).count("/") == 0 and not _looks_like_label(t):
            continue
        report.add(t, "", "label without an image (orphan)")
    if names is None:
        conv.classes = [f"class{i}" for i in range(max_class + 1)]


def _looks_like_label(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError:
        return False
    _, errors = parse_label(data, nc=None)
    return not errors


def _classes_in(src: str) -> Optional[List[str]]:
    for name in ("classes.txt", "obj.names"):
        p = os.path.join(src, name)
        if os.path.isfile(p):
            with open(p, encoding="utf-8", errors="replace") as f:
                names = [line.strip() for line in f if line.strip()]
            if names:
                log.info("classes from %s", display(p))
                return names
    return None


# ---------------------------------------------------------------- fast shard path
#
# For YOLO input the files are only validated and passed through, so the
# layout can be planned from the scan alone (a pair found bad later leaves
# its planned name unused). Workers then validate and place whole pairs in
# parallel, and the parent only plans, journals and records. The journal is
# written and fsynced before any file moves; its entries carry no md5 (not
# known yet), so recovery validates again and reads each file where it is.

# (key, image src, label src or None, image dst, label dst, expected (4 values) or None, fresh)
PairTask = Tuple[str, str, Optional[str], str, str, Optional[tuple], bool]


def _read_small(path: str) -> bytes:
    fd = os.open(path, _RDONLY)
    try:
        data = os.read(fd, 1 << 16)
        if len(data) == 1 << 16:
            with os.fdopen(os.dup(fd), "rb") as f:
                f.seek(len(data))
                data += f.read()
        return data
    finally:
        os.close(fd)


_PARENT: Optional[int] = None  # set in forked workers


def _worker_init(parent: int) -> None:
    global _PARENT
    _PARENT = parent


def _place_pairs(args: tuple, ex: Any = None) -> List[tuple]:
    """Validate and place a batch of pairs (runs in a worker, or in-process)."""
    from .shard import _Executor

    out, mode, nc, recovering, tasks = args
    ex = ex or _Executor(out, mode, Report())
    results = []
    for key, img, lab, img_dst, lab_dst, expect, fresh in tasks:
        if _PARENT is not None and os.getppid() != _PARENT:
            os._exit(1)  # the run was killed: stop, the next run finishes the journal
        img_at, lab_at = img, lab
        if recovering:  # a move may have happened already: read the file where it is now
            if not os.path.lexists(img):
                img_at = os.path.join(out, img_dst)
            if lab is not None and not os.path.lexists(lab):
                lab_at = os.path.join(out, lab_dst)
        info = probe(img_at)
        if is_bad(info):
            results.append(("bad", info))
            continue
        lsize, lmd5, count, top = 0, _EMPTY_MD5, 0, -1
        if lab_at is not None:
            try:
                data = _read_small(lab_at)
            except OSError as exc:
                results.append(("label", [(0, f"cannot read label: {exc.strerror or exc}")]))
                continue
            count, errors, top = _parse(data, nc)
            if errors:
                results.append(("label", errors))
                continue
            lsize, lmd5 = len(data), hashlib.md5(data).hexdigest()
        got = (info.size, info.md5, lsize, lmd5)
        if (
            expect == got
            and os.path.exists(os.path.join(out, img_dst))
            and os.path.exists(os.path.join(out, lab_dst))
        ):
            results.append(("kept", got, count, top, ()))
            continue
        seen = len(ex.report.problems)
        ok = ex.run((img, img_dst, info.size, info.md5, None), fresh=fresh)
        if lab is None:
            ok = ex.run((key, lab_dst, 0, lmd5, ""), fresh=fresh) and ok
        else:
            ok = ex.run((lab, lab_dst, lsize, lmd5, None), fresh=fresh) and ok
        problems = ()
        if len(ex.report.problems) != seen:
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
    """Run task batches in order; in forked workers when big enough.

    ``batches`` is consumed lazily (by the pool's feeder thread when parallel),
    so planning and journaling the next batch overlaps with placing this one.
    """
    cpus = os.cpu_count() or 1
    ctx = None
    if parallel and cpus > 1 and threading.active_count() == 1:
        try:
            ctx = multiprocessing.get_context("fork")  # before any thread of ours starts
        except ValueError:
            ctx = None
    if ctx is None:
        from .shard import _Executor

        ex = _Executor(out, mode, Report())
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

    with ctx.Pool(min(8, cpus), initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        for i, results in enumerate(pool.imap(_place_pairs, args())):
            batch = keep[i]
            keep[i] = []  # let it go: memory stays flat
            for task, res in zip(batch, results):
                on_result(task, res)
            progress.on_progress(files=2 * len(results))


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
) -> Tuple[Any, Conversion]:
    """Validate and shard a YOLO folder in one pass; returns (ShardResult, Conversion)."""
    from .shard import (
        JOURNAL,
        MODES,
        ShardPlanner,
        ShardResult,
        _dst,
        _entry_line,
        _foreign,
        _Journal,
        load_manifest,
        recover,
        save_manifest,
    )

    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    src, out = os.path.abspath(src), os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    result = ShardResult(
        dataset=os.path.join(out, name), manifest=os.path.join(out, "manifest.jsonl")
    )
    result.recovered = recover(out, report=report, progress=progress)
    m = load_manifest(out)
    if m is None:
        from .shard import Manifest

        m = Manifest()
    if m.entries and m.name and m.name != name:
        raise UsageError(
            f"{display(out)} already holds dataset {m.name!r}; use --name {m.name} "
            "or another output folder"
        )
    images, texts = _scan(src, exclude)
    names = list(classes) if classes is not None else _classes_in(src)
    nc = len(names) if names is not None else None
    conv = Conversion(classes=names or [], expected=len(images))
    known = {d for _, _, files in m.entries.values() for _, d, _, _, _ in files}
    foreign, taken = _foreign(out, name, False, known)
    before = set(m.entries)
    planner = ShardPlanner(
        existing={k: (s, st) for k, (s, st, _) in m.entries.items()},
        foreign=foreign,
        taken=taken,
        max_files=max_files,
    )
    used: Set[str] = set()
    handled: Set[str] = set()
    sep_images = f"{os.sep}images{os.sep}"
    header = {
        "mode": mode,
        "name": name,
        "max_files": max_files,
        "classes": names or m.classes,
        "pairs": True,
        "nc": nc,
    }
    journal = _Journal(out, header)

    def plan(batch: List[str]) -> List[PairTask]:
        """Plan a batch and make its journal lines durable before it is handed out."""
        tasks: List[PairTask] = []
        places = []
        for image in batch:
            label = image.rsplit(".", 1)[0] + ".txt"
            if label not in texts and sep_images in image:
                alt = _label_for(f"{os.sep}labels{os.sep}".join(image.rsplit(sep_images, 1)))
                if alt in texts:
                    label = alt
            used.add(label)
            key, stem, ext, why = name_fields(src, image)
            if why:
                report.add(display(image), "name", f"{why}; written as {stem}{ext}", skipped=NOTE)
            slot = planner.place(key, stem)
            places.append(slot)
            old = m.entries.get(key)
            expect = None
            if old is not None and len(old[2]) == 2:
                (_, _, s1, h1, _), (_, _, s2, h2, _) = old[2]
                expect = (s1, h1, s2, h2)
            tasks.append(
                (
                    key,
                    image,
                    label if label in texts else None,
                    _dst(name, slot.shard, slot.stem, ext, False),
                    _dst(name, slot.shard, slot.stem, ".txt", False),
                    expect,
                    key not in before,
                )
            )
        journal.add(
            [
                (
                    key,
                    slot.shard,
                    slot.stem,
                    ((img, idst, -1, "", None), (lab or key, ldst, -1, "", None if lab else "")),
                )
                for (key, img, lab, idst, ldst, _, _), slot in zip(tasks, places)
            ]
        )
        return tasks

    size = 500
    batches = (plan(images[i : i + size]) for i in range(0, len(images), size))
    progress.on_start(files=2 * len(images), bytes=0, desc=f"validate and {mode}")
    state = {"done": 0, "top": -1}
    shards = {s for s, _, _ in m.entries.values()}
    # new manifest lines go straight to a file (in key order), not into memory
    body_path = os.path.join(out, TEMP_PREFIX + "manifest-body")
    body = open(body_path, "w", encoding="utf-8", newline="\n")
    pending: List[str] = []

    def on_result(task: PairTask, res: tuple) -> None:
        key, img, lab, idst, ldst, _, _ = task
        kind = res[0]
        if kind == "bad":
            report_bad_image(report, src, img, res[1])
        elif kind == "label":
            for n, reason in res[1]:
                report.add(lab, f"line {n}" if n else "", reason)
        else:
            size, md5, lsize, lmd5 = res[1]
            conv.counts.boxes += res[2]
            state["top"] = max(state["top"], res[3])
            for file, where, reason in res[4]:
                report.add(file, where, reason)
            if lab is None:
                report.add(
                    img,
                    "",
                    "no label file: written as a background image (empty label)",
                    skipped=NOTE,
                )
            if kind != "failed":
                shard = int(idst.rsplit("/", 2)[-2])
                stem = ldst.rsplit("/", 1)[-1][: -len(".txt")]
                shards.add(shard)
                files = (
                    (img, idst, size, md5, None),
                    (lab or key, ldst, lsize, lmd5, None if lab else ""),
                )
                pending.append(_entry_line(key, shard, stem, files, text=False))
                if len(pending) >= 500:
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
            parallel=len(images) >= PARALLEL_MIN,
        )
    finally:
        progress.on_done()
        journal.close(remove=False)
        body.write("".join(pending))
        body.close()
    for t in sorted(texts):
        if t in used or os.path.basename(t).lower() in NOT_LABELS:
            continue
        if relkey(src, t).count("/") == 0 and not _looks_like_label(t):
            continue
        report.add(t, "", "label without an image (orphan)")
    if names is None:
        names = (
            m.classes
            if m.classes and len(m.classes) > state["top"]
            else [f"class{i}" for i in range(state["top"] + 1)]
        )
    conv.classes = list(names)
    m.name, m.max_files, m.classes = name, max_files, list(names)
    save_manifest(out, m, body=body_path, superseded=handled)
    os.unlink(body_path)
    os.unlink(os.path.join(out, JOURNAL))
    result.kept += len(before - handled)  # moved earlier, no longer in the source
    result.shards = len(shards)
    return result, conv


def recover_pairs(
    out: str,
    header: dict,
    entries: list,
    m: Any,
    report: Report,
    progress: Progress,
    on_step: Optional[Callable[[int], None]],
) -> int:
    """Finish a fast-path journal: validate each pair where its files are now, place it."""
    root = ""
    tasks: List[PairTask] = []
    for key, _shard, _stem, files in entries:
        (img, idst, _, _, _), (lab, ldst, _, _, text) = files
        tasks.append((key, img, None if text is not None else lab, idst, ldst, None, False))
    slots = {key: (shard, stem) for key, shard, stem, _ in entries}
    done = 0

    def on_result(task: PairTask, res: tuple) -> None:
        nonlocal done
        key, img, lab, idst, ldst, _, _ = task
        if res[0] in ("ok", "kept"):
            size, md5, lsize, lmd5 = res[1]
            shard, stem = slots[key]
            m.entries[key] = (
                shard,
                stem,
                (
                    (img, idst, size, md5, None),
                    (lab or key, ldst, lsize, lmd5, None if lab else ""),
                ),
            )
        elif res[0] == "bad":
            report_bad_image(report, root, img, res[1])
        elif res[0] == "label":
            for n, reason in res[1]:
                report.add(lab, f"line {n}" if n else "", reason)
        else:
            for file, where, reason in res[4]:
                report.add(file, where, reason)
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
        parallel=len(tasks) >= PARALLEL_MIN,
    )
    return done
