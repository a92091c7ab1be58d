"""The knobs of one push or pull, in one object (as s3transfer's TransferConfig).

``push``/``pull`` take ``options=SyncOptions(...)``; the same names may be given
as keywords for one call (``push(src, remote=r, pack=True)``), checked against
these fields. How fast new files may be created is the remote's business: it is
opened with ``Settings.write_rate``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..config import DEFAULT_MAX_FILES, Settings
from ..hashing import default_cache_path


@dataclass(frozen=True)
class SyncOptions:
    jobs: int = Settings.jobs           # parallel transfers
    dry_run: bool = False               # plan and report; the engine runs nothing
    delete: bool = False                # push: trash remote files absent locally
    pack: bool = False                  # push: one tar + manifest per shard folder
    excludes: Sequence[str] = ()        # push: glob patterns (relative path or name)
    unpack: bool = True                 # pull: packed shards become folders again
    max_files_per_folder: int = DEFAULT_MAX_FILES
    allow_big_folders: bool = False     # push: no max_files_per_folder check
    state_dir: Optional[Union[str, Path]] = None   # md5 cache and pack state; None: default

    @classmethod
    def of(cls, options: Optional[SyncOptions] = None, **overrides: Any) -> SyncOptions:
        """``options`` (or the defaults) with ``overrides``; a TypeError names a wrong one."""
        known = {f.name for f in fields(cls)}
        wrong = sorted(set(overrides) - known)
        if wrong:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(wrong)} "
                            f"(SyncOptions has {', '.join(sorted(known))})")
        return replace(options or cls(), **overrides)

    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else default_cache_path().parent
