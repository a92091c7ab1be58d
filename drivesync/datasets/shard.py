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
from json.encoder import encode_basestring_ascii as _q
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


# ---------------------------------------------------------------- manifest


@dataclass
class Manifest:
    """``OUT/manifest.jsonl``: a header line, then one line per item."""

    name: str = ""
    max_files: Optional[int] = 2000
    classes: List[str] = field(default_factory=list)
    entries: Dict[str, Tuple[int, str, Tuple[FileOp, ...]]] = field(default_factory=dict)
    # manifest lines already built for the journal (identical when no label text)
    lines: Dict[str, str] = field(default_factory=dict, repr=False)

    def header(self) -> dict:
        return {
            "drivesync_manifest": 1,
            "name": self.name,
            "max_files": self.max_files,
            "classes": self.classes,
        }


def _entry_line(key: str, shard: int, stem: str, files: Sequence[FileOp], *, text: bool) -> str:
    """One JSON line, built by hand with the C string escaper: the manifest of a
    60k-pair dataset is written in a blink instead of a second of json.dumps."""
    parts = []
    for s, d, n, m, t in files:
        extra = (
            f',"text":{_q(t)}'
            if text and t is not None
            else (',"generated":true' if t is not None else "")
        )
        parts.append(f'{{"src":{_q(s)},"dst":{_q(d)},"size":{int(n)},"md5":{_q(m)}{extra}}}')
    return (
        f'{{"key":{_q(key)},"shard":{int(shard)},"stem":{_q(stem)},"files":[{",".join(parts)}]}}\n'
    )


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


def save_manifest(
    out: str, m: Manifest, *, body: Optional[str] = None, superseded: Container[str] = ()
) -> str:
    """Atomic: written to a temp file, fsynced, renamed over the old one.

    ``body`` is a file of entry lines written while a run streamed its
    results; they follow the entries of ``m`` not in ``superseded``.
    """
    path = os.path.join(out, MANIFEST)
    tmp = os.path.join(out, TEMP_PREFIX + MANIFEST)
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(m.header()) + "\n")
        for key in sorted(m.entries):
            if key in superseded:
                continue
            line = m.lines.get(key)
            if line is None:
                shard, stem, files = m.entries[key]
                line = _entry_line(key, shard, stem, files, text=False)
            f.write(line)
        if body is not None:
            with open(body, encoding="utf-8") as b:
                shutil.copyfileobj(b, f, 1 << 20)
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

    def run(self, op: FileOp, *, fresh: bool = False) -> bool:
        """``fresh``: dst was planned as a new name nobody holds, so a plain rename is safe."""
        src, dst_rel, size, md5, text = op
        dst = self.out + "/" + dst_rel if os.sep == "/" else os.path.join(self.out, dst_rel)
        d = dst[: dst.rfind("/")] if os.sep == "/" else os.path.dirname(dst)
        if d not in self.dirs:
            os.makedirs(d, exist_ok=True)
            self.dirs.add(d)
        if fresh and text is None and self.mode == "move":
            try:
                os.rename(src, dst)  # atomic: the file is under exactly one name at any time
                self.moved += 1
                return True
            except OSError:
                pass  # another filesystem, or the source is gone: take the careful path
        if text is not None:
            if not (os.path.exists(dst) and _file_md5(dst) == (size, md5)):
                atomic_write(dst, text, fsync=False)  # the journal holds the text
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


def _run_entries(
    ex: _Executor,
    m: Manifest,
    entries: Iterable[Tuple[str, int, str, Tuple[FileOp, ...]]],
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
    header: dict = {}
    entries = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            if n >= len(lines) - 1:
                break  # cut short by the crash: nothing in it was started (fsync comes first)
            raise DatasetError(
                f"{display(path)}: line {n} is not JSON; the journal is damaged"
            ) from None
        if n == 1:
            header = doc
            continue
        entries.append(_parse_entry(doc))
    m.name = header.get("name", m.name)
    m.max_files = header.get("max_files", m.max_files)
    m.classes = header.get("classes") or m.classes
    log.warning("finishing an interrupted run (%d items in its journal)", len(entries))
    if header.get("pairs"):  # the YOLO fast path: validated and placed pair by pair
        from .yolo import recover_pairs

        done = recover_pairs(out, header, entries, m, report, progress, on_step)
    else:
        ex = _Executor(out, header.get("mode", "copy"), report)
        done = _run_entries(ex, m, entries, progress=progress, on_step=on_step)
    save_manifest(out, m)
    os.unlink(path)
    return done


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


class _Journal:
    """Append-only plan of what is about to be done; every chunk is fsynced before it runs."""

    def __init__(self, out: str, header: dict):
        self.path = os.path.join(out, JOURNAL)
        self.f = open(self.path, "w", encoding="utf-8", newline="\n")
        self.f.write(json.dumps(header) + "\n")
        self.sync()

    def add(self, entries: Sequence[Tuple[str, int, str, Tuple[FileOp, ...]]]) -> List[str]:
        lines = [_entry_line(*e, text=True) for e in entries]
        self.f.write("".join(lines))
        self.sync()
        return lines

    def sync(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self, *, remove: bool) -> None:
        self.f.close()
        if remove:
            os.unlink(self.path)


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
    before = set(m.entries)
    planner = ShardPlanner(
        existing={k: (s, st) for k, (s, st, _) in m.entries.items()},
        foreign=foreign,
        taken=taken,
        max_files=max_files,
    )
    header = {
        "mode": mode,
        "name": name,
        "max_files": max_files,
        "classes": m.classes if callable(classes) else list(classes),
    }
    journal: Optional[_Journal] = None
    ex = _Executor(out, mode, report)
    seen: Set[str] = set()
    shards = {s for s, _, _ in m.entries.values()}
    todo: List[Tuple[str, int, str, Tuple[FileOp, ...]]] = []
    done = placed_old = 0
    progress.on_start(files=2 * (total or 0), bytes=0, desc=f"{mode} into shards")

    def flush() -> None:
        nonlocal journal, done
        if not todo or dry_run:
            todo.clear()
            return
        if journal is None:
            journal = _Journal(out, header)
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
            if old is not None and [(d, n, h) for _, d, n, h, _ in old[2]] == [
                (d, n, h) for _, d, n, h, _ in ops
            ]:
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
    if journal is not None or m.name != name or m.classes != names or not m.entries:
        m.name, m.max_files, m.classes = name, max_files, names
        save_manifest(out, m)
    if journal is not None:
        os.unlink(journal.path)
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
