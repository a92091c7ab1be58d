"""`drivesync prune` and `drivesync latest`: thin shells over drivesync.checkpoints."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..checkpoints.latest import (
    default_min_age,
    find_latest,
    local_target,
    pull_latest,
    young_reason,
)
from ..checkpoints.policy import Decision, PrunePlan, PrunePolicy, parse_size
from ..checkpoints.prune import ROWS_HEADER, PruneResult, plan_rows, prune
from ..config import Settings
from ..errors import NotFound, UsageError
from ..progress import human_bytes
from ..remotes import open_remote, parse_address
from ..remotes.base import Remote
from . import add_verb
from .context import stdin_is_terminal
from .remote import where

MIN_AGE_HELP = ("seconds a checkpoint must be unmodified before it counts as settled "
                "(default 60 for a local folder such as the Colab mount, where a file shows "
                "while it is written; 0 for drive:, where a file appears only once uploaded)")


def register(sub, common) -> None:
    _register_prune(sub, common)
    _register_latest(sub, common)


def _register_prune(sub, common) -> None:
    p = add_verb(
        sub, common, "prune",
        help="delete old checkpoints in a folder, keeping the newest and a storage budget",
        description="Keep the newest last/.backup, best and final of each checkpoint family, "
                    "its newest complete checkpoint, the newest N numbered and every K-th; "
                    "drop identical copies; then delete the oldest of the rest (all of them, or "
                    "only until --max-bytes / --min-free is met). Files that are not "
                    "checkpoints are never touched. Without --yes, a run whose stdin is not a "
                    "terminal (cron) only reports what it would delete.",
        example="drivesync prune drive:space_Colab/backup --keep-last 3 --keep-every 10000 "
                "--dry-run\n"
                "drivesync prune /content/drive/MyDrive/runs/detect --recursive --keep-last 2 "
                "--yes\n"
                "drivesync prune drive:space_Colab/backup --max-bytes 5G --permanent --yes -q\n"
                "drivesync prune drive:space_Colab/backup --min-free 2GiB --empty-trash --yes",
    )
    p.add_argument("remote", metavar="REMOTE",
                   help="checkpoint folder: drive:FOLDER/SUB, local:PATH or a local path")
    p.add_argument("--keep-last", type=int, default=3, metavar="N",
                   help="numbered checkpoints to keep per family, newest first (default 3)")
    p.add_argument("--keep-every", type=int, metavar="K",
                   help="also keep every checkpoint whose iteration/epoch is a multiple of K")
    p.add_argument("--max-bytes", metavar="SIZE",
                   help="delete oldest only until the folder's checkpoints fit SIZE "
                        "(15G, 500MiB, 1.5GB, bytes)")
    p.add_argument("--min-free", metavar="SIZE",
                   help="delete oldest only until the account has SIZE free "
                        "(needs --permanent or --empty-trash to free anything)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--trash", dest="permanent", action="store_false",
                      help="move deleted files to the trash (default; they still use quota)")
    mode.add_argument("--permanent", dest="permanent", action="store_true",
                      help="delete for good instead of trashing")
    p.set_defaults(permanent=False)
    p.add_argument("--empty-trash", action="store_true",
                   help="empty the remote's WHOLE trash afterwards (frees its quota)")
    p.add_argument("--min-age", type=float, metavar="SECONDS",
                   help="never delete a checkpoint younger than this; " + MIN_AGE_HELP)
    p.add_argument("--recursive", "-r", "-R", action="store_true",
                   help="prune every folder below REMOTE that holds checkpoints, each as its "
                        "own set of families (e.g. runs/detect/*/weights); --max-bytes is per "
                        "folder")
    p.add_argument("--dry-run", "-n", action="store_true", help="show the plan, change nothing")
    p.add_argument("--yes", "-y", action="store_true",
                   help="delete without asking (needed when stdin is not a terminal)")
    p.set_defaults(func=run_prune)


def _register_latest(sub, common) -> None:
    q = add_verb(
        sub, common, "latest",
        help="print (or download) the newest complete checkpoint in a folder",
        example="drivesync latest drive:space_Colab/backup\n"
                "drivesync latest drive:space_Colab/backup --family yolov3 --pull /content/w/\n"
                "drivesync latest /content/drive/MyDrive/runs/exp/weights --json\n"
                "drivesync latest drive:space_Colab/runs --recursive --pull /content/w/",
        description="The newest complete checkpoint (final wins; numbered by number; between "
                    "roles by modified time). Zero-size, truncated and in-flight files are "
                    "skipped, and a settled file (see --min-age) is preferred over one that "
                    "may still be being written. Exit code 3 when there is none, so a "
                    "launcher can fall back to pretrained weights.",
    )
    q.add_argument("remote", metavar="REMOTE",
                   help="checkpoint folder: drive:FOLDER/SUB, local:PATH or a local path")
    q.add_argument("--family", metavar="NAME", help="only this family (darknet NAME, model "
                                                     "stem, or the folder name for last.pt)")
    q.add_argument("--min-age", type=float, metavar="SECONDS",
                   help="prefer checkpoints unmodified for this long; " + MIN_AGE_HELP)
    q.add_argument("--recursive", "-r", "-R", action="store_true",
                   help="look in every folder below REMOTE too (e.g. runs/detect/*/weights); "
                        "the checkpoint written last wins")
    q.add_argument("--pull", metavar="DEST",
                   help="download it to DEST (a file, or a folder ending in / or existing), "
                        "md5-verified and renamed into place atomically")
    q.set_defaults(func=run_latest)


# ---- prune ---------------------------------------------------------------------
def _policy(args, remote: Remote) -> PrunePolicy:
    if args.keep_last < 0:
        raise UsageError(f"--keep-last must be 0 or more, got {args.keep_last}")
    if args.keep_every is not None and args.keep_every < 1:
        raise UsageError(f"--keep-every must be 1 or more, got {args.keep_every}")
    return PrunePolicy(
        keep_last=args.keep_last, keep_every=args.keep_every,
        max_bytes=parse_size(args.max_bytes, what="--max-bytes") if args.max_bytes else None,
        min_free=parse_size(args.min_free, what="--min-free") if args.min_free else None,
        min_age=_min_age(args, remote),
    )


def _min_age(args, remote: Remote) -> float:
    if args.min_age is None:
        return default_min_age(remote)
    if not args.min_age >= 0:
        raise UsageError(f"--min-age must be >= 0 seconds, got {args.min_age}")
    return args.min_age


def _explain_missing(address: str, settings: Settings, exc: NotFound) -> NotFound:
    """A clearer error when REMOTE names a file rather than a folder; else ``exc``.

    Only runs after a NotFound, so it costs a request on the error path only.
    """
    parsed = parse_address(address)
    head, sep, name = parsed.path.rstrip("/").rpartition("/")
    if not name or (not parsed.is_local and not sep):
        return exc
    parent = (f"{parsed.scheme}:{head}" if not parsed.is_local else (head or sep or "."))
    try:
        with open_remote(parent if not parsed.is_local else "local:" + parent,
                         settings=settings) as up:
            entry = up.stat(name)
    except Exception:  # noqa: BLE001 - only a hint; the original error stands
        return exc
    if entry.is_dir:
        return exc
    raise UsageError(f"{address} is a file, not a folder: give the folder that holds the "
                     f"checkpoints ({parent})") from exc


def _doc(d: Decision) -> dict[str, Any]:
    return {"path": d.entry.path, "size": d.entry.size, "md5": d.entry.md5,
            "modified": d.entry.modified, "reason": d.reason}


def run_prune(args, ctx) -> int:
    interactive = stdin_is_terminal()
    report_only = not args.dry_run and not args.yes and not interactive
    dry = args.dry_run or report_only
    if args.recursive and args.min_free:
        raise UsageError("--min-free cannot be combined with --recursive: prune each run's "
                         "folder with --min-free, or use --max-bytes (per folder)")
    ctx.say(f"prune: {where(args.remote)}" + (" (dry run)" if dry else ""))
    channel = ctx.progress(yes=args.yes, show=sys.maxsize)   # the prompt shows the whole plan
    with open_remote(args.remote, settings=ctx.settings) as remote:
        remote.set_status_listener(channel.on_status)
        policy = _policy(args, remote)
        try:
            result = prune(remote, "", policy=policy, permanent=args.permanent,
                           empty_trash=args.empty_trash, dry_run=dry,
                           lock_dir=ctx.settings.resolved_state_dir(),
                           recursive=args.recursive, progress=channel)
        except NotFound as exc:
            raise _explain_missing(args.remote, ctx.settings, exc) from None
        address = remote.address
    executed = not dry and result.confirmed
    why_not = ("--dry-run" if args.dry_run else
               "no --yes and stdin is not a terminal" if report_only else
               "not confirmed" if not result.confirmed else None)
    if ctx.json:
        ctx.emit(_prune_doc(address, policy, args, result, executed, why_not))
    elif not result.plan.keep and not result.plan.delete:
        _say_no_checkpoints(ctx, address, result.plan, recursive=args.recursive)
    else:
        shown = interactive and not args.yes and not dry   # the prompt showed it
        _say_prune(ctx, args, result, executed=executed, shown=shown,
                   report_only=report_only, why_not=why_not)
    return ctx.finish(result, message=_failure_message(ctx, result), show=False)


def _say_prune(ctx, args, result: PruneResult, *, executed: bool, shown: bool,
               report_only: bool, why_not: Optional[str]) -> None:
    """The plan as a table (unless the prompt showed it), its notes, and what was done."""
    plan = result.plan
    if not shown:
        ctx.table(plan_rows(plan, done=executed), header=ROWS_HEADER)
    for note in plan.notes:
        ctx.warn(note)
    if executed:
        ctx.say(f"freed {human_bytes(result.bytes_freed)} ({len(result.deleted)} files "
                f"{'deleted' if args.permanent else 'moved to the trash'}"
                f"{', trash emptied' if result.trash_emptied else ''}); "
                f"{len(plan.keep)} checkpoints kept, {len(plan.ignored)} other items "
                f"untouched; {result.requests} requests")
    elif report_only and ctx.quiet and plan.delete:
        # cron with -q but without --yes would otherwise do nothing, silently, forever
        ctx.warn(f"nothing deleted: no --yes and stdin is not a terminal; would free "
                 f"{human_bytes(plan.bytes_freed)} ({len(plan.delete)} files)")
    else:
        ctx.say(f"nothing deleted ({why_not}): would free {human_bytes(plan.bytes_freed)} "
                f"({len(plan.delete)} files)"
                + ("" if args.dry_run else "; re-run with --yes to delete"))


def _failure_message(ctx, result: PruneResult) -> str:
    """Says each folder not pruned (never silent) and each failed delete; the error line."""
    for path, msg in result.unreadable:
        ctx.warn(f"{path or '.'}: not pruned, it could not be listed: {msg}")
    if not ctx.quiet:
        for path, msg in result.failed:
            ctx.warn(f"could not delete {path}: {msg}")
    if result.failed:
        first, msg = result.failed[0]
        return (f"{len(result.failed)} of {len(result.plan.delete)} deletes failed "
                f"(first: {first}: {msg}); re-run prune to retry them")
    return (f"{len(result.unreadable)} folder(s) could not be listed and were left as they "
            "are (listed above); re-run prune")


def _subfolder_hint(address: str, plan: PrunePlan, *, recursive: bool) -> Optional[str]:
    """What to say when a folder has no checkpoints of its own but has subfolders."""
    subfolders = sorted(e.name for e in plan.ignored if e.is_dir)
    if plan.keep or plan.delete or not subfolders or recursive:
        return None
    shown = ", ".join(subfolders[:3]) + (", ..." if len(subfolders) > 3 else "")
    return (f"no checkpoints directly in {address}; it has subfolders ({shown}): "
            "use --recursive, or give the folder that holds them (e.g. .../weights)")


def _say_no_checkpoints(ctx, address: str, plan: PrunePlan, *, recursive: bool) -> None:
    """An empty folder is fine (training has not written yet); one that holds only
    subfolders is probably the wrong folder, so that gets a warning even under -q."""
    hint = _subfolder_hint(address, plan, recursive=recursive)
    if hint:
        ctx.warn(hint)
        return
    what = "below" if recursive else "in"
    others = f" ({len(plan.ignored)} other items, never touched)" if plan.ignored else ""
    ctx.say(f"no checkpoints {what} {address}{others}; nothing to prune")


def _prune_doc(address: str, policy: PrunePolicy, args, result: PruneResult, executed: bool,
               why_not: Optional[str]) -> dict[str, Any]:
    plan = result.plan
    quota = result.quota
    return {
        "ok": result.ok,
        "remote": address,
        "unreadable": {p.path: p.reason for p in result.unreadable},
        "executed": executed,
        "not_executed_because": why_not,
        "permanent": bool(args.permanent),
        "recursive": bool(args.recursive),
        "policy": {"keep_last": policy.keep_last, "keep_every": policy.keep_every,
                   "max_bytes": policy.max_bytes, "min_free": policy.min_free,
                   "min_age": policy.min_age},
        "kept": [_doc(d) for d in plan.keep],
        "deleted": [_doc(d) for d in plan.delete] if executed else [],
        "would_delete": [] if executed else [_doc(d) for d in plan.delete],
        "failed": {p.path: p.reason for p in result.failed},
        "ignored": [e.path for e in plan.ignored],
        "bytes_freed": result.bytes_freed,
        "planned_bytes_freed": plan.bytes_freed,
        "checkpoint_bytes": plan.checkpoint_bytes,
        "checkpoint_bytes_after": plan.checkpoint_bytes_after,
        "budget_met": plan.budget_met,
        "notes": plan.notes + [h for h in [_subfolder_hint(address, plan,
                                                           recursive=args.recursive)] if h],
        "quota": None if quota is None else {"limit": quota.limit, "usage": quota.usage,
                                             "trash": quota.trash},
        "free_after": plan.free_after,
        "trash_emptied": result.trash_emptied,
        "requests": result.requests,
    }


# ---- latest --------------------------------------------------------------------
def _display(address: str, path: str) -> str:
    """A local remote's file as a plain path (for shell scripts), else ``drive:...``."""
    parsed = parse_address(address)
    base = parsed.path if parsed.is_local else address
    return f"{base.rstrip('/')}/{path}" if path else base


def run_latest(args, ctx) -> int:
    dest = args.pull
    if dest is not None and not dest.strip():
        raise UsageError("--pull needs a destination file or folder")
    if dest is not None:  # on stderr: stdout holds only the answer (scripts capture it)
        ctx.note(f"latest: {where(args.remote)} -> {os.path.abspath(dest)}")
    with open_remote(args.remote, settings=ctx.settings) as remote:
        remote.set_status_listener(ctx.progress().on_status)
        min_age = _min_age(args, remote)
        now = time.time()
        try:
            if dest is None:
                found = find_latest(remote, "", family=args.family, min_age=min_age, now=now,
                                    recursive=args.recursive)
                pulled: Optional[Path] = None
            else:
                found = pull_latest(remote, "", dest=dest, family=args.family, min_age=min_age,
                                    now=now, recursive=args.recursive, progress=ctx.progress(),
                                    on_skip=ctx.warn)
                pulled = local_target(dest, found)
        except NotFound as exc:
            raise _explain_missing(args.remote, ctx.settings, exc) from None
        shown = _display(remote.address, found.entry.path)
    young = young_reason(found, min_age=min_age, now=now)
    if young:
        ctx.warn(f"{found.entry.path}: {young}; no settled checkpoint to prefer")
    if ctx.json:
        e = found.entry
        ctx.emit({"ok": True, "path": e.path, "address": shown, "family": found.family,
                  "role": found.role, "number": found.number, "size": e.size, "md5": e.md5,
                  "modified": e.modified, "settled": young is None,
                  "pulled_to": str(pulled) if pulled else None})
    else:  # the answer itself, printed even under --quiet (scripts capture it)
        ctx.result(str(pulled) if pulled is not None else shown)
    return 0
