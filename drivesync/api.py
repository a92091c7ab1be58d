"""The verbs as Python functions: ``drivesync.push(...)`` does what ``drivesync push`` does.

Every function takes remote addresses as text (``"drive:space_Colab/data"``,
a local path) or an open Remote, keyword arguments named like the CLI's
flags, and ``settings=None``: then the settings come from the environment and
the config file exactly as the CLI resolves them (``resolve_settings``). They
return result objects (``to_dict()`` where the CLI has ``--json``), raise
``DriveSyncError`` subclasses (each has ``exit_code``) and print nothing.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from .checkpoints.families import Checkpoint
from .checkpoints.latest import default_min_age, find_latest, pull_latest
from .checkpoints.policy import PrunePolicy, parse_size
from .checkpoints.prune import PruneResult
from .checkpoints.prune import prune as _prune
from .config import Settings, resolve_settings
from .datasets import prepare as _datasets
from .datasets.check import CheckResult, check_dataset
from .datasets.configs import ConfigOptions, ConfigResult
from .datasets.options import FOR_CONVERT, FOR_SHARD, prepare_options
from .errors import NotFound, UsageError
from .hashing import HashCache, cache_path
from .progress import NULL_PROGRESS, Progress
from .remotes import Remote, open_remote, parse_address
from .sync import DedupeResult, SyncOptions, SyncResult
from .sync import dedupe as _dedupe
from .sync import pull as _pull
from .sync import push as _push
from .types import Entry, Quota

RemoteLike = Union[str, Remote]
Size = Union[int, str, None]

__all__ = ["push", "pull", "dedupe", "prune", "latest", "ls", "quota", "mkdir",
           "prepare", "convert", "shard", "configs", "check"]
PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def _opened(remote: RemoteLike, settings: Settings) -> Iterator[Remote]:
    """An address is opened (and closed) here; a Remote given is the caller's."""
    if isinstance(remote, Remote):
        yield remote
        return
    with open_remote(remote, settings=settings) as opened:
        yield opened


def local_folder(path: Union[str, Path], *, must_exist: bool, role: str = "LOCAL") -> str:
    """The local side of push/pull: a local path (``local:`` allowed), never ``drive:``
    or a typo; a missing folder is NotFound, a file in its place a usage error."""
    parsed = parse_address(os.fspath(path))
    if not parsed.is_local:
        raise UsageError(f"{role} must be a local folder, not {path}")
    local = os.path.expanduser(parsed.path)
    if must_exist and not os.path.isdir(local):
        if os.path.lexists(local):
            raise UsageError(f"{local} is a file, not a folder ({role} must be a folder)")
        raise NotFound(f"{local}: no such folder")
    return local


def push(local: Union[str, Path], remote: RemoteLike, *, pack: bool = False,
         delete: bool = False, excludes: Sequence[str] = (), dry_run: bool = False,
         jobs: Optional[int] = None, write_rate: Optional[float] = None,
         allow_big_folders: bool = False, settings: Optional[Settings] = None,
         progress: Progress = NULL_PROGRESS) -> SyncResult:
    """Upload what differs from folder ``local`` to ``remote`` (``drivesync push``).

    ``write_rate`` goes into the settings the remote is opened with; a Remote
    given already open is paced with it from now on.
    """
    s = resolve_settings(settings, jobs=jobs, write_rate=write_rate)
    src = local_folder(local, must_exist=True)
    options = SyncOptions(jobs=s.jobs, pack=pack, delete=delete, excludes=tuple(excludes),
                          dry_run=dry_run, max_files_per_folder=s.max_files_per_folder,
                          allow_big_folders=allow_big_folders, state_dir=s.resolved_state_dir())
    with _opened(remote, s) as r:
        if write_rate is not None and isinstance(remote, Remote) and r.features.paced_writes:
            r.set_write_rate(write_rate)
        with contextlib.closing(HashCache(cache_path(s.resolved_state_dir()))) as cache:
            return _push(src, remote=r, options=options, progress=progress, hash_cache=cache)


def pull(remote: RemoteLike, local: Union[str, Path], *, dry_run: bool = False,
         unpack: bool = True, jobs: Optional[int] = None, settings: Optional[Settings] = None,
         progress: Progress = NULL_PROGRESS) -> SyncResult:
    """Download what differs from ``remote`` into folder ``local`` (``drivesync pull``)."""
    s = resolve_settings(settings, jobs=jobs)
    dest = local_folder(local, must_exist=False)
    existed = os.path.lexists(dest)
    options = SyncOptions(jobs=s.jobs, dry_run=dry_run, unpack=unpack,
                          state_dir=s.resolved_state_dir())
    with _opened(remote, s) as r:
        cache = HashCache(cache_path(s.resolved_state_dir()))
        try:
            return _pull(r, dest, options=options, progress=progress, hash_cache=cache)
        except NotFound:
            if not existed:  # no empty folder left for a remote that is not there
                with contextlib.suppress(OSError):
                    os.rmdir(dest)
            raise
        finally:
            cache.close()


def dedupe(remote: RemoteLike, *, rename: bool = False, dry_run: bool = False,
           settings: Optional[Settings] = None) -> DedupeResult:
    """Trash identical duplicates, merge same-named folders (``drivesync dedupe``)."""
    s = resolve_settings(settings)
    with _opened(remote, s) as r:
        return _dedupe(r, rename=rename, dry_run=dry_run)


def _size(value: Size, what: str) -> Optional[int]:
    return parse_size(value, what=what) if isinstance(value, str) else value


def prune(remote: RemoteLike, *, keep_last: int = 3, keep_every: Optional[int] = None,
          max_bytes: Size = None, min_free: Size = None, min_age: Optional[float] = None,
          permanent: bool = False, empty_trash: bool = False, recursive: bool = False,
          dry_run: bool = False, settings: Optional[Settings] = None) -> PruneResult:
    """Delete old checkpoints (``drivesync prune ... --yes``; ``dry_run=True`` only plans).

    ``min_age`` defaults as in the CLI: 60 s on a local folder, 0 on ``drive:``.
    """
    s = resolve_settings(settings)
    with _opened(remote, s) as r:
        policy = PrunePolicy(keep_last=keep_last, keep_every=keep_every,
                             max_bytes=_size(max_bytes, "max_bytes"),
                             min_free=_size(min_free, "min_free"),
                             min_age=default_min_age(r) if min_age is None else min_age)
        return _prune(r, "", policy=policy, permanent=permanent, empty_trash=empty_trash,
                      dry_run=dry_run, lock_dir=s.resolved_state_dir(), recursive=recursive)


def latest(remote: RemoteLike, *, family: Optional[str] = None,
           min_age: Optional[float] = None, recursive: bool = False,
           pull_to: Union[str, Path, None] = None, settings: Optional[Settings] = None,
           progress: Progress = NULL_PROGRESS) -> Checkpoint:
    """The newest complete checkpoint (``drivesync latest``); NotFound if none.

    With ``pull_to`` it is downloaded there (a file, or a folder), md5-verified.
    """
    s = resolve_settings(settings)
    with _opened(remote, s) as r:
        age = default_min_age(r) if min_age is None else min_age
        if pull_to is None:
            return find_latest(r, "", family=family, min_age=age, now=time.time(),
                               recursive=recursive)
        return pull_latest(r, "", dest=pull_to, family=family, min_age=age, now=time.time(),
                           recursive=recursive, progress=progress)


def ls(remote: RemoteLike, *, recursive: bool = False,
       settings: Optional[Settings] = None) -> list[Entry]:
    """The entries of a remote folder (``drivesync ls``; ``recursive``: ``-R``)."""
    s = resolve_settings(settings)
    with _opened(remote, s) as r:
        return list(r.walk("")) if recursive else r.list("")


def quota(remote: RemoteLike = "drive:", *, settings: Optional[Settings] = None) -> Quota:
    """Storage limit, usage and trash (``drivesync quota``)."""
    s = resolve_settings(settings)
    with _opened(remote, s) as r:
        r.stat("")   # NotFound for a folder that is not there, as the CLI says (exit 3)
        return r.quota()


def mkdir(remote: RemoteLike, *, settings: Optional[Settings] = None) -> Entry:
    """Create a remote folder and its parents (``drivesync mkdir``)."""
    s = resolve_settings(settings)
    with _opened(remote, s) as r:
        return r.mkdir("")


# ---- datasets: local only, no settings; keywords go into the steps' option objects ----

def prepare(src: PathLike, out: PathLike, *, fmt: str, dry_run: bool = False,
            check: bool = True, progress: Progress = NULL_PROGRESS,
            **options: Any) -> _datasets.PrepareResult:
    """Convert, shard, write configs and check (``drivesync prepare``).

    ``options`` are named like the CLI's flags: ``classes`` (``"a,b"`` or a list),
    ``classes_file``; ``keep_difficult``, ``keep_crowd``, ``box``, ``head_class``,
    ``images`` (:class:`~drivesync.datasets.items.ConvertOptions`); ``max_files``,
    ``name``, ``mode``, ``ascii_names`` (:class:`~drivesync.datasets.options.ShardOptions`);
    ``root``, ``val_fraction``, ``seed``, ``backup``, ``darknet_cfg``, ``batch``,
    ``subdivisions``, ``width``, ``height``, ``max_batches``, ``burn_in``
    (:class:`~drivesync.datasets.configs.ConfigOptions`).
    """
    opts = prepare_options(fmt, dry_run=dry_run, check=check, **options)
    return _datasets.prepare(src, out, opts, progress=progress)


def convert(src: PathLike, out: PathLike, *, fmt: str, classes: Any = None,
            classes_file: Optional[str] = None, dry_run: bool = False,
            progress: Progress = NULL_PROGRESS, **options: Any) -> _datasets.PrepareResult:
    """A flat YOLO folder from any format (``drivesync convert``); ``options`` as for
    :func:`prepare`'s classes, conversion, ``mode`` and ``ascii_names``."""
    opts = prepare_options(fmt, classes=classes, classes_file=classes_file, dry_run=dry_run,
                           only=FOR_CONVERT, **options)
    return _datasets.convert_dataset(src, out, opts, progress=progress)


def shard(src: PathLike, out: PathLike, *, classes: Any = None,
          classes_file: Optional[str] = None, dry_run: bool = False,
          progress: Progress = NULL_PROGRESS, **options: Any) -> _datasets.PrepareResult:
    """Validate a YOLO folder and split it into shard folders (``drivesync shard``);
    ``options``: ``classes``, ``classes_file``, ``max_files``, ``name``, ``mode``,
    ``ascii_names``."""
    opts = prepare_options("yolo", classes=classes, classes_file=classes_file, dry_run=dry_run,
                           only=FOR_SHARD, **options)
    return _datasets.shard_dataset(src, out, opts, progress=progress)


def configs(out: PathLike, *, name: Optional[str] = None,
            classes: Optional[Sequence[str]] = None, dry_run: bool = False,
            **options: Any) -> ConfigResult:
    """Write obj.names, obj.data, the lists, data.yaml (and a darknet cfg) for what the
    manifest records (``drivesync configs``); ``options`` are :class:`ConfigOptions` fields."""
    return _datasets.make_configs(out, ConfigOptions(**options), name=name, classes=classes,
                                  dry_run=dry_run)


def check(out: PathLike, *, name: Optional[str] = None, max_files: Optional[int] = None,
          nc: Optional[int] = None, verify: bool = False,
          progress: Progress = NULL_PROGRESS) -> CheckResult:
    """Is a sharded dataset ready to train on (``drivesync check``)?"""
    return check_dataset(os.fspath(out), name=name, max_files=max_files, nc=nc, verify=verify,
                         progress=progress)
