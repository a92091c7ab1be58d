"""One writer per checkpoint folder: a lease file on the remote itself.

Two runtimes (two Colab tabs, Colab and Kaggle) launched on one ``--weights``
folder would mirror into it side by side: names collide and ``latest`` can
pick the other run's file. ``launch`` therefore takes a lease on the folder: a
small JSON file ``.drivesync-lease-<owner>`` (hidden from listings like every
``.drivesync`` name) holding the owner id, host, pid, start time and a
heartbeat that a background thread refreshes every ``refresh`` seconds while
the launch runs. It is written through the plain :class:`Remote` interface
(upload, ``list_internal``, download, delete), so it works on every remote,
including Drive, which has no conditional create by name.

Taking it (clock-free, safe with listings that are read-after-write
consistent, as Drive, local folders, S3 and GCS are):

1. read every lease file; a live foreign *held* lease stops us (LockedError,
   exit 8) unless taken over; a foreign *claim* (another launcher in the middle
   of these steps) makes us back off and look again;
2. write our own file (state ``claim``);
3. read again: if no other live lease file is there, we hold the folder (our
   file is rewritten as ``held``); if one is, we delete ours and go back to 1
   after a random pause (a held one stops us).

Two launchers can never both win: the one whose step-3 listing came first
did not see the other's file, so the other's file was written after that
listing, and the other's own step-3 listing (later still) sees the first
one's file. At worst both back off and the random pauses separate them.

Ages are measured as ``now - heartbeat`` across hosts, so they assume clocks
within a few seconds of each other (NTP; Colab and Kaggle VMs are). A heartbeat
older than ``stale_after`` is *stale*: ``--take-over`` claims it at once (a
fresh one is watched for up to ``stale_after``; if it does not move, its
holder is gone and it is claimed, if it does, the take-over is refused);
``--force-take-over`` claims even a fresh one. One older than ``expire_after``
is ignored without being asked (a runtime dead for that long is not coming
back), with a note. A holder whose file was deleted or superseded by a
take-over learns it at its next heartbeat and stops mirroring.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..errors import DriveSyncError, LockedError, NotFound
from ..remotes.base import Remote
from ..types import INTERNAL_PREFIX, Entry, join
from .families import classify
from .latest import complete_checkpoints
from .policy import Decision, PrunePlan

log = logging.getLogger(__name__)

LEASE_PREFIX = INTERNAL_PREFIX + "-lease-"
CLAIM, HELD = "claim", "held"
_SAFE = re.compile(r"[^A-Za-z0-9._:@-]+")


@dataclass(frozen=True)
class LeaseTiming:
    """Seconds; the defaults suit Drive (two writes per heartbeat, ~0.07 writes/s)."""

    refresh: float = 30.0        # heartbeat period of the holder
    stale_after: float = 120.0   # older heartbeat: the holder is presumed gone (--take-over)
    expire_after: float = 1800.0  # older heartbeat: ignored without --take-over
    claim_timeout: float = 60.0  # a claim this old is debris of a launcher killed mid-claim
    settle: float = 0.25         # pause between writing our claim and reading it back
    rounds: int = 8              # back-off rounds while other launchers contend


@dataclass(frozen=True)
class LeaseRecord:
    """One lease file as read back (fields from an untrusted file are sanitised)."""

    owner: str
    host: str = "?"
    pid: int = 0
    started: float = 0.0
    heartbeat: float = 0.0
    acquired: float = 0.0        # when it became held (0 while a claim)
    state: str = CLAIM
    entry: Optional[Entry] = field(default=None, compare=False)

    def age(self, now: float) -> float:
        return max(0.0, now - self.heartbeat)

    def describe(self, now: float) -> str:
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.started)) \
            if self.started else "?"
        return (f"owner {self.owner} on host {self.host} (pid {self.pid}, started {started}), "
                f"last heartbeat {human_age(self.age(now))} ago")


def human_age(seconds: float) -> str:
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def lease_name(owner: str) -> str:
    return LEASE_PREFIX + owner


def encode(record: LeaseRecord) -> bytes:
    body = {"version": 1, "owner": record.owner, "host": record.host, "pid": record.pid,
            "started": record.started, "heartbeat": record.heartbeat,
            "acquired": record.acquired, "state": record.state}
    return (json.dumps(body, sort_keys=True) + "\n").encode("utf-8")


def _clean(text: object, limit: int = 64) -> str:
    return _SAFE.sub("_", str(text))[:limit] or "?"


def _number(value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return out if out == out and abs(out) < 1e12 else 0.0   # no NaN, no absurd times


def parse(entry: Entry, data: bytes) -> LeaseRecord:
    """A record from a lease file; a file we cannot read counts as a claim
    whose heartbeat is the file's modified time (so it expires like any other)."""
    owner = _clean(entry.name[len(LEASE_PREFIX):])
    try:
        body = json.loads(data.decode("utf-8"))
        if not isinstance(body, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError):
        log.warning("unreadable lease file %s; treating it as a claim from %s",
                    entry.path, time.strftime("%H:%M:%S", time.gmtime(entry.modified)))
        return LeaseRecord(owner=owner, heartbeat=entry.modified, entry=entry)
    state = body.get("state") if body.get("state") in (CLAIM, HELD) else CLAIM
    return LeaseRecord(owner=owner, host=_clean(body.get("host", "?")),
                       pid=int(_number(body.get("pid"))), started=_number(body.get("started")),
                       heartbeat=_number(body.get("heartbeat")) or entry.modified,
                       acquired=_number(body.get("acquired")), state=state, entry=entry)


def newest_per_owner(records: Iterable[LeaseRecord]) -> dict[str, LeaseRecord]:
    """A heartbeat writes the new file before deleting the old: keep the newest."""
    out: dict[str, LeaseRecord] = {}
    for r in records:
        have = out.get(r.owner)
        if have is None or (r.heartbeat, r.state == HELD) > (have.heartbeat, have.state == HELD):
            out[r.owner] = r
    return out


# ---- pure decisions ---------------------------------------------------------------
@dataclass
class Assessment:
    """What step 1 found: go on (after removing ``remove``), wait, or stop."""

    blocked_by: Optional[LeaseRecord] = None   # a live held lease we may not take
    why: str = ""                              # the message when blocked
    contenders: list = field(default_factory=list)   # fresh foreign claims: back off
    remove: list = field(default_factory=list)       # stale/expired/forced: delete these
    watch: Optional[LeaseRecord] = None        # --take-over of a fresh lease: watch it
    notes: list = field(default_factory=list)


def assess(others: Iterable[LeaseRecord], *, now: float, timing: LeaseTiming,
           take_over: bool = False, force: bool = False) -> Assessment:
    """Step 1 for the foreign lease records of a folder (newest per owner)."""
    out = Assessment()
    for r in sorted(others, key=lambda r: (-r.heartbeat, r.owner)):
        age = r.age(now)
        if r.state == CLAIM:
            if age < min(timing.claim_timeout, timing.expire_after) and not force:
                out.contenders.append(r)
            else:
                out.remove.append(r)
            continue
        if age >= timing.expire_after:
            out.remove.append(r)
            out.notes.append(f"ignoring the expired lease of {r.describe(now)} "
                             f"(more than {human_age(timing.expire_after)})")
        elif force or (take_over and age >= timing.stale_after):
            out.remove.append(r)
            out.notes.append(f"taking over the lease of {r.describe(now)}")
        elif take_over:
            out.watch = out.watch or r
        elif out.blocked_by is None:
            out.blocked_by = r
            if age >= timing.stale_after:
                out.why = (f"its heartbeat is stale (older than {human_age(timing.stale_after)}):"
                           " if that runtime is gone, relaunch with --take-over")
            else:
                out.why = ("that runtime looks alive; stop it first, or if it is gone (a Colab "
                           "disconnect) relaunch with --take-over, which claims the lease once "
                           f"its heartbeat is {human_age(timing.stale_after)} old and unchanged"
                           " (--force-take-over claims it at once)")
    if out.blocked_by is not None:
        out.watch = None
    return out


def after_claim(others: Iterable[LeaseRecord], *, now: float,
                timing: LeaseTiming) -> tuple[str, Optional[LeaseRecord]]:
    """Step 3: ("won", None), ("lost", holder) or ("contended", a contender)."""
    live = [r for r in others
            if r.age(now) < (timing.expire_after if r.state == HELD else timing.claim_timeout)]
    held = [r for r in live if r.state == HELD]
    if held:
        return "lost", max(held, key=lambda r: (r.heartbeat, r.owner))
    if live:
        return "contended", live[0]
    return "won", None


def holder_check(records: Iterable[LeaseRecord], me: LeaseRecord, *, now: float,
                 timing: LeaseTiming) -> Optional[str]:
    """At a heartbeat: None while we still hold the folder, else why we lost it.

    Our file gone means a take-over deleted it. Two held leases (a take-over
    racing our heartbeat) resolve to the one acquired later, the taker's: both
    holders compute the same answer, so exactly one steps down.
    """
    by_owner = newest_per_owner(records)
    if me.owner not in by_owner:
        other = [r for r in by_owner.values() if r.state == HELD]
        who = f" by {other[0].describe(now)}" if other else ""
        return f"our lease file was removed (taken over{who})"
    for r in by_owner.values():
        if r.owner == me.owner or r.state != HELD or r.age(now) >= timing.expire_after:
            continue
        if (r.acquired, r.owner) > (me.acquired, me.owner):
            return f"taken over by {r.describe(now)}"
    return None


# ---- I/O --------------------------------------------------------------------------
def read_leases(remote: Remote, path: str = "") -> list[LeaseRecord]:
    """Every lease file in folder ``path`` (none when the folder does not exist)."""
    try:
        entries = [e for e in remote.list_internal(path)
                   if e.name.startswith(LEASE_PREFIX) and not e.is_dir]
    except NotFound:
        return []
    out = []
    with tempfile.TemporaryDirectory(prefix="drivesync-lease-") as tmp:
        for i, e in enumerate(entries):
            local = Path(tmp) / str(i)
            try:
                if e.size > 65536:
                    raise ValueError("too big for a lease")
                remote.download(e, local)
                data = local.read_bytes()
            except NotFound:
                continue   # deleted since listed: a heartbeat replaced it, or a release
            except (ValueError, DriveSyncError) as exc:
                log.warning("cannot read lease file %s: %s", e.path, exc)
                data = b""
            out.append(parse(e, data))
    return out


def live_lease(remote: Remote, path: str = "", *, timing: LeaseTiming = LeaseTiming(),
               now: Optional[float] = None) -> Optional[LeaseRecord]:
    """The held lease on folder ``path`` whose heartbeat is not stale, if any (prune)."""
    now = time.time() if now is None else now
    held = [r for r in newest_per_owner(read_leases(remote, path)).values()
            if r.state == HELD and r.age(now) < timing.stale_after]
    return max(held, key=lambda r: r.heartbeat) if held else None


class LeaseLost(LockedError):
    """Our lease was taken over (or deleted) while we held it."""


class FolderLease:
    """The lease of one launch on one remote folder.

    ``acquire`` (steps 1-3 above), ``start_heartbeat`` (a daemon thread), and
    ``release`` (deletes our file; a crash leaves it to go stale). ``lost`` is
    set, with the reason, once a heartbeat finds the lease taken over: the
    mirror must stop writing into the folder then.
    """

    def __init__(self, remote: Remote, path: str = "", *, owner: Optional[str] = None,
                 timing: LeaseTiming = LeaseTiming(),
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Optional[random.Random] = None,
                 on_note: Callable[[str], None] = lambda message: None):
        self.remote = remote
        self.path = path
        self.timing = timing
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.on_note = on_note
        now = clock()
        self.me = LeaseRecord(owner=owner or uuid.uuid4().hex[:12],
                              host=_clean(socket.gethostname()), pid=os.getpid(),
                              started=now, heartbeat=now)
        self.lost: Optional[str] = None
        self.held = False
        self._entry: Optional[Entry] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._io = threading.Lock()
        self._round_start = now

    @property
    def where(self) -> str:
        return self.remote.address + (f"/{self.path}" if self.path else "")

    @property
    def file_path(self) -> str:
        return join(self.path, lease_name(self.me.owner))

    # ---- writing our file ---------------------------------------------------
    def _write(self, record: LeaseRecord) -> None:
        """Upload the new version, then delete the old one: one always exists."""
        old = self._entry
        with tempfile.TemporaryDirectory(prefix="drivesync-lease-") as tmp:
            local = Path(tmp) / "lease.json"
            local.write_bytes(encode(record))
            self._entry = self.remote.upload(local, self.file_path)
        self.me = record
        if old is not None and old.id != self._entry.id:
            self._delete(old)

    def _delete(self, entry: Entry) -> None:
        try:
            self.remote.delete(entry, permanent=True)
        except NotFound:
            pass   # already gone (a local upload renames over the old file)

    def _others(self) -> list[LeaseRecord]:
        return [r for r in newest_per_owner(read_leases(self.remote, self.path)).values()
                if r.owner != self.me.owner]

    # ---- acquire ----------------------------------------------------------------
    def acquire(self, *, take_over: bool = False, force: bool = False) -> None:
        """Hold the folder or raise LockedError (exit 8) naming the holder."""
        watched: Optional[LeaseRecord] = None
        watch_until = 0.0
        attempt = 0
        while attempt < max(1, self.timing.rounds):
            now = self.clock()
            self._round_start = now
            found = assess(self._others(), now=now, timing=self.timing,
                           take_over=take_over, force=force)
            if found.blocked_by is not None:
                raise LockedError(f"{self.where} is leased by another launch: "
                                  f"{found.blocked_by.describe(now)}; {found.why}")
            if found.watch is not None:
                watched, watch_until = self._watch(found.watch, watched, watch_until, now)
                continue
            if found.contenders:
                self._back_off(attempt)
                attempt += 1
                continue
            for note in found.notes:
                self.on_note(note)
            for r in found.remove:
                if r.entry is not None:
                    log.info("removing lease file %s (%s)", r.entry.path, r.owner)
                    self._delete(r.entry)
            now = self.clock()
            self._write(replace(self.me, state=CLAIM, heartbeat=now))
            self.sleep(self.timing.settle)
            now = self.clock()
            outcome, other = after_claim(self._others(), now=now, timing=self.timing)
            if outcome == "won":
                self._write(replace(self.me, state=HELD, heartbeat=now, acquired=now))
                self.held = True
                log.info("leased %s as %s", self.where, self.me.owner)
                return
            self._delete_own()
            if outcome == "lost" and other is not None:
                raise LockedError(f"{self.where} is leased by another launch: "
                                  f"{other.describe(now)} (it won the race to start)")
            self._back_off(attempt)
            attempt += 1
        raise LockedError(f"{self.where}: other launches keep claiming this folder at the same "
                          f"time; gave up after {self.timing.rounds} rounds (try again)")

    def _watch(self, r: LeaseRecord, watched: Optional[LeaseRecord], until: float,
               now: float) -> tuple[LeaseRecord, float]:
        """--take-over of a fresh lease: wait for it to go stale; refuse if it moves."""
        if watched is not None and watched.owner == r.owner and r.heartbeat > watched.heartbeat:
            raise LockedError(f"{self.where}: not taking over the lease of {r.describe(now)}: "
                              "its heartbeat moved while we waited, so that runtime is alive "
                              "(stop it, or use --force-take-over)")
        if watched is None or watched.owner != r.owner:
            self.on_note(f"{self.where} is leased by {r.describe(now)}; waiting up to "
                         f"{human_age(self.timing.stale_after - r.age(now))} for its heartbeat "
                         "to go stale before taking it over")
            until = r.heartbeat + self.timing.stale_after
        self.sleep(max(0.0, min(self.timing.refresh / 2, until - now)) or 0.01)
        return r, until

    def _back_off(self, attempt: int) -> None:
        """A random pause, in units of how long one round took (the requests, not
        only ``settle``), so contenders' next rounds no longer overlap."""
        span = max(self.timing.settle, self.clock() - self._round_start, 0.01)
        self.sleep(self.rng.uniform(0.2, 2.0) * span * (1 + attempt))

    def _delete_own(self) -> None:
        if self._entry is not None:
            self._delete(self._entry)
            self._entry = None

    # ---- while held -------------------------------------------------------------
    def beat(self) -> Optional[str]:
        """Refresh the heartbeat; returns why the lease was lost (and sets ``lost``)."""
        with self._io:
            if not self.held or self.lost:
                return self.lost
            now = self.clock()
            why = holder_check(read_leases(self.remote, self.path), self.me, now=now,
                               timing=self.timing)
            if why is None:
                self._write(replace(self.me, heartbeat=now))
                why = holder_check(read_leases(self.remote, self.path), self.me, now=now,
                                   timing=self.timing)
            if why is not None:
                self.lost = why
                self.held = False
                self._delete_own()
                log.warning("lease on %s lost: %s", self.where, why)
            return self.lost

    def start_heartbeat(self, on_lost: Callable[[str], None] = lambda why: None) -> None:
        def run() -> None:
            while not self._stop.wait(self.timing.refresh):
                try:
                    why = self.beat()
                except DriveSyncError as exc:   # a network hiccup: try again next period
                    log.warning("lease heartbeat on %s failed: %s", self.where, exc)
                    continue
                if why is not None:
                    on_lost(why)
                    return

        self._thread = threading.Thread(target=run, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and delete our file (a clean exit frees the folder)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._io:
            if self._entry is None:
                return
            try:
                self._delete_own()
            except DriveSyncError as exc:
                log.warning("could not remove the lease file %s: %s (it goes stale)",
                            self.file_path, exc)
            self.held = False
            log.info("released the lease on %s", self.where)

    def __enter__(self) -> FolderLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---- prune ------------------------------------------------------------------------
def newest_checkpoints(entries: Iterable[Entry]) -> list[Entry]:
    """What a live launch may be resuming from or writing: the newest checkpoint
    by modified time, and the one ``latest`` would pick (often the same file)."""
    files = [e for e in entries if not e.is_dir]
    found = classify(files)
    out: list[Entry] = []
    if found:
        out.append(max(found, key=lambda c: (c.entry.modified, c.entry.path)).entry)
    complete = complete_checkpoints(files)
    if complete and complete[0].entry not in out:
        out.append(complete[0].entry)
    return out


def spare_leased_newest(remote: Remote, plan: PrunePlan, folders: dict[str, list[Entry]], *,
                        timing: LeaseTiming = LeaseTiming(),
                        now: Optional[float] = None) -> list[str]:
    """Keep the newest checkpoint of every folder a live launch holds a lease on.

    Only folders where ``plan`` would delete such a file are looked at, so a
    prune that keeps them (the usual case) costs no extra request. ``plan`` is a
    changed in place; returns the notes added.
    """
    doomed = {(d.entry.path, d.entry.id): d for d in plan.delete}
    notes: list[str] = []
    now = time.time() if now is None else now
    for folder, entries in folders.items():
        hit = [e for e in newest_checkpoints(entries) if (e.path, e.id) in doomed]
        if not hit:
            continue
        holder = live_lease(remote, folder, timing=timing, now=now)
        if holder is None:
            continue
        for e in hit:
            d = doomed.pop((e.path, e.id))
            plan.delete.remove(d)
            plan.keep.append(Decision(e, f"newest checkpoint of a folder leased by a running "
                                         f"launch ({holder.owner} on {holder.host})"))
            plan.bytes_freed -= e.size
            plan.checkpoint_bytes_after += e.size
            notes.append(f"{folder or '.'}: kept {e.name}: the newest checkpoint of a folder "
                         f"leased by a running launch ({holder.describe(now)})")
    plan.notes += notes
    return notes
