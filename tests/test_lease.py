"""One writer per checkpoint folder: the lease (drivesync/checkpoints/lease.py).

Pure decisions table-driven; the I/O against the local folder and the Drive
emulator (the real google-api-python-client over HTTP), launchers racing in
threads, and the CLI (exit 8, --take-over, prune under a live lease).
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from drivesync.checkpoints.latest import find_latest
from drivesync.checkpoints.lease import (
    CLAIM,
    HELD,
    LEASE_PREFIX,
    FolderLease,
    LeaseRecord,
    LeaseTiming,
    after_claim,
    assess,
    encode,
    holder_check,
    live_lease,
    parse,
    read_leases,
)
from drivesync.checkpoints.policy import PrunePolicy
from drivesync.checkpoints.prune import prune
from drivesync.errors import LockedError
from drivesync.types import Entry

T = LeaseTiming(refresh=10, stale_after=40, expire_after=600, claim_timeout=30, settle=0.0)
NOW = 1_000_000.0


def rec(owner: str, age: float, state: str = HELD, acquired: float = 0.0) -> LeaseRecord:
    return LeaseRecord(owner=owner, host="h", pid=1, started=NOW - 999, heartbeat=NOW - age,
                       acquired=acquired, state=state)


# ---- pure decisions -------------------------------------------------------------------------
@pytest.mark.parametrize("others,take_over,force,blocked,remove,contenders,watch", [
    ([], False, False, None, [], [], None),
    ([rec("a", 5)], False, False, "a", [], [], None),            # live: locked
    ([rec("a", 50)], False, False, "a", [], [], None),           # stale: still asks
    ([rec("a", 50)], True, False, None, ["a"], [], None),        # stale + --take-over
    ([rec("a", 5)], True, False, None, [], [], "a"),             # fresh + --take-over: watch
    ([rec("a", 5)], True, True, None, ["a"], [], None),          # --force-take-over
    ([rec("a", 700)], False, False, None, ["a"], [], None),      # expired: ignored
    ([rec("a", 1, CLAIM)], False, False, None, [], ["a"], None),  # racing claim: back off
    ([rec("a", 31, CLAIM)], False, False, None, ["a"], [], None),  # debris of a killed claim
    ([rec("a", 5), rec("b", 1, CLAIM)], True, False, None, [], ["b"], "a"),
])
def test_assess(others, take_over, force, blocked, remove, contenders, watch):
    got = assess(others, now=NOW, timing=T, take_over=take_over, force=force)
    assert (got.blocked_by.owner if got.blocked_by else None) == blocked
    assert sorted(r.owner for r in got.remove) == remove
    assert [r.owner for r in got.contenders] == contenders
    assert (got.watch.owner if got.watch else None) == watch


def test_assess_message_names_holder_and_heartbeat_age():
    got = assess([rec("a", 75)], now=NOW, timing=T)
    assert "--take-over" in got.why and "stale" in got.why
    assert "owner a on host h (pid 1" in got.blocked_by.describe(NOW)
    assert "last heartbeat 75 s ago" in got.blocked_by.describe(NOW)
    assert "looks alive" in assess([rec("a", 3)], now=NOW, timing=T).why


@pytest.mark.parametrize("others,outcome", [
    ([], "won"),
    ([rec("a", 1, CLAIM)], "contended"),
    ([rec("a", 1, HELD)], "lost"),
    ([rec("a", 1, CLAIM), rec("b", 2, HELD)], "lost"),
    ([rec("a", 31, CLAIM)], "won"),                 # dead claim
    ([rec("a", 700, HELD)], "won"),                 # expired holder
])
def test_after_claim(others, outcome):
    assert after_claim(others, now=NOW, timing=T)[0] == outcome


def test_holder_check_missing_file_and_two_holders():
    me = rec("m", 0, acquired=NOW - 100)
    assert holder_check([me], me, now=NOW, timing=T) is None
    assert "removed" in holder_check([rec("x", 1, acquired=NOW)], me, now=NOW, timing=T)
    # a take-over racing our heartbeat: the later acquisition (the taker's) keeps it
    taker = rec("x", 1, acquired=NOW - 10)
    assert "taken over" in holder_check([me, taker], me, now=NOW, timing=T)
    assert holder_check([me, taker], taker, now=NOW, timing=T) is None


def test_parse_untrusted_and_round_trip():
    e = Entry(path=LEASE_PREFIX + "abc", size=10, modified=NOW - 5, id="1")
    r = rec("abc", 3)
    back = parse(e, encode(r))
    assert replace(back, entry=None) == r
    junk = parse(e, b"\x00not json")
    assert junk.state == CLAIM and junk.heartbeat == NOW - 5 and junk.owner == "abc"
    evil = parse(e, b'{"host": "x\\n\\u001b[31m/../y", "pid": "NaN", "heartbeat": 1e300}')
    assert "\n" not in evil.host and "\x1b" not in evil.host and evil.pid == 0
    assert evil.heartbeat == NOW - 5


# ---- the Remote side ------------------------------------------------------------------------
def test_lease_files_are_hidden_from_list_and_seen_by_list_internal(remote, tmp_path):
    src = tmp_path / "x.pt"
    src.write_bytes(b"w" * 10)
    remote.upload(src, "w/last.pt")
    lease = FolderLease(remote, "w", timing=T)
    lease.acquire()
    assert [e.name for e in remote.list("w")] == ["last.pt"]
    assert [e.name for e in remote.list_internal("w")] == [LEASE_PREFIX + lease.me.owner]
    assert find_latest(remote, "w").entry.name == "last.pt"   # latest ignores the lease
    lease.release()
    assert remote.list_internal("w") == []


def test_second_lease_is_refused_naming_the_holder(remote):
    a = FolderLease(remote, "w", timing=T)
    a.acquire()
    b = FolderLease(remote, "w", timing=T)
    with pytest.raises(LockedError) as exc:
        b.acquire()
    msg = str(exc.value)
    assert exc.value.exit_code == 8
    assert f"owner {a.me.owner} on host {a.me.host} (pid {a.me.pid}" in msg
    assert "last heartbeat 0 s ago" in msg and "--take-over" in msg
    assert read_leases(remote, "w")[0].owner == a.me.owner   # the loser left nothing
    a.release()
    b.acquire()                                               # a clean release frees it
    b.release()


class Clock:
    def __init__(self, t: float = NOW):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_crash_leaves_a_stale_lease_take_over_claims_it(remote):
    clock = Clock()
    crashed = FolderLease(remote, "w", timing=T, clock=clock, sleep=clock.sleep)
    crashed.acquire()                    # ... and the runtime dies (no release)
    clock.t += 45                        # heartbeat 45 s old: stale (40)
    notes: list = []
    again = FolderLease(remote, "w", timing=T, clock=clock, sleep=clock.sleep,
                        on_note=notes.append)
    with pytest.raises(LockedError, match="stale"):
        again.acquire()
    again.acquire(take_over=True)
    assert any("taking over the lease of owner " + crashed.me.owner in n for n in notes)
    assert [r.owner for r in read_leases(remote, "w")] == [again.me.owner]
    # the old holder, were it still alive, learns it at its next heartbeat
    assert "removed" in crashed.beat()
    assert crashed.lost and [r.owner for r in read_leases(remote, "w")] == [again.me.owner]
    assert again.beat() is None


def test_take_over_waits_for_a_fresh_lease_to_go_stale(local_remote):
    clock = Clock()
    dead = FolderLease(local_remote, "w", timing=T, clock=clock, sleep=clock.sleep)
    dead.acquire()
    clock.t += 5
    taker = FolderLease(local_remote, "w", timing=T, clock=clock, sleep=clock.sleep)
    taker.acquire(take_over=True)        # sleeps (fake clock) until the heartbeat is 40 s old
    assert clock.t >= NOW + 40 and taker.held


def test_take_over_refuses_a_holder_whose_heartbeat_moves(local_remote):
    clock = Clock()
    alive = FolderLease(local_remote, "w", timing=T, clock=clock)

    def sleep_and_beat(s: float) -> None:   # the holder's thread beats while we wait
        clock.t += s
        alive.beat()

    alive.acquire()
    taker = FolderLease(local_remote, "w", timing=T, clock=clock, sleep=sleep_and_beat)
    with pytest.raises(LockedError, match="heartbeat moved"):
        taker.acquire(take_over=True)
    assert alive.held and alive.beat() is None
    taker.acquire(force=True, take_over=True)          # --force-take-over
    assert alive.beat() is not None and not alive.held


def test_expired_lease_is_ignored_without_asking(remote):
    clock = Clock()
    FolderLease(remote, "w", timing=T, clock=clock, sleep=clock.sleep).acquire()
    clock.t += 601
    notes: list = []
    FolderLease(remote, "w", timing=T, clock=clock, sleep=clock.sleep,
                on_note=notes.append).acquire()
    assert any("expired" in n for n in notes)


def test_heartbeat_thread_refreshes_and_release_stops_it(local_remote):
    timing = replace(T, refresh=0.05)
    lease = FolderLease(local_remote, "w", timing=timing)
    lease.acquire()
    first = read_leases(local_remote, "w")[0].heartbeat
    lease.start_heartbeat()
    deadline = first + 5
    import time
    while read_leases(local_remote, "w")[0].heartbeat == first and time.time() < deadline:
        time.sleep(0.02)
    assert read_leases(local_remote, "w")[0].heartbeat > first
    lease.release()
    assert read_leases(local_remote, "w") == []


# ---- races -------------------------------------------------------------------------------
def _race(make_remote, n: int, timing: LeaseTiming) -> tuple[list, list]:
    start = threading.Barrier(n)
    won: list = []
    lost: list = []

    def run() -> None:
        lease = FolderLease(make_remote(), "w", timing=timing)
        start.wait()
        try:
            lease.acquire()
            won.append(lease)
        except LockedError as exc:
            lost.append(str(exc))
            lease.remote.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return won, lost


@pytest.mark.parametrize("which", ["local", "drive", "s3", "gs"])
def test_launchers_racing_exactly_one_wins(which, request, tmp_path):
    """Three launchers start at the same moment on one folder, five times over:
    each time exactly one holds it and the others stop naming it. On the object
    stores (moto's S3 server, the GCS emulator) too: the lease is plain objects."""
    from drivesync.config import Settings
    from drivesync.remotes import open_remote

    timing = replace(T, settle=0.02)
    for round_ in range(2 if which == "s3" else 5):   # boto3 clients are slow to make
        if which in ("drive", "s3", "gs"):
            if which == "drive":
                settings = request.getfixturevalue("drive_settings")
                folder = f"drive:space_Colab/race{round_}"
            elif which == "s3":
                settings = request.getfixturevalue("s3_settings")
                folder = f"s3://{request.getfixturevalue('s3_bucket')}/race{round_}"
            else:
                settings = Settings(backoff_base=0.01, backoff_cap=0.05, max_tries=5)
                folder = f"gs://{request.getfixturevalue('gcs_bucket')}/race{round_}"
            make = lambda f=folder, s=settings: open_remote(f, settings=s)  # noqa: E731
        else:
            from drivesync.hashing import HashCache
            from drivesync.remotes.local import LocalRemote

            root = tmp_path / f"race{round_}"
            root.mkdir()
            make = lambda r=root: LocalRemote(r, hash_cache=HashCache(None))  # noqa: E731
        won, lost = _race(make, 3, timing)
        assert len(won) == 1, (round_, lost)
        assert len(lost) == 2 and all("leased by another launch" in m for m in lost), lost
        check = make()
        assert [r.owner for r in read_leases(check, "w")] == [won[0].me.owner]
        assert live_lease(check, "w").owner == won[0].me.owner
        won[0].release()
        won[0].remote.close()


# ---- prune under a live lease -----------------------------------------------------------------
def test_prune_never_deletes_the_newest_checkpoint_of_a_leased_folder(remote, tmp_path):
    import os
    import time

    sizes = {"yolo_1000.weights": 100, "yolo_2000.weights": 100, "yolo_3000.weights": 60}
    for i, (name, size) in enumerate(sizes.items()):
        src = tmp_path / name
        src.write_bytes(bytes([i]) * size)
        t = time.time() - 100 + 10 * i
        os.utime(src, (t, t))
        remote.upload(src, f"w/{name}")
    policy = PrunePolicy(keep_last=0)
    # without a lease, the newest file (cut short, so not complete) is a candidate
    plan = prune(remote, "w", policy=policy, dry_run=True, lock_dir=tmp_path / "l").plan
    assert "yolo_3000.weights" in {d.entry.name for d in plan.delete}
    lease = FolderLease(remote, "w", timing=T)
    lease.acquire()
    result = prune(remote, "w", policy=policy, permanent=True, lock_dir=tmp_path / "l")
    assert {e.name for e in result.deleted} == {"yolo_1000.weights"}
    assert any("leased by a running launch" in n for n in result.plan.notes)
    assert {e.name for e in remote.list("w")} == {"yolo_2000.weights", "yolo_3000.weights"}
    lease.release()
    result = prune(remote, "w", policy=policy, permanent=True, lock_dir=tmp_path / "l")
    assert {e.name for e in result.deleted} == {"yolo_3000.weights"}


# ---- launch and the CLI --------------------------------------------------------------------
def _darknet_setup(tmp_path, remote_root, work: str = "work") -> list:
    import sys
    from pathlib import Path

    fake = Path(__file__).parent / "fake_trainer.py"
    (tmp_path / "obj.data").write_text(f"classes = 1\nbackup = {tmp_path / 'backup'}\n")
    (tmp_path / "yolo.cfg").write_text("[net]\nbatch=4\nsubdivisions=1\nmax_batches=6\n"
                                       "[yolo]\nclasses=1\n")
    darknet = tmp_path / "darknet"
    darknet.write_text(f'#!/bin/sh\nexec "{sys.executable}" -u "{fake}" darknet "$@"\n')
    darknet.chmod(0o755)
    return ["launch", "darknet", "--data", str(tmp_path / "obj.data"),
            "--cfg", str(tmp_path / "yolo.cfg"), "--darknet", str(darknet),
            "--weights", str(remote_root), "--work-dir", str(tmp_path / work),
            "--interval", "0.03", "--no-mount"]


def test_launch_on_a_held_folder_exits_8_naming_the_holder(tmp_path, local_remote, capsys,
                                                           monkeypatch):
    from drivesync.cli import main

    monkeypatch.setenv("FAKE_INTERVAL", "0.01")
    argv = _darknet_setup(tmp_path, local_remote.root)
    other = FolderLease(local_remote, timing=LeaseTiming())
    other.acquire()
    assert main(argv) == 8
    err = capsys.readouterr().err
    assert f"leased by another launch: owner {other.me.owner} on host" in err
    assert "last heartbeat 0 s ago" in err and "Traceback" not in err
    assert [e.name for e in local_remote.list("")] == []           # nothing was mirrored
    assert main(argv + ["--force-take-over"]) == 0
    out = capsys.readouterr().out
    assert "taking over the lease of owner " + other.me.owner in out
    assert "yolo_final.weights" in {e.name for e in local_remote.list("")}
    assert local_remote.list_internal("") == []     # a clean exit released the lease
    assert "removed" in other.beat()                # the old holder learns it lost


def test_two_launches_racing_one_runs_one_stops(tmp_path, local_remote):
    """Two `drivesync launch` processes started together on one folder."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    # the trainer runs ~3 s: launch now exits as soon as it stops, so a quick run could
    # end and release the lease before the other launch even starts
    env = dict(os.environ, FAKE_INTERVAL="0.5", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, "-m", "drivesync",
                               *_darknet_setup(tmp_path, local_remote.root, f"work{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                              cwd=str(tmp_path)) for i in range(2)]
    outs = [p.communicate(timeout=60)[0].decode() for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 8], outs
    loser = outs[[p.returncode for p in procs].index(8)]
    assert "leased by another launch" in loser and "running:" not in loser
    assert local_remote.list_internal("") == []


def test_colab_cell_passes_take_over():
    from argparse import Namespace

    from drivesync.cli.launch import colab_cell_text

    args = Namespace(trainer="darknet", data=None, cfg=None, darknet="/d", pretrained=None,
                     weights="drive:space_Colab/backup", dataset=None, root="/WORK1",
                     repo_url="https://x/y", take_over=True)
    assert "--root /WORK1 --take-over" in colab_cell_text(args)
