"""``drivesync check OUT``: is a sharded dataset ready to train on?

Labels parse with values in range and class ids below the class count;
every label has its image and every image its label; images are readable;
no shard holds more files than the limit; identical images (same md5) are
reported; train.txt/valid.txt name images that exist; every file the
manifest lists is there with its size (labels, read anyway, also with their
md5). Without ``verify`` images are read only to their header: duplicates are
looked for among images that share a size, each hashed once (or its md5 taken
from the manifest where one is recorded), so checking an unchanged dataset
reads image headers, not images. An md5 of "" in the manifest (an image placed
by a link or move shard) is unknown: nothing is compared with it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Set, Tuple

from ..config import DEFAULT_MAX_FILES
from ..errors import NotFound
from ..hashing import md5_file
from ..outcome import Outcome
from ..progress import NULL_PROGRESS, Progress
from .configs import default_root
from .imageinfo import BadImage, probe_image
from .items import IMAGE_EXTS, LABEL_EXT
from .manifest import load_manifest
from .names import display
from .report import NOTE, Report
from .yolo import parse_label

log = logging.getLogger(__name__)


@dataclass
class CheckResult(Outcome):
    """What the check counted; ``problems`` are its findings (notes stay in ``report``)."""

    dataset: str = ""
    report: Report = field(default_factory=Report, repr=False)
    images: int = 0
    labels: int = 0
    boxes: int = 0
    shards: int = 0
    duplicates: int = 0


def find_dataset(out: str, name: Optional[str] = None) -> Tuple[str, str]:
    """(dataset folder, name): OUT/NAME, NAME from the manifest or the only subfolder."""
    out = os.path.abspath(out)
    if not os.path.isdir(out):
        raise NotFound(f"{display(out)}: no such folder")
    if name is None:
        m = load_manifest(out)
        if m is not None and m.name:
            name = m.name
        elif _shard_dirs(out):
            return out, os.path.basename(out)
        else:
            subs = [e.name for e in os.scandir(out) if e.is_dir() and _shard_dirs(e.path)]
            if len(subs) != 1:
                raise NotFound(f"{display(out)}: no sharded dataset found (give --name)")
            name = subs[0]
    path = os.path.join(out, name)
    if not os.path.isdir(path):
        raise NotFound(f"{display(path)}: no such dataset folder")
    return path, name


def _shard_dirs(path: str) -> List[str]:
    try:
        return sorted(e.path for e in os.scandir(path) if e.is_dir() and e.name.isdigit())
    except OSError:
        return []


def check_dataset(
    out: str,
    *,
    name: Optional[str] = None,
    max_files: Optional[int] = None,
    nc: Optional[int] = None,
    verify: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> CheckResult:
    """Check ``OUT/NAME`` against its labels, its limits, its lists and its manifest.

    ``verify``: hash every image and compare it with the manifest's md5 where
    one is recorded (slow: reads everything); otherwise an image whose size
    matches is trusted and only images sharing a size are hashed (duplicates).
    """
    dataset, name = find_dataset(out, name)
    m = load_manifest(os.path.abspath(out))
    prefix = dataset + os.sep
    known = (
        {p: v for p, v in m.files(os.path.abspath(out)).items() if p.startswith(prefix)}
        if m
        else {}
    )
    if max_files is None:
        max_files = m.max_files if m is not None and m.max_files else DEFAULT_MAX_FILES
    nc = _class_count(dataset, nc, m.classes if m is not None else None)
    chk = _Checker(CheckResult(dataset=dataset), known, nc, max_files, verify)
    if nc is None:
        chk.rep.add(dataset, "obj.names", "no class list found; class ids not checked",
                    skipped=NOTE)
    dirs = _shard_dirs(dataset)
    chk.res.shards = len(dirs)
    total = sum(1 for d in dirs for _ in os.scandir(d))
    progress.on_start(files=total, bytes=0, desc="check")
    for d in dirs:
        progress.on_progress(files=chk.shard(d))
    progress.on_done()
    chk.res.duplicates = _report_duplicates(chk.by_size, known, chk.digests, chk.rep)
    for path in sorted(known.keys() - chk.seen):
        chk.rep.add(path, "", "listed in the manifest but missing")
    _check_lists(dataset, name, chk.rep)
    chk.res.problems = chk.rep.failures()
    return chk.res


def _class_count(dataset: str, nc: Optional[int], classes: Optional[List[str]]) -> Optional[int]:
    """The class count given, else obj.names's, else the manifest's; None if none says."""
    names_file = os.path.join(dataset, "obj.names")
    if nc is None and os.path.isfile(names_file):
        with open(names_file, encoding="utf-8", errors="replace") as f:
            nc = sum(1 for line in f if line.strip())
    if nc is None and classes:
        nc = len(classes)
    return nc


class _Checker:
    """Checks shard folders one by one, keeping what the whole-dataset checks need."""

    def __init__(self, res: CheckResult, known: Mapping[str, Tuple[int, str]],
                 nc: Optional[int], max_files: int, verify: bool):
        self.res, self.rep, self.known = res, res.report, known
        self.nc, self.max_files, self.verify = nc, max_files, verify
        self.seen: Set[str] = set()
        self.by_size: Dict[int, List[str]] = {}  # image size -> images of it, in the order met
        self.digests: Dict[str, str] = {}  # md5s computed in this run (each image hashed once)

    def shard(self, d: str) -> int:
        """Check one shard folder; returns how many files it holds."""
        entries = [e for e in os.scandir(d) if e.is_file() and not e.name.startswith(".drivesync")]
        if len(entries) > self.max_files:
            self.rep.add(d, "", f"shard holds {len(entries)} files, over the limit of "
                         f"{self.max_files}")
        images, labels = self._sort(entries)
        for stem, path in sorted(labels.items()):
            self._label(path, orphan=stem not in images)
        for stem, path in sorted(images.items()):
            self._image(path, unlabelled=stem not in labels)
        return len(entries)

    def _sort(self, entries: List[os.DirEntry]) -> Tuple[Dict[str, str], Dict[str, str]]:
        """(images, labels) by stem; a changed size, a shared stem, a stray file reported."""
        images: Dict[str, str] = {}
        labels: Dict[str, str] = {}
        for e in entries:
            self.seen.add(e.path)
            if e.path in self.known and e.stat().st_size != self.known[e.path][0]:
                self.rep.add(e.path, "", f"{e.stat().st_size} bytes, the manifest says "
                             f"{self.known[e.path][0]}: changed since it was placed")
            stem, ext = os.path.splitext(e.name)
            ext = ext.lower()
            if ext in IMAGE_EXTS:
                if stem in images:
                    self.rep.add(e.path, "", f"two images share the stem {stem!r}; one label "
                                 "cannot serve both")
                images[stem] = e.path
            elif ext == LABEL_EXT:
                labels[stem] = e.path
            else:
                self.rep.add(e.path, "", "not an image or a label", skipped=NOTE)
        return images, labels

    def _label(self, path: str, *, orphan: bool) -> None:
        if orphan:
            self.rep.add(path, "", "label without an image (orphan)")
        self.res.labels += 1
        with open(path, "rb") as f:
            data = f.read()
        count, errors = parse_label(data, nc=self.nc)
        _compare_md5(path, len(data), hashlib.md5(data).hexdigest(), self.known, self.rep)
        self.res.boxes += count
        for n, reason in errors:
            self.rep.add(path, f"line {n}" if n else "", reason)

    def _image(self, path: str, *, unlabelled: bool) -> None:
        self.res.images += 1
        if unlabelled:
            self.rep.add(path, "", "image without a label (darknet and Ultralytics need one, "
                         "even an empty one for a background image)")
        size = _image_ok(path, self.known, self.rep, self.digests, verify=self.verify)
        if size is not None:
            self.by_size.setdefault(size, []).append(path)


def _compare_md5(
    path: str, size: int, md5: str, known: Mapping[str, Tuple[int, str]], rep: Report
) -> None:
    """A file the manifest knows, with the right size, must also have its md5
    (where the manifest records one: "" is unknown, not a value to compare)."""
    if path in known and known[path][0] == size and known[path][1] and known[path][1] != md5:
        rep.add(
            path,
            "",
            f"md5 {md5} differs from the manifest's {known[path][1]}: changed since it was placed",
        )


def _image_ok(
    path: str,
    known: Mapping[str, Tuple[int, str]],
    rep: Report,
    digests: Dict[str, str],
    *,
    verify: bool,
) -> Optional[int]:
    """The size of a readable image (None, reported, when it is not readable).

    Reads the header only; ``verify`` reads the whole image, keeps its md5 in
    ``digests`` and compares it with the manifest's where one is recorded."""
    try:
        if not verify:
            return probe_image(path, md5=False).size
        info = probe_image(path)
        digests[path] = info.md5
        _compare_md5(path, info.size, info.md5, known, rep)
        return info.size
    except BadImage as exc:
        rep.add(path, "", f"unreadable image: {exc}")
    except OSError as exc:
        rep.add(path, "", f"cannot read image: {exc.strerror or exc}")
    return None


def _report_duplicates(
    by_size: Mapping[int, List[str]],
    known: Mapping[str, Tuple[int, str]],
    digests: Dict[str, str],
    rep: Report,
) -> int:
    """Note identical images; returns how many. Only images sharing a size can be
    identical, so only those are hashed (once each), or their recorded md5 used."""
    found: List[Tuple[str, str, str]] = []
    for size, paths in by_size.items():
        if len(paths) < 2:
            continue
        first: Dict[str, str] = {}
        for path in paths:
            digest = _digest(path, size, known, digests)
            if digest is None:
                continue  # vanished since it was read: nothing to compare
            if digest in first:
                found.append((path, first[digest], digest))
            else:
                first[digest] = path
    for path, orig, digest in sorted(found):
        rep.add(path, "", f"same image as {display(orig)} (md5 {digest})", skipped=NOTE)
    return len(found)


def _digest(
    path: str, size: int, known: Mapping[str, Tuple[int, str]], digests: Dict[str, str]
) -> Optional[str]:
    """md5 of an image: computed this run, recorded in the manifest (same size), or read now."""
    if path in digests:
        return digests[path]
    rec = known.get(path)
    if rec is not None and rec[1] and rec[0] == size:
        return rec[1]
    try:
        digests[path] = md5_file(path)
    except OSError:
        return None
    return digests[path]


def _check_lists(dataset: str, name: str, rep: Report) -> None:
    """train.txt/valid.txt lines must map (under the root) to images that exist."""
    data = os.path.join(dataset, "obj.data")
    root = default_root(name)
    if os.path.isfile(data):
        with open(data, encoding="utf-8", errors="replace") as f:
            for line in f:
                k, _, v = line.partition("=")
                if k.strip() == "names" and v.strip().endswith("/obj.names"):
                    root = v.strip()[: -len("/obj.names")]
    for fname in ("train.txt", "valid.txt"):
        path = os.path.join(dataset, fname)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                p = line.strip()
                if not p:
                    continue
                if not p.startswith(root + "/"):
                    rep.add(path, f"line {n}", f"{p} is not under the root {root}")
                elif not os.path.isfile(os.path.join(dataset, p[len(root) + 1 :])):
                    rep.add(path, f"line {n}", f"{p} names an image that is not in the dataset")
