"""Sharding: pure planning (:func:`plan_shards`) and a journaled writer (:func:`write_shards`).

Layout: ``OUT/NAME/000/``, ``001/``, ... with each image beside its label and
at most ``max_files`` files per folder. Stable: what the manifest already
places stays there; new items fill shards with room, then new shards.

Crash safety: before touching a file the writer saves the whole plan as a
journal (``OUT/.drivesync-journal.jsonl``). Every step is idempotent and is
judged from what is on disk (source there? destination there? same inode or
same md5?), so a run killed at any point and started again finishes the
journal first: every file ends up present exactly once, nothing overwritten.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from ..errors import DatasetError, UsageError
from ..progress import NULL_PROGRESS, Progress
from ..types import TEMP_PREFIX
from . import LABEL_EXT, Item, display
from .report import ITEM, Report, atomic_write

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
JOURNAL = ".drivesync-journal.jsonl"
MODES = ("link", "copy", "move")
_NOLINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES}

# One file of an entry: (source, dst relative to OUT, size, md5, text). ``source``
# is an absolute path, or the annotation a generated label came from when
# ``text`` holds the label itself.
FileOp = Tuple[str, str, int, str, Optional[str]]


@dataclass(frozen=True)
class Slot:
    """Where one item goes: shard number and output stem (unique, case-insensitively)."""

    key: str
    shard: int
    stem: str


def plan_shards(
    new: Iterable[Tuple[str, str]],
    *,
    existing: Mapping[str, Tuple[int, str]] = {},
    foreign: Mapping[int, int] = {},
    taken: Iterable[str] = (),
    max_files: Optional[int] = 2000,
    files_per_item: int = 2,
) -> List[Slot]:
    """Place items ``(key, wanted_stem)``; pure, deterministic, stable.

    ``existing`` (key -> (shard, stem), from the manifest) is kept as-is and
    occupies ``files_per_item`` files each; ``foreign`` counts other files
    already in a shard and ``taken`` their stems. New keys are placed in sorted
    order into the lowest-numbered shard with room. ``max_files=None`` puts
    everything into shard 0 (a flat folder). Returns a slot for every input key.
    """
    if max_files is not None and max_files < files_per_item:
        raise UsageError(f"--max-files must be at least {files_per_item} (an image and its label)")
    used: Dict[int, int] = dict(foreign)
    stems: Set[str] = {s.casefold() for s in taken}
    for shard, stem in existing.values():
        used[shard] = used.get(shard, 0) + files_per_item
        stems.add(stem.casefold())
    out: List[Slot] = []
    fresh: List[Tuple[str, str]] = []
    seen: Set[str] = set()
    for key, stem in new:
        if key in seen:
            continue
        seen.add(key)
        if key in existing:
            shard, old = existing[key]
            out.append(Slot(key, shard, old))
        else:
            fresh.append((key, stem))
    fresh.sort()
    shard = 0
    for key, stem in fresh:
        if max_files is not None:
            while used.get(shard, 0) + files_per_item > max_files:
                shard += 1
        used[shard] = used.get(shard, 0) + files_per_item
        name, n = stem, 0
        while name.casefold() in stems:
            n += 1
            name = f"{stem}_{n}"
        stems.add(name.casefold())
        out.append(Slot(key, shard, name))
    return out


# ---------------------------------------------------------------- manifest


@dataclass
class Manifest:
    """``OUT/manifest.jsonl``: a header line, then one line per item."""

    name: str = ""
    max_files: Optional[int] = 2000
    classes: List[str] = field(default_factory=list)
    entries: Dict[str, Tuple[int, str, Tuple[FileOp, ...]]] = field(default_factory=dict)

    def header(self) -> dict:
        return {
            "drivesync_manifest": 1,
            "name": self.name,
            "max_files": self.max_files,
            "classes": self.classes,
        }


def _entry_line(key: str, shard: int, stem: str, files: Sequence[FileOp], *, text: bool) -> str:
    doc = {
        "key": key,
        "shard": shard,
        "stem": stem,
        "files": [
            {
                "src": s,
                "dst": d,
                "size": n,
                "md5": m,
                **(
                    {"text": t}
                    if text and t is not None
                    else {"generated": True}
                    if t is not None
                    else {}
                ),
            }
            for s, d, n, m, t in files
        ],
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"


def _read_lines(path: str) -> Iterator[Tuple[int, dict]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(
                        f"{display(path)}: line {n}: not JSON ({exc.msg}); "
                        "move the file away to start a new dataset"
                    ) from exc


def _parse_entry(doc: dict) -> Tuple[str, int, str, Tuple[FileOp, ...]]:
    files = tuple(
        (
            f["src"],
            f["dst"],
            int(f["size"]),
            f["md5"],
            f.get("text", "" if f.get("generated") else None),
        )
        for f in doc["files"]
    )
    return doc["key"], int(doc["shard"]), doc["stem"], files


def load_manifest(out: str) -> Optional[Manifest]:
    path = os.path.join(out, MANIFEST)
    if not os.path.exists(path):
        return None
    m = Manifest()
    for n, doc in _read_lines(path):
        if n == 1 and "drivesync_manifest" in doc:
            m.name, m.max_files, m.classes = (
                doc.get("name", ""),
                doc.get("max_files"),
                doc.get("classes", []),
            )
            continue
        try:
            key, shard, stem, files = _parse_entry(doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{display(path)}: line {n}: bad manifest entry ({exc})") from exc
        m.entries[key] = (shard, stem, files)
    return m


def save_manifest(out: str, m: Manifest) -> str:
    """Atomic: written to a temp file, fsynced, renamed over the old one."""
    path = os.path.join(out, MANIFEST)
    tmp = os.path.join(out, TEMP_PREFIX + MANIFEST)
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(m.header()) + "\n")
        for key in sorted(m.entries):
            shard, stem, files = m.entries[key]
            f.write(_entry_line(key, shard, stem, files, text=False))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


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


def _dst(name: str, shard: int, stem: str, ext: str, flat: bool) -> str:
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


def _file_md5(path: str) -> Tuple[int, str]:
    h = hashlib.md5()
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return n, h.hexdigest()


class _Executor:
    """Carries out one FileOp in a mode; idempotent, never overwrites a stranger's file."""

    def __init__(self, out: str, mode: str, report: Report):
        self.out, self.mode, self.report = out, mode, report
        self.can_link = True
        self.linked = self.copied = self.moved = 0
        self.dirs: Set[str] = set()

    def run(self, op: FileOp) -> bool:
        src, dst_rel, size, md5, text = op
        dst = os.path.join(self.out, dst_rel)
        d = os.path.dirname(dst)
        if d not in self.dirs:
            os.makedirs(d, exist_ok=True)
            self.dirs.add(d)
        if text is not None:
            if not (os.path.exists(dst) and _file_md5(dst) == (size, md5)):
                atomic_write(dst, text)
            return True
        if self.mode == "move":
            return self._move(src, dst, size, md5)
        if self.mode == "link" and self.can_link:
            try:
                os.link(src, dst)
                self.linked += 1
                return True
            except FileExistsError:
                if os.path.samefile(src, dst):
                    return True
                return self._replace(src, dst, size, md5)
            except FileNotFoundError:
                self.report.add(src, "", "source vanished before it could be linked")
                return False
            except OSError as exc:
                if exc.errno not in _NOLINK:
                    raise
                log.info("hard links not possible here (%s); copying instead", exc.strerror)
                self.can_link = False
        return self._replace(src, dst, size, md5)

    def _replace(self, src: str, dst: str, size: int, md5: str) -> bool:
        """Copy to a temp name beside dst and rename into place (never half a file)."""
        if os.path.exists(dst) and _file_md5(dst) == (size, md5):
            return True
        tmp = os.path.join(os.path.dirname(dst), TEMP_PREFIX + os.path.basename(dst))
        try:
            shutil.copy2(src, tmp)
        except FileNotFoundError:
            self.report.add(src, "", "source vanished before it could be copied")
            return False
        os.replace(tmp, dst)
        self.copied += 1
        return True

    def _move(self, src: str, dst: str, size: int, md5: str) -> bool:
        # link + unlink instead of rename: a link never replaces an existing file,
        # and a crash between the two leaves one inode under two names (still one file).
        if self.can_link:
            try:
                os.link(src, dst)
                os.unlink(src)
                self.moved += 1
                return True
            except FileExistsError:
                pass
            except FileNotFoundError:
                return self._moved_already(src, dst)
            except OSError as exc:
                if exc.errno not in _NOLINK:
                    raise
                self.can_link = False
        if not os.path.lexists(src):
            return self._moved_already(src, dst)
        if os.path.lexists(dst):
            if os.path.samefile(src, dst) or _file_md5(dst) == (size, md5):
                os.unlink(src)  # the copy is complete and verified: drop the source
                return True
            self.report.add(
                dst, "", f"destination exists with other contents; {display(src)} left in place"
            )
            return False
        try:
            os.rename(src, dst)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            tmp = os.path.join(os.path.dirname(dst), TEMP_PREFIX + os.path.basename(dst))
            shutil.copy2(src, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dst)
            os.unlink(src)
        self.moved += 1
        return True

    def _moved_already(self, src: str, dst: str) -> bool:
        if os.path.exists(dst):
            return True
        self.report.add(src, "", "source is missing and not in the shard either")
        return False


def _write_journal(
    out: str, header: dict, entries: Iterable[Tuple[str, int, str, Sequence[FileOp]]]
) -> None:
    path = os.path.join(out, JOURNAL)
    tmp = os.path.join(out, TEMP_PREFIX + "journal")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(header) + "\n")
        for key, shard, stem, files in entries:
            f.write(_entry_line(key, shard, stem, files, text=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _run_entries(
    ex: _Executor,
    m: Manifest,
    entries: Iterable[Tuple[str, int, str, Tuple[FileOp, ...]]],
    *,
    progress: Progress,
    on_step: Optional[Callable[[int], None]],
) -> int:
    done = 0
    for key, shard, stem, files in entries:
        ok = True
        for op in files:
            ok = ex.run(op) and ok
        if ok:
            # the manifest keeps no label text: it is on disk and md5 is enough
            m.entries[key] = (
                shard,
                stem,
                tuple((s, d, n, h, None if t is None else "") for s, d, n, h, t in files),
            )
        done += 1
        progress.on_progress(files=len(files), bytes=sum(op[2] for op in files))
        if on_step is not None:
            on_step(done)
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
    header: dict = {}
    entries = []
    for n, doc in _read_lines(path):
        if n == 1:
            header = doc
            continue
        entries.append(_parse_entry(doc))
    m.name = header.get("name", m.name)
    m.max_files = header.get("max_files", m.max_files)
    m.classes = header.get("classes", m.classes)
    log.warning("finishing an interrupted run (%d items in its journal)", len(entries))
    ex = _Executor(out, header.get("mode", "copy"), report)
    done = _run_entries(ex, m, entries, progress=progress, on_step=on_step)
    save_manifest(out, m)
    os.unlink(path)
    return done


def write_shards(
    items: Sequence[Item],
    out: str,
    *,
    name: str,
    classes: Sequence[str] = (),
    max_files: Optional[int] = 2000,
    mode: str = "link",
    flat: bool = False,
    report: Optional[Report] = None,
    progress: Progress = NULL_PROGRESS,
    dry_run: bool = False,
    on_step: Optional[Callable[[int], None]] = None,
) -> ShardResult:
    """Place items into shards under ``out`` and record them in the manifest.

    Items already in the manifest with the same image and label contents stay
    untouched; changed ones are rewritten in their old place. ``on_step`` is
    called after each item (tests use it to crash a run at a chosen point).
    """
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    report = report if report is not None else Report()
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
    known = {d for _, _, files in m.entries.values() for _, d, _, _, _ in files}
    foreign, taken = _foreign(out, name, flat, known)
    by_key: Dict[str, Item] = {}
    for it in items:
        if it.key in by_key:
            report.add(
                it.origin or it.image,
                "",
                f"image {it.key} is listed twice; the first entry is used",
                skipped=ITEM,
            )
            continue
        by_key[it.key] = it
    existing = {k: (s, st) for k, (s, st, _) in m.entries.items()}
    slots = plan_shards(
        ((k, it.stem) for k, it in by_key.items()),
        existing=existing,
        foreign=foreign,
        taken=taken,
        max_files=max_files,
    )
    result.slots = slots
    todo: List[Tuple[str, int, str, Tuple[FileOp, ...]]] = []
    for slot in slots:
        it = by_key[slot.key]
        ops = _ops(it, slot, name=name, flat=flat)
        old = m.entries.get(slot.key)
        if old is not None and [(d, n, h) for _, d, n, h, _ in old[2]] == [
            (d, n, h) for _, d, n, h, _ in ops
        ]:
            continue
        todo.append((slot.key, slot.shard, slot.stem, ops))
    shards = {s for s, _, _ in m.entries.values()} | {s.shard for s in slots}
    result.shards = len(shards)
    result.placed = len(todo)
    # kept: every item already in place, including moved ones no longer in the source
    result.kept = len(set(m.entries) - {t[0] for t in todo})
    if dry_run or not todo:
        if not dry_run and (m.name != name or m.classes != list(classes) or not m.entries):
            m.name, m.max_files, m.classes = name, max_files, list(classes)
            save_manifest(out, m)
        return result
    m.name, m.max_files, m.classes = name, max_files, list(classes)
    header = {"mode": mode, **m.header()}
    _write_journal(out, header, todo)
    ex = _Executor(out, mode, report)
    progress.on_start(
        files=sum(len(t[3]) for t in todo),
        bytes=sum(op[2] for t in todo for op in t[3]),
        desc=f"{mode} into shards",
    )
    try:
        _run_entries(ex, m, todo, progress=progress, on_step=on_step)
    finally:
        progress.on_done()
    save_manifest(out, m)
    os.unlink(os.path.join(out, JOURNAL))
    result.linked, result.copied, result.moved = ex.linked, ex.copied, ex.moved
    return result


def _ops(it: Item, slot: Slot, *, name: str, flat: bool) -> Tuple[FileOp, ...]:
    img = (it.image, _dst(name, slot.shard, slot.stem, it.ext, flat), it.size, it.md5, None)
    dst = _dst(name, slot.shard, slot.stem, LABEL_EXT, flat)
    if it.label_src is not None:
        lab: FileOp = (it.label_src, dst, it.label_size, it.label_md5, None)
    else:
        text = it.label()
        data = text.encode("utf-8")
        lab = (it.origin or it.key, dst, len(data), hashlib.md5(data).hexdigest(), text)
    return (img, lab)
