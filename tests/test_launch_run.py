"""launch end to end with tests/fake_trainer.py: mirror, resume, kill -9, staging."""

from __future__ import annotations

import os
import random
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drivesync.checkpoints.latest import complete_checkpoints
from drivesync.cli import main
from drivesync.hashing import HashCache
from drivesync.launch.weights import check_darknet
from drivesync.remotes.local import LocalRemote

HERE = Path(__file__).parent
FAKE = HERE / "fake_trainer.py"
BATCH = 4


def _setup(tmp_path: Path, *, max_batches: int) -> dict:
    backup = tmp_path / "backup"
    (tmp_path / "obj.data").write_text(f"classes = 1\nbackup = {backup}\n")
    (tmp_path / "yolo.cfg").write_text(
        f"[net]\nbatch={BATCH}\nsubdivisions=1\nmax_batches={max_batches}\n[yolo]\nclasses=1\n")
    darknet = tmp_path / "darknet"
    darknet.write_text(f'#!/bin/sh\nexec "{sys.executable}" -u "{FAKE}" darknet "$@"\n')
    darknet.chmod(0o644)  # launch must chmod +x it
    yolo = tmp_path / "yolo"
    yolo.write_text(f'#!/bin/sh\nexec "{sys.executable}" -u "{FAKE}" yolo "$@"\n')
    yolo.chmod(0o755)
    return {"backup": backup, "darknet": darknet, "yolo": yolo}


def _argv(tmp_path: Path, weights: str, *extra: str) -> list:
    return ["launch", "darknet", "--data", str(tmp_path / "obj.data"),
            "--cfg", str(tmp_path / "yolo.cfg"), "--darknet", str(tmp_path / "darknet"),
            "--weights", weights, "--work-dir", str(tmp_path / "work"),
            "--interval", "0.03", "--no-mount", "-v", *extra]


@pytest.fixture
def local_remote(tmp_path):
    """A local remote whose md5 cache lives in memory, so the launch under test (which
    opens its own remote on the same folder) never waits on this one's sqlite lock."""
    remote = LocalRemote(tmp_path / "remote-root", hash_cache=HashCache(None))
    remote.root.mkdir()
    return remote


def test_launch_darknet_mirrors_and_resumes(tmp_path, local_remote, capsys, monkeypatch):
    paths = _setup(tmp_path, max_batches=12)
    monkeypatch.setenv("FAKE_INTERVAL", "0.01")
    code = main(_argv(tmp_path, str(local_remote.root), "--", "-clear"))
    out = capsys.readouterr().out
    assert code == 0, out
    assert os.access(paths["darknet"], os.X_OK)
    assert "FAKE starting from scratch" in out and "FAKE args -dont_show -clear" in out
    names = {e.name for e in local_remote.list("")}
    assert {"yolo_final.weights", "yolo_last.weights", "yolo_10.weights"} <= names
    assert "summary: trainer exit code 0; reached iteration 12" in out
    # same content is never uploaded twice under one name
    mirrored = re.findall(r"mirrored (\S+) .*md5=(\w+)", out)
    assert len(mirrored) == len(set(mirrored))
    # raise max_batches: the relaunch resumes from the newest complete checkpoint
    (tmp_path / "yolo.cfg").write_text(f"[net]\nbatch={BATCH}\nmax_batches=16\n")
    code = main(_argv(tmp_path, str(local_remote.root)))
    out = capsys.readouterr().out
    assert code == 0
    assert "resuming from yolo_final.weights" in out
    assert "FAKE resumed from yolo_final.weights at iteration 12" in out
    assert "reached iteration 16" in out


def test_trainer_exit_code_is_returned(tmp_path, local_remote, capsys, monkeypatch):
    _setup(tmp_path, max_batches=3)
    monkeypatch.setenv("FAKE_EXIT_CODE", "3")
    monkeypatch.setenv("FAKE_INTERVAL", "0.0")
    assert main(_argv(tmp_path, str(local_remote.root))) == 3
    assert "exit code 3" in capsys.readouterr().out


def test_corrupt_newest_checkpoint_is_skipped(tmp_path, local_remote, capsys, monkeypatch):
    _setup(tmp_path, max_batches=6)
    root = local_remote.root
    good = struct.pack("<iiiq", 0, 2, 0, 5 * BATCH) + b"g" * 100
    (root / "yolo_5.weights").write_bytes(good)
    # newer by mtime, same size (so "complete" by listing) but its header disagrees with its name
    bad = struct.pack("<iiiq", 0, 2, 0, 3 * BATCH) + b"b" * 100
    (root / "yolo_10.weights").write_bytes(bad)
    os.utime(root / "yolo_5.weights", (time.time() - 100, time.time() - 100))
    monkeypatch.setenv("FAKE_INTERVAL", "0.0")
    assert main(_argv(tmp_path, str(root))) == 0
    cap = capsys.readouterr()
    assert "skipping checkpoint yolo_10.weights" in cap.err and "name says 10" in cap.err
    assert "resuming from yolo_5.weights" in cap.out and "1 newer skipped" in cap.out
    assert "FAKE resumed from yolo_5.weights at iteration 5" in cap.out


def test_ultralytics_fresh_then_resume(tmp_path, local_remote, capsys, monkeypatch):
    paths = _setup(tmp_path, max_batches=1)
    monkeypatch.setenv("FAKE_INTERVAL", "0.01")
    argv = ["launch", "ultralytics", "--data", "data.yaml", "--model", "yolov8n.pt",
            "--epochs", "4", "--project", str(tmp_path / "runs"), "--name", "exp",
            "--yolo", str(paths["yolo"]), "--weights", str(local_remote.root),
            "--work-dir", str(tmp_path / "work"), "--interval", "0.03", "--no-mount", "-v"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "FAKE fresh run" in out and f"project={tmp_path / 'runs'}" in out
    assert "mirrored last.pt" in out
    assert [e.name for e in local_remote.list("")] == ["last.pt", "logs"]
    logs = local_remote.list("logs")  # the trainer's whole output, mirrored
    assert len(logs) == 1 and logs[0].name.startswith("train-") and logs[0].size > 0
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "resuming from last.pt" in out
    assert f"train resume model={tmp_path / 'work' / 'resume' / 'last.pt'}" in out
    assert "FAKE Resuming training" in out and "from epoch 5 to 4" in out


@pytest.mark.slow
@pytest.mark.parametrize("which", ["local", "drive"])
def test_kill9_relaunch_cycles(tmp_path, which, request, monkeypatch):
    """kill -9 launch + trainer at random moments; every relaunch resumes from the newest
    checkpoint that was complete on the remote; the remote never holds zero."""
    remote = request.getfixturevalue(f"{which}_remote")
    _setup(tmp_path, max_batches=400)
    env = dict(os.environ, FAKE_INTERVAL="0.01", FAKE_LAST_EVERY="3", FAKE_NUM_EVERY="7",
               FAKE_PAYLOAD="30000", FAKE_CHUNKS="10", FAKE_CHUNK_SLEEP="0.004",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    if which == "drive":
        target = "drive:space_Colab/backup"
        s = request.getfixturevalue("drive_settings")
        env.update(DRIVESYNC_API_ENDPOINT=s.api_endpoint, DRIVESYNC_TOKEN=s.token,
                   DRIVESYNC_BACKOFF_BASE="0.01", DRIVESYNC_BACKOFF_CAP="0.05",
                   DRIVESYNC_WRITE_RATE="0")
        sub = "backup"
    else:
        target, sub = str(remote.root), ""
    rng = random.Random(1234)
    seen_uploads: list = []
    first_mirror = False
    expected = None
    for cycle in range(10):
        # a killed launch leaves its lease with a fresh heartbeat: the user who
        # relaunches at once knows that runtime is gone
        proc = subprocess.Popen([sys.executable, "-m", "drivesync",
                                 *_argv(tmp_path, target, "--force-take-over")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=str(tmp_path))
        # mostly kill while the trainer runs (startup takes seconds on a loaded machine),
        # sometimes before it starts (while launch lists, downloads, resumes)
        lines: list = []
        reader = threading.Thread(target=lambda out, got: got.extend(iter(out.readline, b"")),
                                  args=(proc.stdout, lines), daemon=True)
        reader.start()
        if rng.random() < 0.8:
            t0 = time.monotonic()
            while not any(b"running:" in ln for ln in lines) and time.monotonic() - t0 < 30 \
                    and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.1, 0.9))
        else:
            time.sleep(rng.uniform(0.2, 1.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(timeout=10)
        out = b"".join(lines).decode()
        print(f"--- cycle {cycle}\n" + out[-800:])  # shown when the test fails
        if expected is not None:
            # what launch chose (the kill may even come before it chose: nothing to judge)
            assert "no usable checkpoint" not in out, f"cycle {cycle}: {out[:2000]}"
            m = re.search(r"resuming from (\S+): .*?iteration (\d+)", out)
            assert m or "running:" not in out, f"cycle {cycle}: no resume in\n{out[:2000]}"
            assert m is None or int(m.group(2)) == expected, (cycle, m.group(0), expected)
            fake = re.search(r"FAKE resumed from (\S+) at iteration (\d+)", out)
            assert fake is None or int(fake.group(2)) == expected, (cycle, fake.group(0))
        seen_uploads += re.findall(r"mirrored (\S+) .*md5=(\w+)", out)
        try:
            entries = remote.list(sub)
        except Exception:  # noqa: BLE001 - the folder does not exist before the first mirror
            entries = []
        complete = complete_checkpoints(entries)
        first_mirror = first_mirror or bool(complete)
        if first_mirror:
            assert complete, f"cycle {cycle}: no complete checkpoint on the remote"
            iters = []
            for c in complete:
                local = tmp_path / "check" / c.entry.name
                remote.download(c.entry, local)
                iters.append(check_darknet(local, batch=BATCH).iteration)
            expected = iters[0]
            assert expected == max(iters), (cycle, [c.entry.name for c in complete], iters)
    assert first_mirror and expected and expected > 0
    assert len(seen_uploads) == len(set(seen_uploads)), "a checkpoint was uploaded twice"


def _spawn(tmp_path: Path, remote_root: Path, *extra: str, **env_extra: str):
    env = dict(os.environ, FAKE_INTERVAL="0.01", FAKE_LAST_EVERY="2", FAKE_NUM_EVERY="5",
               FAKE_PAYLOAD="20000", FAKE_CHUNKS="8", FAKE_CHUNK_SLEEP="0.003",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    env.update(env_extra)
    return subprocess.Popen([sys.executable, "-m", "drivesync",
                             *_argv(tmp_path, str(remote_root), *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd=str(tmp_path), start_new_session=True)


def _wait_for(pred, proc, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert proc.poll() is None, proc.communicate()[0].decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _remote_md5s(root: Path) -> dict:
    from drivesync.hashing import md5_file

    return {p.name: md5_file(p) for p in root.iterdir()
            if p.is_file() and not p.name.startswith(".drivesync")}


@pytest.mark.parametrize("sig,trap", [(signal.SIGTERM, True), (signal.SIGINT, False)])
def test_signal_is_forwarded_newest_mirrored_trainers_code_returned(tmp_path, local_remote,
                                                                    sig, trap):
    """The signal goes to launch only (as Colab's interrupt or `kill PID` sends it): launch
    passes it on, mirrors what the trainer left and exits with the trainer's code."""
    paths = _setup(tmp_path, max_batches=100000)
    env = {"FAKE_TRAP_TERM": "1", "FAKE_TERM_CODE": "3"} if trap else \
        {"FAKE_CHUNK_SLEEP": "0.02"}  # SIGINT lands mid-write: the file left is short
    proc = _spawn(tmp_path, local_remote.root, **env)
    _wait_for(lambda: len(_remote_md5s(local_remote.root)) >= 2, proc)
    os.kill(proc.pid, sig)
    out = proc.communicate(timeout=30)[0].decode()
    print(out[-3000:])
    assert "trainer stopped; mirroring the newest checkpoints" in out
    on_remote = _remote_md5s(local_remote.root)
    if trap:  # the trainer saved on SIGTERM and exited 3: everything it wrote is on Drive
        assert proc.returncode == 3 and "FAKE got SIGTERM" in out
        assert on_remote == _remote_md5s(paths["backup"])
        assert f"stopped by signal {int(sig)}" in out
    else:  # killed by SIGINT: 128 + 2; a file cut short is refused, Drive keeps whole ones
        assert proc.returncode == 130 and "KeyboardInterrupt" in out
    for name in on_remote:
        info = check_darknet(local_remote.root / name, batch=BATCH)
        assert (local_remote.root / name).stat().st_size == 20 + 20000, name
        assert info.iteration
    newest = max(paths["backup"].iterdir(), key=lambda p: p.stat().st_mtime_ns)
    if newest.stat().st_size == 20 + 20000:  # complete: it must be the copy on Drive
        assert on_remote[newest.name] == _remote_md5s(paths["backup"])[newest.name]
    else:
        assert "truncated" in out


def test_max_bytes_budget_holds_while_checkpoints_arrive(tmp_path, local_remote):
    """--keep-last 1 --max-bytes: after every mirrored checkpoint the folder fits (while
    one uploads, at most one checkpoint more), and it never holds zero complete ones."""
    _setup(tmp_path, max_batches=60)
    size, budget = 20 + 20000, 65000
    proc = _spawn(tmp_path, local_remote.root, "--keep-last", "1", "--max-bytes", str(budget))
    peak, first = 0, False
    while proc.poll() is None:
        entries = [e for e in local_remote.list("")] if local_remote.root.exists() else []
        total = sum(e.size for e in entries)
        peak = max(peak, total)
        first = first or bool(complete_checkpoints(entries))
        if first:
            assert complete_checkpoints(entries), entries
        time.sleep(0.005)
    out = proc.communicate()[0].decode()
    assert proc.returncode == 0, out
    assert "pruned" in out and first
    assert peak <= budget + size, peak
    final = {e.name: e.size for e in local_remote.list("")}
    assert sum(final.values()) <= budget, final
    # yolo_60 holds the same bytes as yolo_final: the policy keeps one copy
    assert {"yolo_final.weights", "yolo_last.weights"} <= set(final)
    assert any(re.fullmatch(r"yolo_\d+\.weights", n) for n in final), final


def test_first_darknet_checkpoint_cut_short_is_refused_by_the_cfg_size(tmp_path, local_remote,
                                                                       capsys, monkeypatch):
    """darknet killed while saving its first checkpoint: nothing was mirrored before it,
    so the size the cfg fixes (1x1 conv, 3 -> 6 channels: 20 + 4 * (6 + 18) bytes) is
    what proves the file short; it never reaches the remote."""
    _setup(tmp_path, max_batches=12)
    (tmp_path / "yolo.cfg").write_text(
        f"[net]\nbatch={BATCH}\nsubdivisions=1\nwidth=32\nheight=32\nchannels=3\nmax_batches=12\n"
        "[convolutional]\nsize=1\nfilters=6\nactivation=linear\n[yolo]\nclasses=1\n")
    monkeypatch.setenv("FAKE_INTERVAL", "0.0")
    monkeypatch.setenv("FAKE_PAYLOAD", str(4 * (6 + 18)))
    monkeypatch.setenv("FAKE_TRUNCATE_AT", "60")
    code = main(_argv(tmp_path, str(local_remote.root), "-v"))
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 137, out
    assert "FAKE killed while saving" in out
    assert ("not mirroring yolo_last.weights: 60 bytes, but the cfg makes every checkpoint "
            "116 bytes: truncated") in out
    assert not local_remote.root.exists() or [e.name for e in local_remote.list("")
                                              if not e.is_dir] == []
    # a short _last on the remote (written straight into the mount, cut by a kill), with
    # an older whole _10 beside it: resume falls back to the whole one, never the short one
    local_remote.root.mkdir(exist_ok=True)
    head = struct.pack("<iiiq", 0, 2, 0, 2 * BATCH)
    (local_remote.root / "yolo_last.weights").write_bytes(head + b"\0" * 40)
    whole = struct.pack("<iiiq", 0, 2, 0, 10 * BATCH) + b"\0" * 96
    (local_remote.root / "yolo_10.weights").write_bytes(whole)
    os.utime(local_remote.root / "yolo_10.weights", (time.time() - 60, time.time() - 60))
    monkeypatch.delenv("FAKE_TRUNCATE_AT")
    code = main(_argv(tmp_path, str(local_remote.root)))
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 0, out
    assert "resuming from yolo_10.weights" in out  # the listing already drops the short one
    assert "FAKE resumed from yolo_10.weights at iteration 10" in out
    assert "reached iteration 12" in out
    # only the short one: start from --pretrained, and say so
    (local_remote.root / "yolo_10.weights").unlink()
    (local_remote.root / "yolo_final.weights").unlink()
    (local_remote.root / "yolo_last.weights").write_bytes(head + b"\0" * 40)
    pre = tmp_path / "pre.conv"
    pre.write_bytes(struct.pack("<iiiq", 0, 2, 0, 0) + b"\0" * 96)
    code = main(_argv(tmp_path, str(local_remote.root), "--pretrained", str(pre)))
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 0, out
    assert ("skipping checkpoint yolo_last.weights: 60 bytes, but the cfg makes every "
            "checkpoint 116 bytes: truncated") in out
    assert ("no whole checkpoint on the remote (1 skipped); starting from --pretrained "
            f"{pre}") in out
    assert "FAKE starting from pretrained pre.conv" in out
    assert local_remote.stat("yolo_final.weights").size == 116


def test_json_keeps_stdout_for_the_document_and_the_trainer_on_stderr(tmp_path, local_remote,
                                                                       capsys, monkeypatch):
    """--json: stdout is the one JSON document; the trainer's output still shows, on stderr."""
    import json

    _setup(tmp_path, max_batches=3)
    monkeypatch.setenv("FAKE_INTERVAL", "0.0")
    assert main([*_argv(tmp_path, str(local_remote.root)), "--json"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["exit_code"] == 0 and doc["reached"] == "iteration 3"
    assert "FAKE starting from scratch" in cap.err and "drivesync: running" not in cap.out
