"""Before the trainer starts: the dataset is there, backups go to local disk; prompt exits."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import Heard

from drivesync.cli import main
from drivesync.errors import ConfigError
from drivesync.launch import preflight
from drivesync.launch.process import SignalForwarder

FAKE = Path(__file__).parent / "fake_trainer.py"
BATCH = 4



def _dataset(root: Path, n: int = 5) -> list:
    (root / "obj").mkdir(parents=True)
    imgs = []
    for i in range(n):
        p = root / "obj" / f"{i}.jpg"
        p.write_bytes(b"\xff\xd8img")
        imgs.append(p)
    return imgs


def _darknet(tmp_path: Path, body: str = "") -> Path:
    d = tmp_path / "darknet"
    d.write_text(body or f'#!/bin/sh\nexec "{sys.executable}" -u "{FAKE}" darknet "$@"\n')
    d.chmod(0o755)
    return d


def _files(tmp_path: Path, *, train: str, backup: Path) -> None:
    (tmp_path / "obj.data").write_text(f"classes = 1\ntrain = {train}\nbackup = {backup}\n")
    (tmp_path / "yolo.cfg").write_text(f"[net]\nbatch={BATCH}\nmax_batches=4\n")


def _argv(tmp_path: Path, *extra: str) -> list:
    return ["launch", "darknet", "--data", str(tmp_path / "obj.data"), "--cfg",
            str(tmp_path / "yolo.cfg"), "--darknet", str(tmp_path / "darknet"),
            "--work-dir", str(tmp_path / "work"), "--interval", "0.03", "--no-mount", "-v", *extra]


def test_missing_listed_images_stop_before_the_trainer(tmp_path, capsys):
    imgs = _dataset(tmp_path / "ds")
    (tmp_path / "train.txt").write_text("\n".join(map(str, imgs + [tmp_path / "gone.jpg"])))
    _files(tmp_path, train=str(tmp_path / "train.txt"), backup=tmp_path / "backup")
    _darknet(tmp_path)
    assert main(_argv(tmp_path)) != 0
    err = capsys.readouterr().err
    assert "1 of 6 sampled (of 6) listed files do not exist" in err and "gone.jpg" in err
    assert "Traceback" not in err and not (tmp_path / "backup").exists()


def test_an_unstaged_packed_shard_is_refused(tmp_path, capsys):
    ds = tmp_path / "ds" / "obj"
    ds.mkdir(parents=True)
    (ds / "000.tar").write_bytes(b"tar")
    (ds / "000.tar.json").write_text("{}")
    (ds / "001").mkdir()
    (ds / "001" / "b.jpg").write_bytes(b"x")
    (tmp_path / "train.txt").write_text(f"{ds}/000/a.jpg\n{ds}/001/b.jpg\n")
    _files(tmp_path, train=str(tmp_path / "train.txt"), backup=tmp_path / "backup")
    _darknet(tmp_path)
    assert main(_argv(tmp_path, "--no-stage")) != 0
    err = capsys.readouterr().err
    assert "packed shards that are not unpacked" in err and "000.tar" in err
    assert "without --no-stage" in err


def test_sample_spreads_over_a_long_list(tmp_path):
    paths = [tmp_path / f"{i}.jpg" for i in range(10000)]
    for p in paths[::50]:
        p.write_bytes(b"x")
    sample = preflight._sample(paths)
    assert len(sample) <= preflight.SAMPLE + 1 and sample[-1] == paths[-1]
    with pytest.raises(ConfigError, match="listed files do not exist"):
        preflight.check_paths(sample, source="train.txt", total=len(paths))


def test_ultralytics_yaml_paths_are_checked(tmp_path):
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "images" / "train" / "a.jpg").write_bytes(b"x")
    y = tmp_path / "data.yaml"
    y.write_text(f"path: {root}\ntrain: images/train\nval: images/val  # missing\nnames:\n  0: a\n")
    with pytest.raises(ConfigError, match="val"):
        preflight.check_ultralytics_data(y)
    (root / "images" / "val").mkdir()
    (root / "images" / "val" / "b.jpg").write_bytes(b"x")
    assert preflight.check_ultralytics_data(y) == 2
    assert preflight.check_ultralytics_data(tmp_path / "coco8.yaml") == 0  # a built-in name


def test_no_stage_backup_goes_to_local_disk_never_the_dataset(tmp_path, local_remote, capsys,
                                                              monkeypatch):
    drive = tmp_path / "MyDrive" / "space_Colab"
    imgs = _dataset(drive / "data")
    (drive / "data" / "train.txt").write_text("\n".join(map(str, imgs)))
    _files(tmp_path, train=str(drive / "data" / "train.txt"), backup=drive / "data" / "backup")
    _darknet(tmp_path)
    monkeypatch.setenv("FAKE_INTERVAL", "0.0")
    code = main(_argv(tmp_path, "--no-stage", "--drive-dir", str(drive), "--weights",
                      str(local_remote.root)))
    out = capsys.readouterr().out
    assert code == 0, out
    local = tmp_path / "work" / "backup"
    assert f"it writes to {local} instead" in out
    assert not (drive / "data" / "backup").exists()
    assert (local / "yolo_final.weights").exists()
    assert local_remote.stat("yolo_final.weights").size > 0
    assert f"backup = {drive / 'data' / 'backup'}" in (tmp_path / "obj.data").read_text()


def test_trainer_dying_at_once_exits_promptly(tmp_path, local_remote, capsys):
    _files(tmp_path, train="", backup=tmp_path / "backup")
    (tmp_path / "obj.data").write_text(f"classes = 1\nbackup = {tmp_path / 'backup'}\n")
    _darknet(tmp_path, "#!/bin/sh\necho 'Error: cannot open cfg'\nexit 1\n")
    argv = _argv(tmp_path, "--weights", str(local_remote.root))
    argv[argv.index("--interval") + 1] = "5"  # the default: no 15 s of final polls
    t0 = time.monotonic()
    assert main(argv) == 1
    assert time.monotonic() - t0 < 3.0
    assert "exit code 1" in capsys.readouterr().out


def test_ctrl_c_after_the_trainer_stops_only_warns_while_uploading():
    rec = Heard()
    fwd = SignalForwarder(progress=rec)
    fwd.finishing = True
    with pytest.raises(KeyboardInterrupt):  # nothing uploading: stop at once, no claim
        fwd(signal.SIGINT, None)
    assert rec.warnings == []
    fwd = SignalForwarder(progress=rec)
    fwd.finishing = True
    fwd.uploading = lambda: True
    fwd(signal.SIGINT, None)
    assert "finishing the upload" in rec.warnings[0]
    with pytest.raises(KeyboardInterrupt):
        fwd(signal.SIGINT, None)


def test_bare_darknet_name_is_the_file_in_the_working_directory(tmp_path, local_remote,
                                                                 capsys, monkeypatch):
    """`--darknet darknet` with ./darknet there: run that file (PATH lookup gave exit 127)."""
    (tmp_path / "obj.data").write_text(f"classes = 1\nbackup = {tmp_path / 'backup'}\n")
    (tmp_path / "yolo.cfg").write_text(f"[net]\nbatch={BATCH}\nmax_batches=2\n")
    _darknet(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAKE_INTERVAL", "0.0")
    argv = _argv(tmp_path, "--weights", str(local_remote.root))
    argv[argv.index("--darknet") + 1] = "darknet"
    assert main(argv) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "running: " in out and f"{tmp_path / 'darknet'} detector train" in out
    assert "reached iteration 2" in out


@pytest.mark.parametrize("net,why", [
    ("batch=1\nsubdivisions=1", "You set incorrect value batch=1 for Training"),
    ("batch=64\nsubdivisions=24", "not divisible by subdivisions=24"),
    ("batch=4\nwidth=100\nheight=96", "width=100 is not a multiple of 32"),
])
def test_a_cfg_darknet_would_refuse_stops_launch_with_the_reason(tmp_path, capsys, net, why):
    (tmp_path / "obj.data").write_text(f"classes = 1\nbackup = {tmp_path / 'backup'}\n")
    (tmp_path / "yolo.cfg").write_text(f"[net]\n{net}\nmax_batches=2\n")
    _darknet(tmp_path)
    assert main(_argv(tmp_path)) != 0
    err = capsys.readouterr().err
    assert why in err and "Traceback" not in err
