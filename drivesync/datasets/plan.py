"""Where each item goes: the pure shard planner (no I/O), deterministic and stable.

Layout: ``NAME/000/``, ``001/``, ... with each image beside its label and at
most ``max_files`` files per folder. What the manifest already places stays
there; new items fill shards with room, then new shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple

from ..config import DEFAULT_MAX_FILES
from ..errors import UsageError


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
        max_files: Optional[int] = DEFAULT_MAX_FILES,
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
    max_files: Optional[int] = DEFAULT_MAX_FILES,
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

