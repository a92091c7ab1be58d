"""The newest *complete* checkpoint: find it, and pull it.

"Newest" (documented in the README, "Checkpoints"):

* among numbered files of a family, the higher number is newer (a numbered
  file's time is raised to the newest time of any lower-numbered sibling, so
  the numbered sequence stays in number order even when copies reset mtimes);
* between roles, the modified time decides: darknet writes ``_last``/``.backup``
  every 100 iterations, so it is usually newer than the last ``_<iter>`` file;
* ``final`` wins within its family (training finished);
* ``best``/``ema`` never beat the newest ``last`` of their family: trainers
  write them just after a ``last`` of the same iteration, so a later mtime
  says nothing about a newer state (they win only when no ``last`` exists);
* a checkpoint holding the very bytes of a ``last`` of its family (same md5:
  Ultralytics writes ``epoch<N>.pt`` as a copy of ``last.pt``) is never newer
  than that ``last``, so the ``last`` is what a resume names;
* at equal times: final > last > numbered > ema > best.

"Settled" (``min_age``): a checkpoint modified less than ``min_age`` seconds
before ``now`` may still be being written (a trainer writing straight into the
Colab mount, which lists a file while it grows); :func:`find_latest` prefers
settled checkpoints and falls back to a young one only when nothing is settled.

"Complete" excludes zero-size files, drivesync's own temporary/internal names
(uploads still in flight), and truncated writes: a file smaller than the
largest sibling of its family. Darknet ``.weights``/``.backup`` of one model are
all exactly the same size, so any smaller one is truncated; other formats
(pickled state dicts) vary a little, so they must be within 5 % of the largest
sibling with the same extension and the same kind (named role vs numbered;
Ultralytics strips the optimizer from ``last.pt``/``best.pt`` at the end, which
makes them legitimately smaller than the ``epoch<N>.pt`` files).
"""

from __future__ import annotations

import logging
import posixpath
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from ..errors import NotFound
from ..progress import NULL_PROGRESS, Progress
from ..remotes.base import Remote
from ..types import TEMP_PREFIX, Entry, is_internal
from .families import (
    BEST,
    EMA,
    FINAL,
    FIXED_SIZE_EXTS,
    LAST,
    NUMBERED,
    Checkpoint,
    classify,
    group_families,
)

log = logging.getLogger(__name__)

#: how much smaller than its largest sibling a variable-size checkpoint may be
SIZE_TOLERANCE = 0.05
#: tie-break at equal times, higher is newer
ROLE_RANK = {FINAL: 4, LAST: 3, NUMBERED: 2, EMA: 1, BEST: 0}
#: seconds a checkpoint on a local folder must be unmodified before prune may
#: delete it or latest prefers it (see :func:`default_min_age`)
DEFAULT_LOCAL_MIN_AGE = 60.0


def _size_group(c: Checkpoint) -> tuple:
    if c.ext in FIXED_SIZE_EXTS:
        return (c.key, "darknet")
    return (c.key, c.ext, c.role == NUMBERED)


def incomplete_reasons(checkpoints: Iterable[Checkpoint]) -> dict[int, str]:
    """{id(checkpoint): why it is not complete} for the ones that are not."""
    items = list(checkpoints)
    largest: dict[tuple, int] = {}
    for c in items:
        g = _size_group(c)
        largest[g] = max(largest.get(g, 0), c.entry.size)
    out: dict[int, str] = {}
    for c in items:
        name = c.entry.name
        if is_internal(name) or name.startswith(TEMP_PREFIX):
            out[id(c)] = "temporary file (upload in flight)"
        elif c.entry.size <= 0:
            out[id(c)] = "zero-size file"
        else:
            ref = largest[_size_group(c)]
            tol = 0.0 if c.ext in FIXED_SIZE_EXTS else SIZE_TOLERANCE
            if c.entry.size < ref * (1.0 - tol):
                out[id(c)] = f"truncated? {c.entry.size} bytes, siblings have {ref}"
    return out


def young_reason(c: Checkpoint, *, min_age: float, now: float) -> Optional[str]:
    """Why ``c`` is too young to trust (None when it is settled or min_age is 0)."""
    if min_age <= 0:
        return None
    age = now - c.entry.modified
    if age >= min_age:
        return None
    when = (f"modified {age:.0f}s ago" if age >= 0 else
            f"modified time {-age:.0f}s in the future (clock skew?)")
    return f"{when}, younger than --min-age {min_age:g}s: may still be being written"


def default_min_age(remote: Remote) -> float:
    """The ``--min-age`` a CLI run uses when none is given: 60 s where writes are live.

    A local folder (the Colab mount, Drive for desktop) shows a checkpoint while
    the trainer is still writing it, and its modified time is live
    (``features.live_writes``). Through the Drive API a file only appears once its
    upload has completed, so 0 there.
    """
    return DEFAULT_LOCAL_MIN_AGE if remote.features.live_writes else 0.0


def order_newest_first(checkpoints: Iterable[Checkpoint]) -> list[Checkpoint]:
    """Checkpoints sorted newest first by the rules in this module's docstring."""
    items = list(checkpoints)
    effective: dict[int, float] = {}
    for members in group_families(items).values():
        numbered = sorted((c for c in members if c.role == NUMBERED),
                          key=lambda c: (c.number, c.entry.modified))
        running = float("-inf")
        for c in numbered:
            running = max(running, c.entry.modified)
            effective[id(c)] = running
        newest = max(c.entry.modified for c in members)
        lasts = [c.entry.modified for c in members if c.role == LAST]
        for c in members:
            if c.role == FINAL:
                effective[id(c)] = newest
            elif c.role in (BEST, EMA) and lasts:
                # best/ema are written right after a `last` of the same
                # iteration (Ultralytics writes the very same bytes), so they are
                # never a newer training state than the newest `last`.
                effective[id(c)] = min(c.entry.modified, max(lasts))
            elif c.role != NUMBERED:
                effective[id(c)] = c.entry.modified
        same_as_last: dict[str, float] = {}
        for c in members:
            if c.role == LAST and c.entry.md5:
                same_as_last[c.entry.md5] = max(same_as_last.get(c.entry.md5, c.entry.modified),
                                                c.entry.modified)
        for c in members:
            twin = same_as_last.get(c.entry.md5 or "") if c.role not in (LAST, FINAL) else None
            if twin is not None:
                effective[id(c)] = min(effective[id(c)], twin)

    def key(c: Checkpoint) -> tuple:
        return (effective[id(c)], ROLE_RANK[c.role],
                c.number if c.number is not None else -1, c.entry.modified, c.entry.path,
                c.entry.id)

    return sorted(items, key=key, reverse=True)


def complete_checkpoints(entries: Iterable[Entry], *,
                         family: Optional[str] = None) -> list[Checkpoint]:
    """Complete checkpoints among ``entries``, newest first (optionally one family)."""
    found = classify(entries)
    bad = incomplete_reasons(found)
    good = [c for c in found if id(c) not in bad
            and (family is None or c.family == family)]
    return order_newest_first(good)


def _describe(remote: Remote, path: str, family: Optional[str]) -> str:
    where = remote.address + (("/" + path) if path else "")
    return where + (f" (family {family!r})" if family is not None else "")


def ranked_latest(remote: Remote, path: str = "", *, family: Optional[str] = None,
                  min_age: float = 0.0, now: Optional[float] = None,
                  recursive: bool = False) -> list[Checkpoint]:
    """Complete checkpoints in the order :func:`find_latest` prefers them (settled first).

    NotFound (exit 3) if there is none.
    """
    if recursive:
        entries = [e for e in remote.walk(path) if not e.is_dir]
    else:
        entries = remote.list(path)
    found = complete_checkpoints(entries, family=family)
    if not found:
        hint = ""
        if recursive:
            hint = " or below it"
        elif not classify(entries) and any(e.is_dir for e in entries):
            sub = sorted(e.name for e in entries if e.is_dir)
            hint = (f"; it has subfolders ({', '.join(sub[:3])}{', ...' if len(sub) > 3 else ''})"
                    ": point at the folder that holds the checkpoints (e.g. .../weights), "
                    "or use --recursive")
        raise NotFound(f"no complete checkpoint in {_describe(remote, path, family)}{hint}")
    now = time.time() if now is None else now
    settled = [c for c in found if young_reason(c, min_age=min_age, now=now) is None]
    young = [c for c in found if young_reason(c, min_age=min_age, now=now) is not None]
    return settled + young


def find_latest(remote: Remote, path: str = "", *, family: Optional[str] = None,
                min_age: float = 0.0, now: Optional[float] = None,
                recursive: bool = False) -> Checkpoint:
    """The newest complete checkpoint in folder ``path``; NotFound (exit 3) if none.

    With ``min_age`` the newest *settled* one (unmodified for ``min_age`` seconds
    before ``now``, default the current time) wins; a younger one is chosen only
    when no complete checkpoint is settled (:func:`young_reason` then says why
    it may be unsafe). ``recursive`` looks in every folder below ``path`` (each
    folder is its own family, so completeness is judged per run); between runs
    the modified time decides, so the run trained last wins. Judged from the
    listing alone: only :func:`pull_latest`, which has the bytes, can refuse a
    checkpoint full of NaN.
    """
    ranked = ranked_latest(remote, path, family=family, min_age=min_age, now=now,
                           recursive=recursive)
    chosen = ranked[0]
    log.info("latest checkpoint: %s", chosen.entry.path)
    return chosen


def safe_local_name(name: str) -> str:
    """A remote name made safe as one local path component (names are untrusted)."""
    cleaned = name.replace("\x00", "").replace("/", "_").replace("\\", "_").strip()
    if cleaned in ("", ".", "..") or cleaned.startswith(TEMP_PREFIX):
        cleaned = "checkpoint" + (("_" + cleaned.strip(".")) if cleaned.strip(".") else "")
    return cleaned


def local_target(dest: Union[str, Path], checkpoint: Checkpoint) -> Path:
    """``dest`` itself, or ``dest/NAME`` when ``dest`` is a folder (or a str ending in '/')."""
    folder = isinstance(dest, str) and dest.endswith(("/", "\\"))
    path = Path(dest)
    if folder or path.is_dir():
        return path / safe_local_name(posixpath.basename(checkpoint.entry.path))
    return path


def _verify(path: Path, name: str) -> None:
    """Refuse weights full of NaN/Inf; other oddities are the listing's business
    (``latest`` also serves formats it cannot parse, so only the float scan decides)."""
    from ..launch.weights import (
        DARKNET_SUFFIXES,
        PT_SUFFIXES,
        CheckpointError,
        NonFiniteWeights,
        check_darknet,
        check_pt,
    )

    try:
        if name.lower().endswith(DARKNET_SUFFIXES):
            check_darknet(path)
        elif name.lower().endswith(PT_SUFFIXES):
            check_pt(path, load=False)
    except NonFiniteWeights:
        raise
    except CheckpointError:
        pass


def pull_latest(remote: Remote, path: str = "", *, dest: Union[str, Path],
                family: Optional[str] = None, min_age: float = 0.0,
                now: Optional[float] = None, recursive: bool = False,
                progress: Progress = NULL_PROGRESS,
                on_skip: Callable[[str], None] = log.warning) -> Checkpoint:
    """Download the newest complete checkpoint to ``dest`` (a file, or a folder).

    ``remote.download`` writes to a temporary sibling, resumes one left by an
    interrupted pull, verifies the md5 and renames into place, so ``dest`` is
    either the old file or the complete new one, never half of it. The bytes are
    then checked (:mod:`drivesync.launch.weights`: header, every float finite); a
    checkpoint that fails is removed again, ``on_skip`` says why, and the next
    newest one is pulled instead.
    """
    from ..launch.weights import CheckpointError

    ranked = ranked_latest(remote, path, family=family, min_age=min_age, now=now,
                           recursive=recursive)
    for found in ranked:
        target = local_target(dest, found)
        progress.on_start(files=1, bytes=found.entry.size, desc=found.entry.name)
        try:
            remote.download(found.entry, target, progress=progress)
            progress.on_progress(files=1)
        finally:
            progress.on_done()
        try:
            _verify(target, found.entry.name)
        except CheckpointError as exc:
            target.unlink(missing_ok=True)
            on_skip(f"skipping {found.entry.path}: {exc}")
            continue
        log.info("pulled %s to %s", found.entry.path, target)
        return found
    raise NotFound(f"no usable checkpoint in {_describe(remote, path, family)}: every complete "
                   "one failed its checks (see the warnings)")
