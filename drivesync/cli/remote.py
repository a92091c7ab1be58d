"""`drivesync ls`, `drivesync quota`, `drivesync mkdir`: look at and prepare a remote."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from ..errors import NotFound, UsageError
from ..progress import human_bytes
from ..remotes import open_remote, parse_address
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
    p.add_argument("-R", "-r", "--recursive", action="store_true",
                   help="everything below, too (-r and -R are the same)")
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


def where(address: str) -> str:
    """The resolved place of an address, for the first line a verb prints:
    ``My Drive/space_Colab (drive:space_Colab)`` or an absolute local path."""
    parsed = parse_address(address)
    return f"{parsed.place} ({parsed})" if parsed.is_drive else parsed.place


def file_in_the_way(address: str, settings) -> Optional[str]:
    """A message when ``address`` names a file, not a folder; else None.

    Asks the parent folder, so it costs a request: call it only when the
    folder was not found.
    """
    parsed = parse_address(address)
    head, sep, name = parsed.path.rstrip("/").rpartition("/")
    if not name:
        return None
    parent = (f"{parsed.scheme}:{head}" if not parsed.is_local else
              "local:" + (head or sep or "."))
    try:
        with open_remote(parent, settings=settings) as up:
            entry = up.stat(name)
    except Exception:  # noqa: BLE001 - only a hint; absent or unreadable: no file in the way
        return None
    return None if entry.is_dir else f"{address} is a file, not a folder"


@contextmanager
def folder_expected(address: str, settings) -> Iterator[None]:
    """A NotFound because ``address`` names a file is the usage error (exit 2) that push
    and prune give for it, not "no such folder" (exit 3)."""
    try:
        yield
    except NotFound:
        in_the_way = file_in_the_way(address, settings)
        if in_the_way:
            raise UsageError(in_the_way) from None
        raise


def run_ls(args, ctx) -> int:
    place = where(args.address)
    with folder_expected(args.address, ctx.settings), \
            open_remote(args.address, settings=ctx.settings) as remote:
        entries = list(remote.walk("")) if args.recursive else remote.list("")
    if ctx.json:
        ctx.emit({"ok": True, "remote": remote.address, "place": place,
                  "entries": [_doc(e) for e in entries]})
        return 0
    n = len(entries)
    ctx.note(f"{place}: {n} item{'' if n == 1 else 's'}")  # stderr: stdout is one name a line
    if args.long:
        ctx.table([[("-" if e.is_dir else str(e.size)), _iso(e.modified), e.md5 or "-",
                    e.path + ("/" if e.is_dir else "")] for e in entries], result=True)
    else:
        ctx.result(*[e.path + ("/" if e.is_dir else "") for e in entries])
    return 0


def run_quota(args, ctx) -> int:
    with folder_expected(args.address, ctx.settings), \
            open_remote(args.address, settings=ctx.settings) as remote:
        remote.stat("")   # a missing folder is exit 3, as in ls, not the account's quota
        q = remote.quota()
    if ctx.json:
        doc = {"ok": True, "remote": remote.address, "limit": q.limit, "usage": q.usage,
               "trash": q.trash, "free": q.free}
        if q.item_limit is not None:
            doc.update(items=q.items, item_limit=q.item_limit, note=q.note)
        ctx.emit(doc)
        return 0
    if q.item_limit is not None:  # a shared drive: no quota, a limit on items
        ctx.table([["used", human_bytes(q.usage)], ["in trash", human_bytes(q.trash)],
                   ["items", f"{q.items} of {q.item_limit}"]], result=True)
        ctx.say(f"({q.note})")
        return 0
    ctx.table([["limit", human_bytes(q.limit)], ["used", human_bytes(q.usage)],
               ["in trash", human_bytes(q.trash)], ["free", human_bytes(q.free)]],
              result=True)
    if q.trash:
        ctx.say("(trash counts against the quota until emptied)")
    return 0


def run_mkdir(args, ctx) -> int:
    place = where(args.address)
    with open_remote(args.address, settings=ctx.settings) as remote:
        remote.mkdir("")
    if ctx.json:
        ctx.emit({"ok": True, "remote": remote.address, "place": place})
    else:
        ctx.say(f"mkdir: {place}: folder ready")
    return 0
