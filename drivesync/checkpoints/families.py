"""Recognise checkpoint files by name and group them into families.

A *family* is the set of checkpoints one training run writes into one folder.
Only names matched here are ever considered by prune/latest; everything else in
a folder (datasets, configs, pretrained ``yolov3.weights``, notes) is ignored.

Recognised names (extensions are case-insensitive):

* darknet: ``NAME.backup`` (role ``last``), ``NAME_last.weights``,
  ``NAME_best.weights``, ``NAME_final.weights``, ``NAME_ema.weights`` and
  ``NAME_<iter>.weights`` (``numbered``); the family is ``NAME``.
* Ultralytics / Lightning: bare ``last.pt``, ``best.pt``, ``epoch<N>.pt``
  (also ``last.ckpt``, ``epoch=<E>-step=<S>.ckpt``, numbered by the step);
  the family is the name of the folder that holds them (``"weights"`` for
  ``runs/train/exp/weights/last.pt``, ``""`` at the remote's root).
* generic: ``STEM<sep><N>.EXT`` with EXT one of ``.pt .pth .ckpt .h5 .keras
  .safetensors .weights`` and sep one of ``_ - .`` (``model_1200.pt``,
  ``ckpt-300.ckpt``); the family is ``STEM``. ``STEM_last/_best/_final/_ema.EXT``
  get those roles. A number glued to the stem without a separator is *not* a
  checkpoint number, so pretrained ``yolov3.weights`` or ``yolov5s.pt`` are
  never mistaken for iteration 3 of family ``yolov``.
"""

from __future__ import annotations

import logging
import posixpath
import re
from dataclasses import dataclass
from typing import Iterable, Optional

from ..types import Entry, is_internal

log = logging.getLogger(__name__)

LAST, BEST, FINAL, EMA, NUMBERED = "last", "best", "final", "ema", "numbered"
ROLES = (LAST, BEST, FINAL, EMA, NUMBERED)
NAMED_ROLES = (LAST, BEST, FINAL, EMA)

CHECKPOINT_EXTS = (".pt", ".pth", ".ckpt", ".h5", ".keras", ".safetensors", ".weights")
#: formats whose files of one model all have exactly the same size (darknet's
#: flat float arrays), so any smaller sibling is a truncated write
FIXED_SIZE_EXTS = (".weights", ".backup")

_ROLE_SUFFIX = re.compile(r"^(?P<stem>.+?)[_\-.](?P<role>last|best|final|ema)$", re.IGNORECASE)
_NUMBERED = re.compile(r"^(?P<stem>.*?)(?P<sep>[_\-.])(?P<num>\d+)$")
_BARE_EPOCH = re.compile(r"^epoch[_\-]?(?P<num>\d+)$", re.IGNORECASE)
_LIGHTNING = re.compile(r"^epoch=(?P<epoch>\d+)-step=(?P<num>\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Checkpoint:
    """One recognised checkpoint file. ``number`` is set for ``numbered`` only."""

    entry: Entry
    family: str
    role: str  # "last" | "best" | "final" | "numbered" | "ema"
    number: Optional[int] = None

    @property
    def key(self) -> tuple[str, str]:
        """Families are per folder: (parent folder, family name)."""
        return (self.entry.parent, self.family)

    @property
    def ext(self) -> str:
        return posixpath.splitext(self.entry.name)[1].lower()


def _folder_family(entry: Entry) -> str:
    return posixpath.basename(entry.parent)


def parse_checkpoint(entry: Entry) -> Optional[Checkpoint]:
    """The checkpoint ``entry`` is, or None for anything else (folders included)."""
    if entry.is_dir:
        return None
    name = entry.name
    if not name or is_internal(name):
        return None
    stem, ext = posixpath.splitext(name)
    ext = ext.lower()
    if ext == ".backup":
        return Checkpoint(entry, stem, LAST) if stem else None
    if ext not in CHECKPOINT_EXTS or not stem:
        return None
    lowered = stem.lower()
    if lowered in NAMED_ROLES:
        return Checkpoint(entry, _folder_family(entry), lowered)
    m = _BARE_EPOCH.match(stem) or _LIGHTNING.match(stem)
    if m:
        return Checkpoint(entry, _folder_family(entry), NUMBERED, int(m.group("num")))
    m = _ROLE_SUFFIX.match(stem)
    if m:
        return Checkpoint(entry, m.group("stem"), m.group("role").lower())
    m = _NUMBERED.match(stem)
    if m and m.group("stem"):
        return Checkpoint(entry, m.group("stem"), NUMBERED, int(m.group("num")))
    return None


def classify(entries: Iterable[Entry]) -> list[Checkpoint]:
    """The checkpoints among ``entries``, in input order; other items are dropped."""
    out = []
    for e in entries:
        c = parse_checkpoint(e)
        if c is not None:
            out.append(c)
    return out


def group_families(checkpoints: Iterable[Checkpoint]) -> dict[tuple[str, str], list[Checkpoint]]:
    """Checkpoints by family key (parent folder, family name)."""
    groups: dict[tuple[str, str], list[Checkpoint]] = {}
    for c in checkpoints:
        groups.setdefault(c.key, []).append(c)
    return groups
