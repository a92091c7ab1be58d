"""prune / latest against both remotes (local folder and the Drive emulator), the
lock, the quota arithmetic on a real quota, batched deletes, and the CLI verbs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Optional

import pytest

from drivesync.checkpoints import PrunePolicy, find_latest, prune, pull_latest
from drivesync.checkpoints.lock import FolderLock, lock_path
from drivesync.cli import main
from drivesync.errors import LockedError, NotFound, UsageError
from drivesync.types import temp_name

TOKEN = "test-token"  # the token tests/conftest.py gives the emulator

SUB = "ckpt"


def payload(name: str, size: int) -> bytes:
    """Distinct, reproducible bytes per name (so no two files share an md5 by accident)."""
    seed = hashlib.sha256(name.encode()).hexdigest().encode()
    return (seed * (size // len(seed) + 1))[:size]


SETTLED = time.time() - 3600   # seeded files were written an hour ago unless said otherwise


def seed(remote, tmp_path: Path, files: dict, *, sub: str = SUB,
         written: Optional[float] = SETTLED) -> None:
    """Upload ``{name: size or bytes}`` into ``sub``, in the given order (= mtime order),
    modified ``written`` + i (None: now, as a trainer writing into the folder leaves them)."""
    src = tmp_path / "seed"
    src.mkdir(exist_ok=True)
    for i, (name, spec) in enumerate(files.items()):
        data = spec if isinstance(spec, bytes) else payload(name, spec)
        p = src / name.replace("/", "_")
        p.write_bytes(data)
        if written is not None:     # the Drive remote uploads the source's mtime
            os.utime(p, (written + i, written + i))
        remote.upload(p, f"{sub}/{name}")
        if written is not None and remote.address.startswith("local:"):
            os.utime(remote.root / sub / name, (written + i, written + i))


def names(remote, sub: str = SUB) -> list[str]:
    return sorted(e.name for e in remote.list(sub))


def address(remote) -> str:
    if remote.address.startswith("drive:"):
        return f"{remote.address}/{SUB}"
    return str(remote.root / SUB)


@pytest.fixture
def cli_env(remote, monkeypatch):
    """Arguments and environment for running the CLI against ``remote``."""
    if remote.address.startswith("drive:"):
        monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
        return ["--endpoint", remote.settings.api_endpoint]
    return []


DARKNET = {f"y_{i}.weights": 64 for i in range(100, 1100, 100)}
DARKNET.update({"y_last.weights": 64, "yolov3.weights": 64, "notes.txt": 5})


# ---- prune ---------------------------------------------------------------------------------
def test_prune_keeps_the_rules_and_is_idempotent(remote, tmp_path):
    seed(remote, tmp_path, DARKNET)
    result = prune(remote, SUB, policy=PrunePolicy(keep_last=2, keep_every=500),
                   lock_dir=tmp_path / "locks")
    assert sorted(e.name for e in result.deleted) == sorted(
        f"y_{i}.weights" for i in (100, 200, 300, 400, 600, 700, 800))
    assert result.failed == [] and result.bytes_freed == 7 * 64
    assert names(remote) == ["notes.txt", "y_1000.weights", "y_500.weights", "y_900.weights",
                             "y_last.weights", "yolov3.weights"]
    again = prune(remote, SUB, policy=PrunePolicy(keep_last=2, keep_every=500),
                  lock_dir=tmp_path / "locks")
    assert again.deleted == [] and again.plan.delete == []


def test_prune_dry_run_changes_nothing(remote, tmp_path):
    seed(remote, tmp_path, DARKNET)
    before = names(remote)
    result = prune(remote, SUB, policy=PrunePolicy(keep_last=1), dry_run=True,
                   lock_dir=tmp_path / "locks")
    assert len(result.plan.delete) == 9 and result.deleted == []
    assert names(remote) == before


def test_prune_trash_then_permanent_and_empty_trash(remote, tmp_path):
    seed(remote, tmp_path, {f"m_{i}.pt": 100 for i in range(1, 6)})
    prune(remote, SUB, policy=PrunePolicy(keep_last=4), lock_dir=tmp_path / "l")
    assert remote.quota().trash >= 100            # trashed: still counted
    prune(remote, SUB, policy=PrunePolicy(keep_last=3), permanent=True, empty_trash=True,
          lock_dir=tmp_path / "l")
    assert names(remote) == ["m_3.pt", "m_4.pt", "m_5.pt"]
    assert remote.quota().trash == 0


def test_drive_deletes_are_batched(drive_settings, emulator, tmp_path):
    from drivesync.remotes import open_remote

    with open_remote("drive:space_Colab", settings=drive_settings) as up:
        seed(up, tmp_path, {f"m_{i}.pt": 16 for i in range(1, 151)})
    with open_remote("drive:space_Colab", settings=drive_settings) as remote:
        before = dict(emulator.counters["ops"])
        result = prune(remote, SUB, policy=PrunePolicy(keep_last=1), permanent=True,
                       lock_dir=tmp_path / "l")
        ops = {k: v - before.get(k, 0) for k, v in emulator.counters["ops"].items()}
    assert len(result.deleted) == 149 and result.failed == []
    assert ops.get("batch") == 2                    # 100 + 49 calls
    assert ops.get("files.delete") == 149           # the inner calls
    # folder lookups + one listing page + two batches
    assert result.requests <= 6, (result.requests, ops)
    assert [f["name"] for f in emulator.state.all_files()
            if f["name"].startswith("m_")] == ["m_150.pt"]


def test_min_free_against_the_emulators_quota(drive_remote, emulator, tmp_path):
    seed(drive_remote, tmp_path, {f"m_{i}.pt": 1000 for i in range(1, 11)})
    emulator.configure(quota_limit=10_500)          # 500 bytes free
    policy = PrunePolicy(keep_last=1, min_free=3000)
    trash_only = prune(drive_remote, SUB, policy=policy, lock_dir=tmp_path / "l")
    assert trash_only.deleted == [] and not trash_only.plan.budget_met
    assert "trash frees nothing" in trash_only.plan.notes[0]
    done = prune(drive_remote, SUB, policy=policy, permanent=True, lock_dir=tmp_path / "l")
    assert [e.name for e in done.deleted] == ["m_1.pt", "m_2.pt", "m_3.pt"]
    assert done.plan.free_after == 3500 and drive_remote.quota().free == 3500
    # a trashed file counts until the trash is emptied
    drive_remote.delete(f"{SUB}/m_10.pt")
    assert drive_remote.quota().trash == 1000
    plan = prune(drive_remote, SUB, policy=PrunePolicy(keep_last=1, min_free=5000),
                 empty_trash=True, lock_dir=tmp_path / "l")
    assert [e.name for e in plan.deleted] == ["m_4.pt"]   # 3500 + 1000 trash + 1000
    assert drive_remote.quota().free == 5500


# ---- the lock ----------------------------------------------------------------------------
def test_a_second_run_on_the_same_folder_is_refused(remote, tmp_path):
    seed(remote, tmp_path, DARKNET)
    locks = tmp_path / "locks"
    holder = FolderLock(lock_path(locks, remote.address, SUB), "test")
    with holder:
        with pytest.raises(LockedError, match="another drivesync run holds the lock"):
            prune(remote, SUB, policy=PrunePolicy(keep_last=1), lock_dir=locks)
        # another folder is not blocked
        prune(remote, "", policy=PrunePolicy(keep_last=1), lock_dir=locks, dry_run=True)
    assert len(prune(remote, SUB, policy=PrunePolicy(keep_last=1), lock_dir=locks).deleted) == 9


def test_two_concurrent_cli_runs_exit_8(local_remote, tmp_path, capsys):
    """A second process (cron overlap) is refused with exit code 8 while one holds the lock."""
    seed(local_remote, tmp_path, DARKNET)
    state = Path(os.environ["DRIVESYNC_STATE_DIR"])
    folder = local_remote.root / SUB
    script = textwrap.dedent(f"""
        import sys, time
        from drivesync.checkpoints.lock import FolderLock, lock_path
        with FolderLock(lock_path({str(state)!r}, "local:" + {str(folder)!r}, "")):
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert main(["prune", str(folder), "--keep-last", "1", "--yes"]) == 8
        assert "holds the lock" in capsys.readouterr().err
        assert len(names(local_remote)) == len(DARKNET)
    finally:
        proc.communicate("\n", timeout=10)
    assert main(["prune", str(folder), "--keep-last", "1", "--yes", "-q"]) == 0
    assert len(names(local_remote)) == len(DARKNET) - 9


# ---- latest ----------------------------------------------------------------------------
def test_latest_skips_partial_zero_size_and_in_flight_files(remote, tmp_path):
    seed(remote, tmp_path, {"y_1000.weights": 100, "y_2000.weights": 100,
                            "y_3000.weights": b"", "y_last.weights": 40, "notes.txt": 3})
    if remote.address.startswith("local:"):   # an upload still in flight, as the remote writes it
        (remote.root / SUB / temp_name("y_4000.weights")).write_bytes(b"x" * 100)
    found = find_latest(remote, SUB)
    assert found.entry.name == "y_2000.weights" and found.number == 2000
    assert find_latest(remote, SUB, family="y").entry.name == "y_2000.weights"
    with pytest.raises(NotFound, match="no complete checkpoint"):
        find_latest(remote, SUB, family="other")


def test_latest_prefers_final(remote, tmp_path):
    seed(remote, tmp_path, {"y_1000.weights": 100, "y_final.weights": 100,
                            "y_last.weights": 100})
    assert find_latest(remote, SUB).entry.name == "y_final.weights"



def test_latest_recursive_finds_the_run_written_last(remote, tmp_path):
    """runs/detect/train/weights and train2/weights: --recursive looks below the folder,
    judges truncation per run (train2's small last.pt is its own family) and picks the
    checkpoint written last; without it the folder holds none (exit 3 with a hint)."""
    seed(remote, tmp_path, {"train/weights/last.pt": 300, "train/weights/best.pt": 300,
                            "darknet/yolo_1000.weights": 50}, sub="runs")
    seed(remote, tmp_path, {"train2/weights/last.pt": 120, "notes/readme.txt": 5},
         sub="runs", written=SETTLED + 100)
    with pytest.raises(NotFound, match="or use --recursive"):
        find_latest(remote, "runs")
    found = find_latest(remote, "runs", recursive=True)
    assert found.entry.path == "runs/train2/weights/last.pt"
    assert find_latest(remote, "runs", recursive=True, family="yolo").entry.path == (
        "runs/darknet/yolo_1000.weights")
    with pytest.raises(NotFound, match="or below it"):
        find_latest(remote, "runs/notes", recursive=True)
    dest = tmp_path / "got"
    dest.mkdir()
    pulled = pull_latest(remote, "runs", dest=dest, recursive=True)
    assert pulled.entry.path == "runs/train2/weights/last.pt"
    assert (dest / "last.pt").read_bytes() == payload("train2/weights/last.pt", 120)


def test_cli_latest_recursive(local_remote, tmp_path, capsys):
    seed(local_remote, tmp_path, {"exp/weights/last.pt": 64}, sub="runs")
    runs = str(local_remote.root / "runs")
    assert main(["latest", runs, "-q"]) == 3
    assert "or use --recursive" in capsys.readouterr().err
    assert main(["latest", runs, "--recursive", "-q"]) == 0
    assert capsys.readouterr().out.strip() == f"{runs}/exp/weights/last.pt"

class Interrupt:
    """A progress subscriber that stops the download after the first block (our seam)."""

    def on_start(self, **_):
        pass

    def on_progress(self, *, files=0, bytes=0):  # noqa: A002 - the Progress protocol
        if bytes:
            raise KeyboardInterrupt

    def on_done(self):
        pass


def test_pull_latest_interrupted_then_resumed(remote, tmp_path):
    from drivesync.hashing import CHUNK
    from drivesync.remotes.partial import BLOCK

    size = max(BLOCK, CHUNK) + 300_000      # more than one download block on both remotes
    seed(remote, tmp_path, {"y_1000.weights": size, "y_last.weights": size})
    want = hashlib.md5(payload("y_last.weights", size)).hexdigest()
    dest = tmp_path / "pulled"
    dest.mkdir()
    with pytest.raises(KeyboardInterrupt):
        pull_latest(remote, SUB, dest=dest, progress=Interrupt())
    partial = dest / temp_name("y_last.weights")
    assert not (dest / "y_last.weights").exists()          # never a half-written file
    assert 0 < partial.stat().st_size < size
    found = pull_latest(remote, SUB, dest=dest)
    assert found.entry.name == "y_last.weights"
    assert hashlib.md5((dest / "y_last.weights").read_bytes()).hexdigest() == want
    assert not partial.exists()


# ---- CLI -----------------------------------------------------------------------------
def test_cli_prune_json(remote, tmp_path, cli_env, capsys):
    seed(remote, tmp_path, DARKNET)
    code = main(["prune", address(remote), "--keep-last", "3", "--max-bytes", "400",
                 "--yes", "--json", *cli_env])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    # 12 checkpoints... 11 x 64 = 704 bytes; down to <= 400 -> delete the 5 oldest
    assert doc["executed"] and doc["ok"] and doc["budget_met"]
    assert [d["path"] for d in doc["deleted"]] == [f"y_{i}.weights"
                                                  for i in (100, 200, 300, 400, 500)]
    assert doc["bytes_freed"] == 5 * 64 and doc["checkpoint_bytes_after"] == 6 * 64
    assert sorted(doc["ignored"]) == ["notes.txt", "yolov3.weights"]
    assert all(d["reason"] for d in doc["kept"] + doc["deleted"])
    assert doc["requests"] >= 2
    assert len(names(remote)) == len(DARKNET) - 5


def test_cli_prune_without_yes_off_a_terminal_only_reports(remote, tmp_path, cli_env, capsys):
    seed(remote, tmp_path, DARKNET)
    assert main(["prune", address(remote), "--keep-last", "1", *cli_env]) == 0
    out = capsys.readouterr().out
    assert "no --yes and stdin is not a terminal" in out and "delete " in out
    assert len(names(remote)) == len(DARKNET)
    assert main(["prune", address(remote), "--keep-last", "1", "--dry-run", "--json",
                 *cli_env]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert not doc["executed"] and len(doc["would_delete"]) == 9 and doc["deleted"] == []


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer, deleted", [("y\n", 9), ("n\n", 0)])
def test_cli_prune_asks_on_a_terminal(local_remote, tmp_path, monkeypatch, capsys,
                                      answer, deleted):
    seed(local_remote, tmp_path, DARKNET)
    monkeypatch.setattr(sys, "stdin", FakeTerminal(answer))
    assert main(["prune", str(local_remote.root / SUB), "--keep-last", "1"]) == 0
    out = capsys.readouterr().out
    assert "delete 9 files" in out
    assert len(names(local_remote)) == len(DARKNET) - deleted


def test_cli_bad_size_is_a_usage_error(local_remote, capsys):
    assert main(["prune", str(local_remote.root), "--max-bytes", "lots"]) == 2
    assert "--max-bytes: expected a size like 15G" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--keep-last", "-1"], "--keep-last must be 0 or more, got -1"),
    (["--keep-every", "0"], "--keep-every must be 1 or more, got 0"),
    (["--min-age", "-5"], "--min-age must be >= 0 seconds, got -5.0"),
    (["--min-age", "nan"], "--min-age must be >= 0 seconds, got nan"),
    (["--recursive", "--min-free", "1G"], "--min-free cannot be combined with --recursive"),
])
def test_cli_bad_numbers_name_their_flag(local_remote, capsys, flags, message):
    assert main(["prune", str(local_remote.root), "--yes", *flags]) == 2
    assert message in capsys.readouterr().err


def test_cli_latest(remote, tmp_path, cli_env, capsys):
    assert main(["latest", address(remote), *cli_env]) == 3       # folder missing
    seed(remote, tmp_path, {"y_1000.weights": 100, "y_2000.weights": 100, "y_last.weights": 7})
    capsys.readouterr()
    assert main(["latest", address(remote), "-q", *cli_env]) == 0
    assert capsys.readouterr().out.strip() == f"{address(remote)}/y_2000.weights"
    assert main(["latest", address(remote), "--json", *cli_env]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["path"], doc["family"], doc["role"], doc["number"]) == (
        "y_2000.weights", "y", "numbered", 2000)
    assert main(["latest", address(remote), "--family", "zz", *cli_env]) == 3
    dest = str(tmp_path / "w") + "/"
    assert main(["latest", address(remote), "--pull", dest, *cli_env]) == 0
    assert capsys.readouterr().out.strip().endswith("w/y_2000.weights")
    assert (tmp_path / "w" / "y_2000.weights").read_bytes() == payload("y_2000.weights", 100)


# ---- min_age: checkpoints still being written --------------------------------------------
def test_prune_never_deletes_a_checkpoint_younger_than_min_age(remote, tmp_path):
    """Files written just now (a trainer writing into the folder) survive --keep-last 0."""
    seed(remote, tmp_path, DARKNET, written=None)
    policy = PrunePolicy(keep_last=0, min_age=60)
    young = prune(remote, SUB, policy=policy, lock_dir=tmp_path / "l")
    assert young.deleted == [] and len(names(remote)) == len(DARKNET)
    assert all("younger than --min-age 60s" in d.reason for d in young.plan.keep)
    later = prune(remote, SUB, policy=policy, lock_dir=tmp_path / "l", now=time.time() + 3600)
    assert len(later.deleted) == 10                 # everything but _last (and the others)


def test_latest_prefers_a_settled_checkpoint(remote, tmp_path):
    seed(remote, tmp_path, {"y_1000.weights": 100, "y_2000.weights": 100})
    seed(remote, tmp_path, {"y_last.weights": 100}, written=None)
    assert find_latest(remote, SUB).entry.name == "y_last.weights"
    assert find_latest(remote, SUB, min_age=60).entry.name == "y_2000.weights"
    assert find_latest(remote, SUB, min_age=60, now=time.time() + 61).entry.name == (
        "y_last.weights")


@pytest.mark.parametrize("min_age, deleted", [([], 0), (["--min-age", "0"], 9)])
def test_cli_min_age_defaults_to_60s_on_a_local_folder(local_remote, tmp_path, capsys,
                                                       min_age, deleted):
    seed(local_remote, tmp_path, DARKNET, written=None)
    folder = str(local_remote.root / SUB)
    assert main(["prune", folder, "--keep-last", "1", "--yes", *min_age]) == 0
    out = capsys.readouterr().out
    assert len(names(local_remote)) == len(DARKNET) - deleted
    if not deleted:
        assert "y_1000.weights  modified 0s ago, younger than --min-age 60s" in out
    # latest: only young files, so the newest young one, with a warning
    assert main(["latest", folder, *min_age]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("y_last.weights")
    assert ("y_last.weights: modified 0s ago, younger than --min-age 60s: may still be being "
            "written; no settled checkpoint to prefer" in captured.err) is not bool(min_age)
    assert main(["latest", folder, "--json", *min_age]) == 0
    assert json.loads(capsys.readouterr().out)["settled"] is bool(min_age)


def test_cli_min_age_is_0_on_drive(drive_remote, tmp_path, monkeypatch):
    """On Drive a file appears only once its upload completed: fresh files are settled."""
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    seed(drive_remote, tmp_path, DARKNET, written=None)
    assert main(["prune", address(drive_remote), "--keep-last", "1", "--yes", "-q",
                 "--endpoint", drive_remote.settings.api_endpoint]) == 0
    assert len(names(drive_remote)) == len(DARKNET) - 9


# ---- --recursive ---------------------------------------------------------------------------
RUNS = {f"{run}/weights/{name}": 50 for run in ("a", "b")
        for name in ("epoch1.pt", "epoch2.pt", "epoch3.pt", "last.pt")}
RUNS.update({"a/results.csv": 4, "a/weights/a_copy.txt": 3})


def test_recursive_prunes_each_folder_as_its_own_families(remote, tmp_path):
    seed(remote, tmp_path, RUNS)
    remote.list(SUB)                    # warm the Drive remote's folder-id cache
    start = remote.stats.requests
    result = prune(remote, SUB, policy=PrunePolicy(keep_last=1), recursive=True,
                   permanent=True, lock_dir=tmp_path / "l")
    # one listing per folder (5 folders), then one delete per file (local) or one batch
    assert remote.stats.requests - start <= 5 + 4
    assert sorted(e.path for e in result.deleted) == sorted(
        f"{SUB}/{r}/weights/epoch{i}.pt" for r in "ab" for i in (1, 2))
    assert names(remote, f"{SUB}/a/weights") == ["a_copy.txt", "epoch3.pt", "last.pt"]
    assert names(remote, f"{SUB}/b/weights") == ["epoch3.pt", "last.pt"]
    assert names(remote, f"{SUB}/a") == ["results.csv", "weights"]
    assert sorted(e.path for e in result.plan.ignored) == [f"{SUB}/a/weights/a_copy.txt"]


def test_recursive_takes_every_folders_lock_before_deleting(local_remote, tmp_path):
    seed(local_remote, tmp_path, RUNS)
    locks = tmp_path / "l"
    with FolderLock(lock_path(locks, local_remote.address, f"{SUB}/b/weights")):
        with pytest.raises(LockedError):
            prune(local_remote, SUB, policy=PrunePolicy(keep_last=1), recursive=True,
                  lock_dir=locks)
    assert len(names(local_remote, f"{SUB}/a/weights")) == 5      # nothing deleted anywhere
    with pytest.raises(UsageError, match="--min-free cannot be combined with --recursive"):
        prune(local_remote, SUB, policy=PrunePolicy(min_free=1), recursive=True,
              lock_dir=locks)


def test_cli_recursive_dry_run_and_the_hint_without_it(remote, tmp_path, cli_env, capsys):
    seed(remote, tmp_path, RUNS)
    assert main(["prune", address(remote), "--keep-last", "1", "--yes", "-q", *cli_env]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no checkpoints directly in" in captured.err and "(a, b)" in captured.err
    assert main(["prune", address(remote), "--recursive", "--keep-last", "1", "--dry-run",
                 *cli_env]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^delete +50 B +a/weights/epoch1.pt +older than the newest 1 numbered$",
                     out, re.M)
    assert "would free 200 B (4 files)" in out and "re-run with --yes" not in out
    assert main(["latest", address(remote), *cli_env]) == 3
    assert "it has subfolders (a, b)" in capsys.readouterr().err
    assert main(["prune", address(remote), "--yes", "--json", *cli_env]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kept"] == doc["deleted"] == [] and "use --recursive" in doc["notes"][0]


# ---- the CLI as cron and as a user with a wrong path ------------------------------------------
def test_cli_cron_prints_nothing_on_success_and_one_line_otherwise(local_remote, tmp_path,
                                                                    capsys):
    seed(local_remote, tmp_path, DARKNET)
    folder = str(local_remote.root / SUB)
    # -q without --yes off a terminal would silently do nothing forever: one warning line
    assert main(["prune", folder, "--keep-last", "1", "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "no --yes and stdin is not a terminal; would free" in captured.err
    assert main(["prune", folder, "--keep-last", "1", "-q", "--yes"]) == 0
    assert capsys.readouterr() == ("", "")
    assert len(names(local_remote)) == len(DARKNET) - 9
    with FolderLock(lock_path(Path(os.environ["DRIVESYNC_STATE_DIR"]), local_remote.address
                              + f"/{SUB}", "")):
        assert main(["prune", folder, "-q", "--yes"]) == 8
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1


def test_cli_empty_folder_says_so(remote, tmp_path, cli_env, capsys):
    remote.mkdir(SUB)
    assert main(["prune", address(remote), "--yes", *cli_env]) == 0
    out = capsys.readouterr().out
    first, second = out.splitlines()[:2]
    assert first.startswith("prune: ")                  # where, before anything is done
    assert second.startswith("no checkpoints in ") and "nothing to prune" in out
    assert "ACTION" not in out


def test_cli_remote_that_is_a_file(remote, tmp_path, cli_env, capsys):
    seed(remote, tmp_path, {"y_1000.weights": 10})
    target = f"{address(remote)}/y_1000.weights"
    for verb in (["prune", "--yes"], ["latest"]):
        assert main([verb[0], target, *verb[1:], *cli_env]) == 2
        err = capsys.readouterr().err
        assert err.strip() == (f"drivesync: error: {target} is a file, not a folder: give the "
                               f"folder that holds the checkpoints ({address(remote)})")
    assert main(["prune", f"{address(remote)}/nope", "--yes", *cli_env]) == 3
    assert "no such folder" in capsys.readouterr().err


def test_cli_failed_deletes_exit_4_with_one_document_or_one_line(drive_remote, emulator,
                                                                  tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    seed(drive_remote, tmp_path, DARKNET)
    argv = ["prune", address(drive_remote), "--keep-last", "1", "--yes", "--permanent",
            "--endpoint", drive_remote.settings.api_endpoint]
    emulator.inject("403daily", method="DELETE")      # one inner delete of the batch
    assert main(argv + ["--json"]) == 4
    captured = capsys.readouterr()
    doc = json.loads(captured.out)                        # exactly one document
    assert not doc["ok"] and len(doc["failed"]) == 1 and len(doc["deleted"]) == 9
    assert captured.err.count("\n") == 1 and "1 of 9 deletes failed" in captured.err
    seed(drive_remote, tmp_path, {"y_50.weights": 64})
    emulator.inject("403daily", method="DELETE")
    assert main(argv + ["-q"]) == 4
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "deletes failed (first: " in captured.err and "re-run prune" in captured.err


def test_cli_log_file_records_what_cron_did_with_timestamps(local_remote, tmp_path, capsys):
    """-q keeps cron's output empty; --log-file still gets each deletion, any error and the
    exit code, each line timestamped, in a file only the user can read."""
    seed(local_remote, tmp_path, DARKNET)
    folder = str(local_remote.root / SUB)
    log_file = tmp_path / "logs" / "prune.log"
    argv = ["prune", folder, "--keep-last", "1", "--yes", "-q", "--log-file", str(log_file)]
    assert main(argv) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["latest", folder + "/nope", "-q", "--log-file", str(log_file)]) == 3
    lines = log_file.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \d+ "
    assert all(re.match(stamp, line) for line in lines), lines
    body = [re.sub(stamp, "", line) for line in lines]
    assert body[0] == f"INFO start: drivesync {' '.join(argv)}"
    assert sum(line.startswith(f"INFO trashed {local_remote.address}/ckpt/y_")
               for line in body) == 9, body
    assert body[-4:-2] == ["INFO end: exit code 0", f"INFO start: drivesync latest {folder}/nope "
                           f"-q --log-file {log_file}"]
    assert body[-2] == f"ERROR {local_remote.address}/ckpt/nope: no such folder"
    assert body[-1] == "INFO end: exit code 3"
    assert log_file.stat().st_mode & 0o777 == 0o600
    assert "drivesync: error:" in capsys.readouterr().err   # the terminal still gets it
