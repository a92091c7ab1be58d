"""``OUT/manifest.jsonl`` (what is where) and ``OUT/.drivesync-journal.jsonl`` (what is next).

The manifest is a header line, then one JSON line per item: its key (the
source path relative to SRC), shard, output stem and files, each with source,
destination relative to OUT, size and md5. It is replaced atomically, so a
reader sees the old one or the new one. The journal is the plan of a run,
fsynced chunk by chunk before anything in the chunk is touched.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _q
from typing import Container, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from ..config import DEFAULT_MAX_FILES
from ..errors import DatasetError
from ..types import TEMP_PREFIX
from .names import display

MANIFEST = "manifest.jsonl"
JOURNAL = ".drivesync-journal.jsonl"

# One file of an entry: (source, dst relative to OUT, size, md5, text). ``source``
# is an absolute path, or the annotation a generated label came from when
# ``text`` holds the label itself.
FileOp = Tuple[str, str, int, str, Optional[str]]
Entry = Tuple[str, int, str, Tuple[FileOp, ...]]  # key, shard, stem, files


@dataclass
class Manifest:
    """``OUT/manifest.jsonl``: a header line, then one line per item."""

    name: str = ""
    max_files: Optional[int] = DEFAULT_MAX_FILES
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

    def destinations(self) -> Set[str]:
        """Every file the manifest places, relative to OUT."""
        return {d for _, _, files in self.entries.values() for _, d, _, _, _ in files}

    def files(self, out: str) -> Dict[str, Tuple[int, str]]:
        """Absolute path -> (size, md5) of every file the manifest places."""
        return {
            os.path.join(out, d): (n, h)
            for _, _, files in self.entries.values()
            for _, d, n, h, _ in files
        }

    def images(self) -> List[str]:
        """Image paths relative to the dataset folder (``000/a.jpg``), sorted."""
        return sorted(files[0][1].split("/", 1)[1] for _, _, files in self.entries.values())


def entry_line(key: str, shard: int, stem: str, files: Sequence[FileOp], *, text: bool) -> str:
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


def parse_entry(doc: dict) -> Entry:
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
            key, shard, stem, files = parse_entry(doc)
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
                line = entry_line(key, shard, stem, files, text=False)
            f.write(line)
        if body is not None:
            with open(body, encoding="utf-8") as b:
                shutil.copyfileobj(b, f, 1 << 20)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


class Journal:
    """Append-only plan of what is about to be done; every chunk is fsynced before it runs."""

    def __init__(self, out: str, header: dict):
        self.path = os.path.join(out, JOURNAL)
        self.f = open(self.path, "w", encoding="utf-8", newline="\n")
        self.f.write(json.dumps(header) + "\n")
        self.sync()

    def add(self, entries: Sequence[Entry]) -> List[str]:
        lines = [entry_line(*e, text=True) for e in entries]
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


def read_journal(path: str) -> Tuple[dict, List[Entry]]:
    """(header, entries) of a journal; a last line cut short by a crash is ignored."""
    header: dict = {}
    entries: List[Entry] = []
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
        entries.append(parse_entry(doc))
    return header, entries
