"""`drivesync push`, `pull` and `dedupe`: thin shells over drivesync.sync."""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Iterator, Union

from ..api import local_folder
from ..config import DEFAULT_MAX_FILES, Settings
from ..errors import DriveSyncError, NotFound, Stopped, UsageError
from ..hashing import HashCache, cache_path
from ..progress import human_bytes
from ..remotes import Remote, open_remote
from ..sync import DedupeResult, SyncOptions, SyncResult, dedupe, pull, push
from ..sync.plan import MKDIR
from . import add_verb
from .context import stdin_is_terminal
from .remote import file_in_the_way, where

SHOW = 20  # actions listed by --dry-run without -v


def register(sub, common) -> None:
    _register_push(sub, common)
    _register_pull(sub, common)
    _register_dedupe(sub, common)


def _register_push(sub, common) -> None:
    p = add_verb(
        sub, common, "push",
        help="upload a local folder to Drive (incremental, resumable, paced)",
        description="Plan, then upload what differs: files with the same size and md5 on the "
                    "remote are skipped (md5s are cached, so an unchanged re-push reads no "
                    "file); changed files are uploaded as new files and the old copy removed "
                    "afterwards. Interrupted runs resume by re-running the same command. "
                    "--pack uploads each shard folder (a folder holding only files) as one "
                    "tar plus a manifest.",
        example="drivesync push data/crowdhuman drive:space_Colab/data/crowdhuman --dry-run\n"
                "drivesync push data/crowdhuman drive:space_Colab/data/crowdhuman --pack\n"
                "drivesync push out/ /mnt/backup/out --delete --yes --exclude '*.tmp'",
    )
    p.add_argument("local", metavar="LOCAL", help="local folder to upload")
    p.add_argument("remote", metavar="REMOTE",
                   help="target: drive:FOLDER/SUB, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, "
                        "local:PATH or a local path")
    p.add_argument("--jobs", "-j", type=_at_least_one, metavar="N",
                   help=f"parallel uploads (default {Settings.jobs}; 16 on s3:// and gs://)")
    p.add_argument("--pack", action="store_true",
                   help="one uncompressed tar + manifest per shard folder")
    p.add_argument("--delete", action="store_true",
                   help="trash remote files that are absent locally (only below REMOTE); "
                        "asks first on a terminal, needs --yes elsewhere")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="skip paths matching GLOB (relative path or name; repeatable)")
    p.add_argument("--dry-run", "-n", action="store_true", help="print the plan, change nothing")
    p.add_argument("--write-rate", type=_rate, metavar="R",
                   help=f"new files per second (default {Settings.write_rate:g}; Drive allows "
                        "about 3; 0: no limit)")
    p.add_argument("--allow-big-folders", action="store_true",
                   help=f"allow more than max_files_per_folder ({DEFAULT_MAX_FILES}) files in "
                        "one folder")
    p.add_argument("--yes", "-y", action="store_true",
                   help="--delete without asking (needed when stdin is not a terminal)")
    p.set_defaults(func=run_push)


def _register_pull(sub, common) -> None:
    q = add_verb(
        sub, common, "pull",
        help="download a Drive folder to a local folder (verified; unpacks packed shards)",
        description="Download what differs (md5-verified, partial downloads resumed, renamed "
                    "into place atomically). Names from Drive are made safe for the local "
                    "file system and can never write outside LOCAL; same-named remote files "
                    "are kept as 'name (2).ext'. A packed shard (000.tar + 000.tar.json) "
                    "is unpacked into 000/ with every member verified.",
        example="drivesync pull drive:space_Colab/data/crowdhuman /content/data/crowdhuman\n"
                "drivesync pull drive:space_Colab/data /content/data --dry-run --json",
    )
    q.add_argument("remote", metavar="REMOTE",
                   help="source: drive:FOLDER/SUB, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, "
                        "local:PATH or a local path")
    q.add_argument("local", metavar="LOCAL", help="local folder to write into")
    q.add_argument("--jobs", "-j", type=_at_least_one, metavar="N",
                   help=f"parallel downloads (default {Settings.jobs}; 16 on s3:// and gs://)")
    q.add_argument("--dry-run", "-n", action="store_true", help="print the plan, change nothing")
    q.add_argument("--no-unpack", dest="unpack", action="store_false",
                   help="keep packed shards as .tar files")
    q.set_defaults(func=run_pull)


def _register_dedupe(sub, common) -> None:
    d = add_verb(
        sub, common, "dedupe",
        help="remove duplicate files and merge duplicate folders on Drive",
        description="Per folder, recursively: files identical in name and content -> the "
                    "oldest is kept, the others trashed; same name but other content -> "
                    "reported (--rename gives them distinct names 'name (2).ext'); "
                    "same-named folders -> merged into the oldest.",
        example="drivesync dedupe drive:space_Colab/data --dry-run\n"
                "drivesync dedupe drive:space_Colab/data --rename",
    )
    d.add_argument("remote", metavar="REMOTE", help="drive:FOLDER/SUB, local:PATH or a path")
    d.add_argument("--rename", action="store_true",
                   help="give same-named files with different content distinct names")
    d.add_argument("--dry-run", "-n", action="store_true", help="print the plan, change nothing")
    d.add_argument("--yes", "-y", action="store_true",
                   help="change without asking (needed when stdin is not a terminal)")
    d.set_defaults(func=run_dedupe)


def _at_least_one(text: str) -> int:
    """--jobs: 0 silently meant the default and a negative number was accepted."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _rate(text: str) -> float:
    """--write-rate: files per second, 0 for no limit; a negative rate was accepted."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:          # NaN too
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (0: no limit), got {text!r}")
    return value


@contextlib.contextmanager
def _transfer(ctx, address: str, settings: Settings, *,
              verb: str) -> Iterator[tuple[Remote, HashCache]]:
    """The remote and md5 cache of one push/pull; a failure first reports what was done."""
    remote = open_remote(address, settings=settings)
    cache = HashCache(cache_path(settings.resolved_state_dir()))
    try:
        yield remote, cache
    except DriveSyncError as exc:
        _partial_report(ctx, exc, verb=verb)
        raise
    finally:
        cache.close()
        remote.close()


def _jobs(args, settings: Settings, remote: Remote) -> int:
    """--jobs, else a configured ``jobs``, else what suits the remote (an object store
    takes many parallel transfers; Drive and a folder the default 4)."""
    if args.jobs:
        return args.jobs
    if settings.jobs != Settings.jobs:
        return settings.jobs
    return remote.features.default_jobs or settings.jobs


def _must_ask(args, what: str) -> bool:
    """Whether to ask before changing; a UsageError when nobody can be asked."""
    if args.dry_run or args.yes:
        return False
    if not stdin_is_terminal():
        raise UsageError(f"{what}: stdin is not a terminal, so nobody can be asked; pass "
                         "--yes to go ahead (or --dry-run to see the plan first)")
    return True


def _say_start(ctx, args, line: str) -> None:
    """The verb's first line: what goes where, and whether it is a dry run."""
    ctx.say(line + (" (dry run)" if args.dry_run else ""))


def run_push(args, ctx) -> int:
    s = ctx.settings     # --write-rate and --jobs are in it (cli.context.SETTING_FLAGS)
    local = local_folder(args.local, role="LOCAL", must_exist=True)
    if args.delete:
        _must_ask(args, "push --delete trashes remote files")
    _say_start(ctx, args, f"push: {os.path.abspath(local)} -> {where(args.remote)}")
    with _transfer(ctx, args.remote, s, verb="push") as (remote, cache):
        options = SyncOptions(jobs=_jobs(args, s, remote), pack=args.pack, delete=args.delete,
                              excludes=tuple(args.exclude), dry_run=args.dry_run,
                              max_files_per_folder=s.max_files_per_folder,
                              allow_big_folders=args.allow_big_folders,
                              state_dir=s.resolved_state_dir())
        result = push(local, remote=remote, options=options,
                      progress=ctx.progress(yes=args.yes), hash_cache=cache)
    if not result.confirmed:
        ctx.say("not confirmed: nothing changed")
        return 0
    if result.dry_run and any(a.kind == MKDIR and not a.path for a in result.actions):
        in_the_way = file_in_the_way(args.remote, s)  # the real run would fail: say so now
        if in_the_way:
            raise UsageError(in_the_way)
    return _finish(ctx, result, verb="push")


def run_pull(args, ctx) -> int:
    s = ctx.settings
    local = local_folder(args.local, role="LOCAL", must_exist=False)
    existed = os.path.lexists(local)
    _say_start(ctx, args, f"pull: {where(args.remote)} -> {os.path.abspath(local)}")
    try:
        with _transfer(ctx, args.remote, s, verb="pull") as (remote, cache):
            progress = ctx.progress()
            remote.set_status_listener(progress.on_status)
            options = SyncOptions(jobs=_jobs(args, s, remote), dry_run=args.dry_run,
                                  unpack=args.unpack, state_dir=s.resolved_state_dir())
            result = pull(remote, local, options=options, progress=progress, hash_cache=cache)
    except NotFound:
        if not existed:  # the folder pull made for a remote that is not there
            with contextlib.suppress(OSError):
                os.rmdir(local)
        in_the_way = file_in_the_way(args.remote, s)   # exit 2, as push says it
        if in_the_way:
            raise UsageError(in_the_way) from None
        raise
    return _finish(ctx, result, verb="pull")


def run_dedupe(args, ctx) -> int:
    ask = _must_ask(args, "dedupe trashes, renames and moves remote items")
    _say_start(ctx, args, f"dedupe: {where(args.remote)}")
    remote = open_remote(args.remote, settings=ctx.settings)
    try:
        channel = ctx.progress(yes=args.yes)
        remote.set_status_listener(channel.on_status)
        if ask:  # show the whole plan first; what runs is planned again from a fresh listing
            preview = dedupe(remote, rename=args.rename, dry_run=True)
            if preview.actions:
                _print_plan(ctx, preview)
                if not channel.confirm(f"carry out these {len(preview.actions)} change(s)?"):
                    ctx.say("not confirmed: nothing changed")
                    return 0
        result = dedupe(remote, rename=args.rename, dry_run=args.dry_run)
    finally:
        remote.close()
    return _finish(ctx, result, verb="dedupe")


def _partial_report(ctx, exc: DriveSyncError, *, verb: str) -> None:
    """A stopped run (quota) still says what it did before the error line."""
    if isinstance(exc, Stopped) and exc.outcome is not None and not ctx.json:
        _print_summary(ctx, exc.outcome, verb=verb)


def _finish(ctx, result: Union[SyncResult, DedupeResult], *, verb: str) -> int:
    if ctx.json:
        ctx.emit(result.to_dict())
    elif result.dry_run:
        _print_plan(ctx, result)
    _print_summary(ctx, result, verb=verb)  # silent under --json, but --log-file gets it
    return ctx.finish(result, message=f"{verb}: {len(result.problems)} item(s) failed or were "
                      "skipped (listed above); a re-run retries those that failed on the way, "
                      "those whose reason says what to change need that first")


def _print_plan(ctx, result: Union[SyncResult, DedupeResult]) -> None:
    counts = ", ".join(human_bytes(v) if k == "bytes" else f"{v} {k.replace('_', ' ')}"
                       for k, v in result.plan.items() if v)
    ctx.say(f"plan (dry run, nothing changed): {counts or 'nothing to do'}")
    shown = result.actions if ctx.verbose else result.actions[:SHOW]
    for a in shown:
        extra = f"  ({a.reason})" if a.reason else ""
        size = f"  {human_bytes(a.size)}" if a.size else ""
        ctx.say(f"  {a.kind:8} {a.path or '.'}{size}{extra}")
    if len(shown) < len(result.actions):
        ctx.say(f"  ... and {len(result.actions) - len(shown)} more (-v or --json for all)")


def _print_summary(ctx, result: Union[SyncResult, DedupeResult], *, verb: str) -> None:
    said = result.warnings + (result.conflicts if isinstance(result, DedupeResult) else [])
    for path, reason in said:
        ctx.warn(f"{path}: {reason}")
    if result.dry_run:      # the plan was shown instead
        return
    if isinstance(result, DedupeResult):
        _summary_line(ctx, f"dedupe: {result.folders} folders, {result.deleted} duplicates "
                           f"trashed, {result.renamed} renamed, {result.merged} folders "
                           f"merged, {len(result.conflicts)} name conflicts, "
                           f"{result.failed} failed, {result.requests} requests, "
                           f"{result.seconds:.1f}s")
        return
    moved = (f"{result.uploaded} uploaded, {result.packed} shards packed, {result.skipped} "
             f"skipped, {result.deleted} deleted, {result.duplicates_removed} duplicates removed"
             if verb == "push" else
             f"{result.downloaded} downloaded, {result.unpacked} shards unpacked, "
             f"{result.skipped} skipped")
    _summary_line(ctx, f"{verb}: {moved}, {result.failed} failed, "
                       f"{human_bytes(result.bytes)}, {result.requests} requests, "
                       f"{result.retries} retries, {result.seconds:.1f}s")


def _summary_line(ctx, line: str) -> None:
    """The counts go to the terminal (unless -q) and always to --log-file."""
    ctx.say(line)
    ctx.record(line)
