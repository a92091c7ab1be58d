"""`drivesync ls`, `drivesync quota`, `drivesync mkdir`: look at and prepare a remote."""

from __future__ import annotations

import time
from typing import Any

from ..progress import human_bytes
from ..remotes import open_remote
from ..types import Entry
from . import add_verb


def register(sub, common) -> None:
    p = add_verb(
        sub, common, "ls", help="list a remote folder (drive:FOLDER/SUB or a local path)",
        description="List the items of a remote folder. Drive folders are read through the "
                    "Drive v3 API; drivesync's own temporary files are hidden.",
        example="drivesync ls drive:space_Colab\n"
                "drivesync ls drive:space_Colab/data -l -R\n"
                "drivesync ls /content/drive/MyDrive/space_Colab --json")
    p.add_argument("address", metavar="REMOTE", help="drive:FOLDER/SUB, local:PATH or a path")
    p.add_argument("-l", "--long", action="store_true", help="size, modified time and md5")
    p.add_argument("-R", "--recursive", action="store_true", help="everything below, too")
    p.set_defaults(func=run_ls)

    p = add_verb(
        sub, common, "quota", help="storage limit, usage and trash of a remote",
        example="drivesync quota\ndrivesync quota drive: --json")
    p.add_argument("address", metavar="REMOTE", nargs="?", default="drive:",
                   help="drive: (default) or a local path")
    p.set_defaults(func=run_quota)

    p = add_verb(
        sub, common, "mkdir", help="create a remote folder and its parents (idempotent)",
        example="drivesync mkdir drive:space_Colab/data/voc")
    p.add_argument("address", metavar="REMOTE", help="drive:FOLDER/SUB or a local path")
    p.set_defaults(func=run_mkdir)


def _doc(e: Entry) -> dict[str, Any]:
    return {"path": e.path, "kind": e.kind, "size": e.size, "md5": e.md5,
            "modified": _iso(e.modified), "id": e.id}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""


def run_ls(args, ctx) -> int:
    with open_remote(args.address, settings=ctx.settings) as remote:
        entries = list(remote.walk("")) if args.recursive else remote.list("")
    if ctx.json:
        ctx.emit({"ok": True, "remote": remote.address, "entries": [_doc(e) for e in entries]})
        return 0
    if args.long:
        ctx.table([[("-" if e.is_dir else str(e.size)), _iso(e.modified), e.md5 or "-",
                    e.path + ("/" if e.is_dir else "")] for e in entries])
    else:
        ctx.say(*[e.path + ("/" if e.is_dir else "") for e in entries])
    return 0


def run_quota(args, ctx) -> int:
    with open_remote(args.address, settings=ctx.settings) as remote:
        q = remote.quota()
    if ctx.json:
        ctx.emit({"ok": True, "remote": remote.address, "limit": q.limit, "usage": q.usage,
                  "trash": q.trash, "free": q.free})
        return 0
    ctx.table([["limit", human_bytes(q.limit)], ["used", human_bytes(q.usage)],
               ["in trash", human_bytes(q.trash)], ["free", human_bytes(q.free)]])
    if q.trash:
        ctx.say("(trash counts against the quota until emptied)")
    return 0


def run_mkdir(args, ctx) -> int:
    with open_remote(args.address, settings=ctx.settings) as remote:
        remote.mkdir("")
    if ctx.json:
        ctx.emit({"ok": True, "remote": remote.address})
    else:
        ctx.say(f"{remote.address}: folder ready")
    return 0
