"""The README's path, as a user walks it, all through the CLI against the Drive emulator.

Desktop: generate a VOC set, ``drivesync prepare`` it (darknet cfg patched, lists under
``--root WORK1/NAME``), add a pretrained file, ``drivesync push --pack``. "Colab": a
``drivesync launch`` in a subprocess stages the packed dataset onto "local disk", links
the root to it (so every path prepare wrote resolves into the staged copy: the fake
trainers open each one), trains, mirrors; the runtime dies (``kill -9`` of the whole
process group, then /content and the link are wiped, as a new runtime would have them),
and a relaunch resumes from the newest complete checkpoint on Drive and finishes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivesync.checkpoints.latest import complete_checkpoints
from drivesync.cli import main
from drivesync.datasets.sample import make_sample_voc
from drivesync.hashing import md5_file
from drivesync.launch.weights import check_darknet

HERE = Path(__file__).parent
FAKE = HERE / "fake_trainer.py"
TOKEN = "test-token"  # conftest.TOKEN, which the emulator fixture expects
NAME = "voc"
BATCH = 4
STOP_AT = 45  # iterations of the fake darknet (prepare sets max_batches=6000)

BASE_CFG = HERE / "data" / "darknet" / "two-heads-tiny.cfg"  # prepare patches it for 3 classes


@pytest.fixture
def desktop(tmp_path, emulator, monkeypatch):
    """Steps 1-3 on the desktop: sample data -> prepare -> pretrained -> push --pack."""
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    ep = ["--endpoint", emulator.url]
    root = tmp_path / "WORK1"
    make_sample_voc(tmp_path / "sample", images=12)
    (tmp_path / "base.cfg").write_text(BASE_CFG.read_text())
    out = tmp_path / "out"
    assert main(["prepare", str(tmp_path / "sample"), str(out), "--format", "voc",
                 "--name", NAME, "--max-files", "10", "--root", str(root / NAME),
                 "--darknet-cfg", str(tmp_path / "base.cfg"), "--batch", str(BATCH),
                 "--subdivisions", "1", "-q"]) == 0
    ds = out / NAME
    cfg = next(ds.glob("*.cfg"))
    text = cfg.read_text()
    assert text.count("classes=3") == 2 and "filters=24" in text  # patched for 3 classes
    assert (ds / "obj.data").read_text().splitlines()[-1] == f"backup = {root / NAME}/backup"
    pretrained = struct.pack("<iiiq", 0, 2, 0, 0) + b"pretrained" * 100
    (ds / "yolov3-tiny.conv.11").write_bytes(pretrained)
    (ds / "yolov8n.pt").write_bytes(b"PK\x03\x04fake")
    assert main(["push", str(ds), f"drive:space_Colab/{NAME}", "--pack", "--write-rate", "0",
                 "-q", *ep]) == 0
    names = {f["name"] for f in emulator.state.all_files() if not f["trashed"]}
    assert {"000.tar", "000.tar.json", "obj.data", "train.txt", cfg.name} <= names
    env = dict(os.environ, DRIVESYNC_TOKEN=TOKEN, DRIVESYNC_API_ENDPOINT=emulator.url,
               DRIVESYNC_WRITE_RATE="0", DRIVESYNC_BACKOFF_BASE="0.01",
               DRIVESYNC_BACKOFF_CAP="0.05", FAKE_INTERVAL="0.02", FAKE_PAYLOAD="20000",
               FAKE_CHUNKS="4", FAKE_CHUNK_SLEEP="0.002",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    return {"tmp": tmp_path, "root": root, "cfg": cfg.name, "env": env, "emu": emulator}


def _wrapper(path: Path, mode: str) -> Path:
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -u "{FAKE}" {mode} "$@"\n')
    path.chmod(0o755)
    return path


def _colab_argv(d: dict, trainer: str, *args: str) -> list:
    tmp, root = d["tmp"], d["root"]
    return [sys.executable, "-m", "drivesync", "launch", trainer, *args,
            "--dataset", f"drive:space_Colab/{NAME}", "--root", str(root),
            "--stage-dir", str(tmp / "content" / "data"),
            "--work-dir", str(tmp / "content" / "drivesync"),
            "--no-mount", "--interval", "0.05", "-v"]


def _wipe_runtime(d: dict) -> None:
    """A new Colab runtime: /content is empty and the root link is gone."""
    shutil.rmtree(d["tmp"] / "content")
    os.unlink(d["root"])


def _run_until(argv: list, env: dict, cwd: Path, ready, timeout: float = 20.0) -> str:
    """Start a launch, wait until ``ready()`` is true, then kill -9 its process group."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd=str(cwd), start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "launch never got ready"
            time.sleep(0.02)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.communicate()[0].decode()


def _drive_files(emu, folder: str) -> list:
    ids = {f["id"] for f in emu.state.all_files() if f["name"] == folder and not f["trashed"]}
    return [f for f in emu.state.all_files() if set(f["parents"]) & ids and not f["trashed"]]


def _uploads(*outputs: str) -> list:
    return [m for out in outputs for m in re.findall(r"mirrored (\S+) .*md5=(\w+)", out)]


def test_desktop_to_colab_darknet(desktop, drive_remote, tmp_path):
    d, emu = desktop, desktop["emu"]
    darknet = _wrapper(tmp_path / "darknet", "darknet")
    argv = _colab_argv(
        d, "darknet", "--data", str(d["root"] / NAME / "obj.data"),
        "--cfg", str(d["root"] / NAME / d["cfg"]),
        "--pretrained", str(d["root"] / NAME / "yolov3-tiny.conv.11"),
        "--darknet", str(darknet), "--weights", "drive:space_Colab/backup")
    # 50 ms an iteration: a loaded machine still mirrors a numbered file before the end
    env = dict(d["env"], FAKE_STOP_AT=str(STOP_AT), FAKE_LAST_EVERY="3", FAKE_NUM_EVERY="10",
               FAKE_INTERVAL="0.05")

    def numbered_on_drive() -> bool:
        return any(re.search(r"_\d+\.weights$", f["name"]) for f in _drive_files(emu, "backup"))

    first = _run_until(argv, env, tmp_path, numbered_on_drive)
    staged = tmp_path / "content" / "data" / NAME
    # 8 plain files (lists, names, configs, the two pretrained), 24 files in 3 packed shards
    assert f"staged drive:space_Colab/{NAME} into {staged} (8 files, 3 packed shard(s) " \
        "unpacked)" in first, first
    assert "FAKE read 11 training images" in first  # every listed image opened, via the link
    assert "FAKE starting from pretrained yolov3-tiny.conv.11" in first
    assert os.path.realpath(d["root"]) == str(tmp_path / "content" / "data")

    # what a relaunch must pick: the newest complete checkpoint on Drive, by its header
    complete = complete_checkpoints(drive_remote.list("backup"))
    assert complete
    drive_remote.download(complete[0].entry, tmp_path / "newest")
    expected = check_darknet(tmp_path / "newest", batch=BATCH).iteration
    assert expected and expected < STOP_AT

    _wipe_runtime(d)
    # the dead runtime's lease is still fresh: a plain relaunch stops at once (exit 8),
    # before staging anything; the user who knows that runtime is gone forces it
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                          cwd=str(tmp_path), timeout=60)
    assert done.returncode == 8 and "leased by another launch" in done.stdout.decode()
    assert "staged" not in done.stdout.decode()
    out = subprocess.run(argv + ["--force-take-over"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path),
                         timeout=60).stdout.decode()
    assert "taking over the lease of owner" in out, out
    assert f"resuming from {complete[0].entry.name}" in out, out
    assert f"FAKE resumed from {complete[0].entry.name} at iteration {expected}" in out, out
    assert "FAKE read 11 training images" in out
    assert f"summary: trainer exit code 0; reached iteration {STOP_AT}" in out, out
    # the weights on Drive are the trainer's own final files, byte for byte
    stem = Path(d["cfg"]).stem
    backup = staged / "backup"
    for name in (f"{stem}_final.weights", f"{stem}_last.weights", f"{stem}_40.weights"):
        entry = drive_remote.stat(f"backup/{name}")
        assert entry.md5 == md5_file(backup / name), name
    final = tmp_path / "final.weights"
    drive_remote.download(drive_remote.stat(f"backup/{stem}_final.weights"), final)
    assert check_darknet(final, batch=BATCH).iteration == STOP_AT
    # no checkpoint uploaded twice across the two runtimes, no temp names left behind
    ups = _uploads(first, out)
    assert ups and len(ups) == len(set(ups)), ups
    assert not [f["name"] for f in emu.state.all_files() if f["name"].startswith(".drivesync")]


EPOCHS = 30


def test_desktop_to_colab_ultralytics(desktop, drive_remote, tmp_path):
    d, emu = desktop, desktop["emu"]
    yolo = _wrapper(tmp_path / "yolo", "yolo")
    runs = tmp_path / "content" / "runs"
    argv = _colab_argv(
        d, "ultralytics", "--data", str(d["root"] / NAME / "data.yaml"),
        "--model", str(d["root"] / NAME / "yolov8n.pt"), "--epochs", str(EPOCHS),
        "--project", str(runs), "--name", "exp", "--yolo", str(yolo),
        "--weights", "drive:space_Colab/runs")
    # an epoch outlasts the settle polls, under load too; with 30 of them the first run is
    # always killed long before it could finish (a slow mirror once let it reach the end)
    env = dict(d["env"], FAKE_INTERVAL="0.5")
    seen: set = set()

    def mirrored_twice() -> bool:  # a last.pt past the first epoch is on Drive
        seen.update(f["md5Checksum"] for f in _drive_files(emu, "runs") if f["name"] == "last.pt")
        return len(seen) >= 2

    first = _run_until(argv, env, tmp_path, mirrored_twice)
    assert "FAKE fresh run" in first and "FAKE read 12 images" in first, first
    assert "mirrored last.pt" in first
    # killed between the rename and the delete of the old copy, Drive holds two last.pt:
    # the relaunch resumes from the newer (stat would name the older)
    entry = max((e for e in drive_remote.list("runs") if e.name == "last.pt"),
                key=lambda e: e.modified)
    drive_remote.download(entry, tmp_path / "last.pt")
    import zipfile

    with zipfile.ZipFile(tmp_path / "last.pt") as z:
        epoch = int(z.read("fake/epoch"))
    _wipe_runtime(d)
    fast = dict(env, FAKE_INTERVAL="0.05")  # the relaunch only has to finish
    out = subprocess.run(argv + ["--force-take-over"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=fast, cwd=str(tmp_path),
                         timeout=60).stdout.decode()
    assert "resuming from last.pt" in out, out
    assert 1 <= epoch < EPOCHS - 1
    assert f"from epoch {epoch + 2} to {EPOCHS} total epochs" in out, out
    assert "FAKE read 12 images" in out  # the resumed run reads data.yaml through the link
    assert "summary: trainer exit code 0" in out, out
    with zipfile.ZipFile(runs / "exp" / "weights" / "last.pt") as z:
        assert int(z.read("fake/epoch")) == EPOCHS - 1
    assert drive_remote.stat("runs/last.pt").md5 == md5_file(runs / "exp" / "weights" / "last.pt")
    ups = _uploads(first, out)
    assert len(ups) == len(set(ups)), ups
