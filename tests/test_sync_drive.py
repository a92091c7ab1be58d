"""push/pull/dedupe against the Drive emulator: faults, kill -9, quota, hostile names."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from drivesync.cli import main
from drivesync.errors import EXIT_QUOTA, QuotaExceeded
from drivesync.hashing import HashCache
from drivesync.remotes import open_remote
from drivesync.sync import dedupe, pull, push

TOKEN = "test-token"  # the token conftest gives the emulator

FOLDER_MIME = "application/vnd.google-apps.folder"


def md5(b):
    return hashlib.md5(b).hexdigest()


def make_files(root, n, size=200, big=0):
    files = {}
    for i in range(n):
        rel = f"d{i % 3}/f{i:03d}.bin"
        files[rel] = (f"{i:05d}".encode() * (size // 5 + i))[: size + i]
    if big:
        files["big.bin"] = os.urandom(big)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def live_files(emu):
    """{(parent name, name): [md5...]} of untrashed files in the emulator."""
    everything = emu.state.all_files()
    names = {f["id"]: f["name"] for f in everything}
    out = {}
    for f in everything:
        if f["mimeType"] == FOLDER_MIME or f.get("trashed"):
            continue
        out.setdefault((names.get(f["parents"][0], ""), f["name"]), []).append(f.get("md5Checksum"))
    return out


def assert_exactly_once(emu, files):
    got = live_files(emu)
    want = {(os.path.dirname(rel) or "ds", os.path.basename(rel)): [md5(d)]
            for rel, d in files.items()}
    assert got == want
    assert not any(name.startswith(".drivesync") for _, name in got)


def seed(emu, parent_id, name, data=None, *, folder=False, modified=None):
    meta = {"name": name, "parents": [parent_id]}
    if modified is not None:
        meta["modifiedTime"] = modified
    if folder:
        meta["mimeType"] = FOLDER_MIME
        return emu.state.create(meta).id
    w = emu.state.blobs.writer()
    w.write(data)
    return emu.state.create(meta, w.finish()).id


def test_push_with_faults_ends_with_every_file_once(tmp_path, emulator, drive_remote):
    src = tmp_path / "src"
    files = make_files(src, 24, big=700 * 1024)  # big goes resumable (threshold 512 KiB)
    emulator.configure(fail_rate=0.25, fault_kinds=("500", "503", "429", "403rate", "drop"),
                       seed=7)
    emulator.inject("expire_session", count=1)
    res = push(src, remote=drive_remote, path="ds", jobs=4, hash_cache=HashCache(None))
    emulator.configure(fail_rate=0.0)
    assert res.failed == 0, res.problems
    assert res.retries > 0 and emulator.counters["faults"] > 0
    assert_exactly_once(emulator, files)


def test_rerun_removes_duplicates_left_by_someone_else(tmp_path, emulator, drive_remote):
    src = tmp_path / "src"
    files = make_files(src, 3)
    push(src, remote=drive_remote, path="ds", hash_cache=HashCache(None))
    d0 = next(f["id"] for f in emulator.state.all_files() if f["name"] == "d0")
    seed(emulator, d0, "f000.bin", files["d0/f000.bin"])     # an identical twin
    seed(emulator, d0, "f000.bin", b"half-baked")            # a stale other version
    res = push(src, remote=drive_remote, path="ds", hash_cache=HashCache(None))
    assert res.duplicates_removed == 2 and res.uploaded == 0
    assert_exactly_once(emulator, files)


@pytest.mark.slow
def test_push_killed_with_sigkill_then_rerun(tmp_path, emulator, drive_settings):
    src = tmp_path / "src"
    files = make_files(src, 40)
    emulator.configure(latency=0.01)
    env = dict(os.environ, DRIVESYNC_TOKEN=TOKEN, DRIVESYNC_BACKOFF_BASE="0.01",
               DRIVESYNC_BACKOFF_CAP="0.05")
    cmd = [sys.executable, "-m", "drivesync", "push", str(src), "drive:space_Colab/ds",
           "--endpoint", emulator.url, "--write-rate", "25", "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if sum(len(v) for v in live_files(emulator).values()) >= 10:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = sum(len(v) for v in live_files(emulator).values())
    assert 10 <= done < len(files)
    remote = open_remote("drive:space_Colab", settings=drive_settings)
    res = push(src, remote=remote, path="ds", hash_cache=HashCache(None))
    assert res.skipped >= 10 and res.failed == 0
    assert_exactly_once(emulator, files)
    remote.close()


def test_quota_exceeded_stops_with_resume_message(tmp_path, emulator, monkeypatch, capsys):
    src = tmp_path / "src"
    files = make_files(src, 9, size=1000)
    emulator.configure(quota_limit=4500)
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    argv = ["push", str(src), "drive:space_Colab/ds", "--endpoint", emulator.url,
            "--write-rate", "0", "--jobs", "1"]
    assert main(argv) == EXIT_QUOTA
    err = capsys.readouterr().err
    assert "left to upload" in err and "Re-run the same command" in err
    assert "Traceback" not in err
    emulator.configure(quota_limit=None)
    assert main(argv) == 0
    assert_exactly_once(emulator, files)


def test_quota_exceeded_from_the_library(tmp_path, emulator, drive_remote):
    src = tmp_path / "src"
    make_files(src, 6, size=1000)
    emulator.inject("quota", count=50)
    with pytest.raises(QuotaExceeded) as info:
        push(src, remote=drive_remote, path="ds", jobs=2,
             hash_cache=HashCache(None))
    result = info.value.outcome
    assert result.left_files >= 1 and "Re-run" in str(info.value)


def test_pull_hostile_names_stay_inside(tmp_path, emulator, drive_remote):
    top = seed(emulator, emulator.state.root_id, "space_Colab", folder=True)
    ds = seed(emulator, top, "ds", folder=True)
    for name in ("../evil", "a/b", "CON", "..", ".", "x\x00y", "", "ok.txt",
                 ".drivesync-x", "nul.txt", "a\\b", "ctl\x01.txt"):
        seed(emulator, ds, name, name.encode() + b"!")
    sub = seed(emulator, ds, "..", folder=True)
    seed(emulator, sub, "inner", b"inner")
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "ok.txt.dir")
    res = pull(drive_remote, dest, path="ds", hash_cache=HashCache(None))
    assert res.failed == 0, res.problems
    assert os.listdir(outside) == []
    assert not (tmp_path / "evil").exists()
    written = []
    for dirpath, _dirs, names in os.walk(dest):
        for n in names:
            p = os.path.realpath(os.path.join(dirpath, n))
            assert os.path.commonpath([str(dest.resolve()), p]) == str(dest.resolve())
            written.append(os.path.relpath(os.path.join(dirpath, n), dest))
    assert "ok.txt" in written and "_CON" in written and "_nul.txt" in written
    assert (dest / "_CON").read_bytes() == b"CON!"
    assert all("\x00" not in w and "\x01" not in w for w in written)
    # Names no path can hold are pulled under look-alike names, never left out.
    shown = {"../evil": "..\uff0fevil", "a/b": "a\uff0fb", ".": "\uff0e", "x\x00y": "x\u2400y",
             "": "\u2205", "a\\b": "a\\b"}  # "\\" is a plain character on Linux
    for name, local in shown.items():
        assert (dest / local).read_bytes() == name.encode() + b"!", name
    # the file ".." and the folder ".." share one local name: one of them gets " (2)"
    # (which one depends on their modified times and ids, both random here)
    dots = "\uff0e\uff0e"
    as_file, as_dir = (dots, dots + " (2)") if (dest / dots).is_file() else (dots + " (2)", dots)
    assert (dest / as_file).read_bytes() == b"..!"
    assert (dest / as_dir / "inner").read_bytes() == b"inner"  # the folder ".."
    assert sorted(written) == sorted(
        ["ok.txt", "_CON", "_nul.txt", "ctl_.txt", as_file, as_dir + "/inner"]
        + list(shown.values()))
    again = pull(drive_remote, dest, path="ds", hash_cache=HashCache(None))
    assert again.downloaded == 0 and again.skipped == 12 and not again.problems


def test_pull_keeps_both_same_named_files(tmp_path, emulator, drive_remote):
    top = seed(emulator, emulator.state.root_id, "space_Colab", folder=True)
    seed(emulator, top, "a.txt", b"older", modified="2024-01-01T00:00:00.000Z")
    seed(emulator, top, "a.txt", b"newer", modified="2024-02-01T00:00:00.000Z")
    dest = tmp_path / "dest"
    res = pull(drive_remote, dest, hash_cache=HashCache(None))
    assert (dest / "a.txt").read_bytes() == b"older"
    assert (dest / "a (2).txt").read_bytes() == b"newer"
    assert any("share this name" in r for _, r in res.warnings)
    again = pull(drive_remote, dest, hash_cache=HashCache(None))
    assert again.downloaded == 0 and again.skipped == 2


def test_dedupe_files_and_folders(emulator, drive_remote):
    top = seed(emulator, emulator.state.root_id, "space_Colab", folder=True)
    seed(emulator, top, "a.txt", b"same", modified="2024-01-01T00:00:00.000Z")
    seed(emulator, top, "a.txt", b"same", modified="2024-03-01T00:00:00.000Z")
    seed(emulator, top, "b.txt", b"one", modified="2024-01-01T00:00:00.000Z")
    seed(emulator, top, "b.txt", b"two", modified="2024-03-01T00:00:00.000Z")
    old = seed(emulator, top, "imgs", folder=True, modified="2024-01-01T00:00:00.000Z")
    new = seed(emulator, top, "imgs", folder=True, modified="2024-02-01T00:00:00.000Z")
    seed(emulator, old, "x.jpg", b"x")
    seed(emulator, new, "x.jpg", b"x")         # identical: dropped
    seed(emulator, new, "y.jpg", b"y")         # moved over
    seed(emulator, new, "z.jpg", b"z-new")
    seed(emulator, old, "z.jpg", b"z-old")     # different: both kept
    dry = dedupe(drive_remote, dry_run=True)
    assert dry.plan == {"delete": 1, "merge": 1, "deleted_items": 1}
    assert len(live_files(emulator)) == 5 and len(dry.conflicts) == 1
    res = dedupe(drive_remote, rename=True)
    assert res.deleted == 1 and res.merged == 1 and res.renamed == 1 and res.failed == 0
    got = live_files(emulator)
    assert got == {("space_Colab", "a.txt"): [md5(b"same")],
                   ("space_Colab", "b.txt"): [md5(b"one")],
                   ("space_Colab", "b (2).txt"): [md5(b"two")],
                   ("imgs", "x.jpg"): [md5(b"x")], ("imgs", "y.jpg"): [md5(b"y")],
                   ("imgs", "z.jpg"): [md5(b"z-old")], ("imgs", "z (2).jpg"): [md5(b"z-new")]}
    folders = [f for f in emulator.state.all_files()
               if f["mimeType"] == FOLDER_MIME and not f["trashed"] and f["name"] != "space_Colab"]
    assert [f["id"] for f in folders] == [old]
    assert dedupe(drive_remote).plan == {"deleted_items": 0}


def test_push_delete_is_batched(tmp_path, emulator, drive_remote):
    src = tmp_path / "src"
    for i in range(105):
        (src / "many").mkdir(parents=True, exist_ok=True)
        (src / "many" / f"{i:03d}.txt").write_bytes(b"%d" % i)
    push(src, remote=drive_remote, path="ds", jobs=8, hash_cache=HashCache(None))
    for i in range(4, 105):
        os.remove(src / "many" / f"{i:03d}.txt")
    res = push(src, remote=drive_remote, path="ds", delete=True,
               hash_cache=HashCache(None))
    assert res.deleted == 101 and res.failed == 0 and res.uploaded == 0
    assert res.requests <= 8  # a listing of 2 folders + 2 batches, not 101 deletes
    assert sorted(n for _, n in live_files(emulator)) == ["000.txt", "001.txt", "002.txt",
                                                          "003.txt"]
    trashed = [f for f in emulator.state.all_files() if f.get("trashed")]
    assert len(trashed) == 101  # --delete trashes: recoverable for 30 days


def _interrupt(cmd, emulator, *, ready, env_extra=None):
    """Run the CLI in a subprocess, send SIGINT once ``ready()``; (rc, stderr, seconds to stop)."""
    env = dict(os.environ, DRIVESYNC_TOKEN=TOKEN, DRIVESYNC_BACKOFF_BASE="0.01",
               DRIVESYNC_BACKOFF_CAP="0.05", DRIVESYNC_CHUNK_SIZE=str(256 * 1024),
               DRIVESYNC_RESUMABLE_THRESHOLD=str(256 * 1024), **(env_extra or {}))
    proc = subprocess.Popen([sys.executable, "-m", "drivesync", *cmd, "--endpoint", emulator.url],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not ready() and proc.poll() is None:
        time.sleep(0.01)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err.decode(), time.monotonic() - t0


@pytest.mark.slow
def test_ctrl_c_stops_push_at_once_and_a_rerun_finishes(tmp_path, emulator, drive_remote):
    src = tmp_path / "src"
    files = {f"f{i}.bin": os.urandom(1536 * 1024) for i in range(6)}
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    emulator.configure(bandwidth=1024 * 1024)  # 1.5 s per file and connection
    rc, err, took = _interrupt(["push", str(src), "drive:space_Colab/ds", "-q"], emulator,
                               ready=lambda: emulator.counters["bytes_in"] >= 1024 * 1024)
    assert rc == 130 and "re-run the same command" in err and "Traceback" not in err
    assert took < 1.0  # the 4 uploads in flight were cut, not finished
    live = [f for f in emulator.state.all_files() if f["name"] in files]
    assert all(f["md5Checksum"] == md5(files[f["name"]]) for f in live)  # nothing partial
    assert len(live) < len(files)
    emulator.configure(bandwidth=None)
    res = push(src, remote=drive_remote, path="ds", hash_cache=HashCache(None))
    assert res.failed == 0
    assert_exactly_once(emulator, {f"ds/{n}": d for n, d in files.items()})


@pytest.mark.slow
def test_ctrl_c_stops_pull_at_once_and_a_rerun_finishes(tmp_path, emulator, drive_remote):
    files = {f"f{i}.bin": os.urandom(1536 * 1024) for i in range(4)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        drive_remote.upload(tmp_path / name, f"ds/{name}")
    emulator.configure(bandwidth=1024 * 1024)
    dest = tmp_path / "dest"
    sent = emulator.counters["bytes_out"]
    rc, err, took = _interrupt(["pull", "drive:space_Colab/ds", str(dest), "-q"], emulator,
                               ready=lambda: emulator.counters["bytes_out"] > sent + 2**20)
    assert rc == 130 and "re-run the same command" in err and "Traceback" not in err
    assert took < 1.0
    for p in dest.iterdir():  # only whole, verified files under their own names
        assert p.name.startswith(".drivesync-partial-") or p.read_bytes() == files[p.name]
    emulator.configure(bandwidth=None)
    res = pull(drive_remote, dest, path="ds", hash_cache=HashCache(None))
    assert res.failed == 0
    assert sorted(os.listdir(dest)) == sorted(files)
    assert all((dest / n).read_bytes() == d for n, d in files.items())


def test_pull_merges_same_named_folders_into_one_local_folder(tmp_path, emulator, monkeypatch,
                                                              capsys):
    """Drive allows two folders `imgs` (two clients made it at once): pull fetches the
    files of both, nested same-named folders too, into one local folder; an identical
    copy is pulled once, a different same-named file is kept as `a (2).jpg`."""
    top = seed(emulator, emulator.state.root_id, "space_Colab", folder=True)
    ds = seed(emulator, top, "ds", folder=True)
    old = seed(emulator, ds, "imgs", folder=True, modified="2024-01-01T00:00:00.000Z")
    new = seed(emulator, ds, "imgs", folder=True, modified="2024-02-01T00:00:00.000Z")
    seed(emulator, old, "a.jpg", b"a", modified="2024-01-01T00:00:00.000Z")
    seed(emulator, new, "a.jpg", b"A", modified="2024-02-01T00:00:00.000Z")
    seed(emulator, old, "same.txt", b"s")
    seed(emulator, new, "same.txt", b"s")
    seed(emulator, new, "b.jpg", b"b")
    sub_old = seed(emulator, old, "000", folder=True, modified="2024-01-01T00:00:00.000Z")
    sub_new = seed(emulator, new, "000", folder=True, modified="2024-02-01T00:00:00.000Z")
    seed(emulator, sub_old, "x.jpg", b"x")
    seed(emulator, sub_new, "y.jpg", b"y")
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    dest = tmp_path / "dest"
    argv = ["pull", "drive:space_Colab/ds", str(dest), "--endpoint", emulator.url]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 remote folders share this name; their files were pulled into one local " in err
    assert "drivesync dedupe drive:space_Colab/ds" in err and "Traceback" not in err
    assert "2 identical remote copies; pulled once" in err
    assert sorted(os.listdir(dest / "imgs")) == ["000", "a (2).jpg", "a.jpg", "b.jpg",
                                                  "same.txt"]
    assert ((dest / "imgs/a.jpg").read_bytes(), (dest / "imgs/a (2).jpg").read_bytes()) == (
        b"a", b"A")
    assert sorted(os.listdir(dest / "imgs/000")) == ["x.jpg", "y.jpg"]
    assert main([*argv, "--json"]) == 0                 # a re-run downloads nothing
    doc = json.loads(capsys.readouterr().out)
    assert doc["downloaded"] == 0 and doc["skipped"] == 6
    assert main(["dedupe", "drive:space_Colab/ds", "--endpoint", emulator.url, "-y"]) == 0
    shutil.rmtree(dest)
    assert main(argv) == 0
    assert "share this name" not in capsys.readouterr().err
    assert sorted(os.listdir(dest / "imgs/000")) == ["x.jpg", "y.jpg"]


def test_dedupe_trashes_identical_copies_in_one_batch(emulator, drive_remote):
    top = seed(emulator, emulator.state.root_id, "space_Colab", folder=True)
    for i in range(30):
        seed(emulator, top, "w.pt", b"same", modified=f"2024-01-{i + 1:02d}T00:00:00.000Z")
    res = dedupe(drive_remote)
    assert res.deleted == 29 and res.failed == 0 and res.requests <= 4
    assert live_files(emulator) == {("space_Colab", "w.pt"): [md5(b"same")]}


def test_google_docs_and_shortcuts_are_never_pulled_replaced_or_deleted(tmp_path, emulator,
                                                                         monkeypatch, capsys):
    """A Doc, a Sheet or a shortcut in the Drive folder has no bytes (no md5): pull skips
    it with a note, and push --delete (even with a local file of the same name) leaves it."""
    top = seed(emulator, emulator.state.root_id, "space_Colab", folder=True)
    ds = seed(emulator, top, "ds", folder=True)
    target = seed(emulator, ds, "a.txt", b"abc")
    for name, mime in [("notes", "application/vnd.google-apps.document"),
                       ("results", "application/vnd.google-apps.spreadsheet"),
                       ("a link", "application/vnd.google-apps.shortcut")]:
        emulator.state.create({"name": name, "parents": [ds], "mimeType": mime,
                               "shortcutDetails": {"targetId": target}})  # a real-looking one
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    dest = tmp_path / "dest"
    address = "drive:space_Colab/ds"
    assert main(["pull", address, str(dest), "--endpoint", emulator.url]) == 0
    err = capsys.readouterr().err
    assert err.count("a Google Docs file or shortcut (no bytes to sync): skipped") == 3
    assert sorted(os.listdir(dest)) == ["a.txt"]
    (dest / "results").write_text("a local file that happens to share the Sheet's name")
    assert main(["push", str(dest), address, "--delete", "--endpoint", emulator.url,
                 "--json", "--yes"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["plan"].get("deleted_items", 0) == 0
    live = [f for f in emulator.state.all_files() if ds in f["parents"] and not f["trashed"]]
    names = sorted(f["name"] for f in live)
    assert names == ["a link", "a.txt", "notes", "results", "results"], names
    assert sum(1 for f in live if f["mimeType"].startswith("application/vnd.google-apps")) == 3
