"""Pure and local parts of launch: weights checks, command building, the root link,
the darknet binary check, and the colab-cell text."""

from __future__ import annotations

import io
import os
import struct
import zipfile

import pytest

from drivesync.cli import main
from drivesync.errors import ConfigError, UsageError
from drivesync.launch import colab, trainers
from drivesync.launch.weights import (
    CheckpointError,
    check_checkpoint,
    check_darknet,
    check_pt,
    parse_darknet_header,
)


def _weights(path, *, major=0, minor=2, seen=400, payload=b"x" * 64):
    head = struct.pack("<iii", major, minor, 0)
    head += struct.pack("<q", seen) if major * 10 + minor >= 2 else struct.pack("<i", seen)
    path.write_bytes(head + payload)
    return path


# ---- weights ----------------------------------------------------------------
@pytest.mark.parametrize("major,minor,size", [(0, 2, 20), (0, 1, 16), (1, 0, 20), (0, 0, 16)])
def test_darknet_header_width_follows_version(major, minor, size):
    head = struct.pack("<iii", major, minor, 5)
    head += struct.pack("<q", 12345) if size == 20 else struct.pack("<i", 12345)
    h = parse_darknet_header(head + b"rest")
    assert (h.major, h.minor, h.revision, h.seen, h.size) == (major, minor, 5, 12345, size)
    assert h.iteration(64) == 12345 // 64 and h.iteration(None) is None


def test_darknet_iteration_and_name_consistency(tmp_path):
    info = check_darknet(_weights(tmp_path / "yolo_100.weights", seen=6400), batch=64)
    assert info.iteration == 100 and info.seen == 6400
    with pytest.raises(CheckpointError, match="name says 100"):
        check_darknet(_weights(tmp_path / "yolo_100.weights", seen=6464), batch=64)
    # without a batch the iteration is unknown: only 'seen' is exposed, no name check
    assert check_darknet(tmp_path / "yolo_100.weights").iteration is None
    assert check_darknet(_weights(tmp_path / "yolo_last.weights", seen=99), batch=64).iteration == 1


@pytest.mark.parametrize("data", [b"", b"\x00" * 11, struct.pack("<iii", 0, 2, 0) + b"\x00" * 4,
                                  struct.pack("<iiiq", 0, 2, 0, 64)])
def test_truncated_darknet_files_are_refused(tmp_path, data):
    p = tmp_path / "yolo_last.weights"
    p.write_bytes(data)
    with pytest.raises(CheckpointError):
        check_darknet(p, batch=64)


def test_garbage_header_is_refused(tmp_path):
    p = tmp_path / "a.weights"
    p.write_bytes(struct.pack("<iiiq", 7000000, 2, 0, 1) + b"x" * 10)
    with pytest.raises(CheckpointError, match="implausible"):
        check_darknet(p)


def _pt(path, members=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in (members or {"archive/data.pkl": b"p" * 500}).items():
            z.writestr(name, data)
    path.write_bytes(buf.getvalue())
    return path


def test_pt_zip_checks(tmp_path):
    good = _pt(tmp_path / "last.pt")
    assert check_pt(good, load=False).kind == "pt"
    assert check_checkpoint(good, load=False).size == good.stat().st_size
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        check_pt(cut, load=False)
    flipped = bytearray(good.read_bytes())
    i = bytes(flipped).index(b"p" * 20)
    flipped[i] ^= 0xFF
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="CRC"):
        check_pt(bad, load=False)
    notzip = tmp_path / "x.pt"
    notzip.write_bytes(b"\x80\x02 old pickle")
    with pytest.raises(CheckpointError, match="PK"):
        check_pt(notzip)
    with pytest.raises(CheckpointError, match="not a darknet"):
        check_checkpoint(tmp_path / "notes.txt")


# ---- command building --------------------------------------------------------
def test_darknet_command_fresh_resume_map_extra():
    base = dict(darknet="/content/darknet/darknet", data="obj.data", cfg="y.cfg",
                line_buffered=False)
    assert trainers.darknet_command(**base) == [
        "/content/darknet/darknet", "detector", "train", "obj.data", "y.cfg", "-dont_show"]
    assert trainers.darknet_command(**base, weights="/w/y_last.weights", map=True,
                                    extra=["-gpus", "0,1", "-clear"]) == [
        "/content/darknet/darknet", "detector", "train", "obj.data", "y.cfg",
        "/w/y_last.weights", "-dont_show", "-map", "-gpus", "0,1", "-clear"]
    # flags the user already passed are not doubled
    argv = trainers.darknet_command(**base, map=True, extra=["-map", "-dont_show"])
    assert argv.count("-map") == 1 and argv.count("-dont_show") == 1


def test_darknet_command_line_buffered_when_stdbuf_exists():
    argv = trainers.darknet_command(darknet="d", data="a", cfg="b")
    if argv[0] != "d":
        assert os.path.basename(argv[0]) == "stdbuf" and argv[1:4] == ["-oL", "-eL", "d"]


def test_ultralytics_command_fresh_and_resume():
    assert trainers.ultralytics_command(data="data.yaml", model="yolov8n.pt", epochs=50,
                                        project="/content/runs", name="exp", save_period=5,
                                        extra=["imgsz=640"]) == [
        "yolo", "train", "data=data.yaml", "model=yolov8n.pt", "epochs=50",
        "project=/content/runs", "name=exp", "exist_ok=True", "save_period=5", "imgsz=640"]
    assert trainers.ultralytics_command(data="d.yaml", model="m.pt", resume_from="/w/last.pt",
                                        extra=["batch=8"]) == [
        "yolo", "train", "resume", "model=/w/last.pt", "batch=8"]
    with pytest.raises(ConfigError, match="key=value"):
        trainers.ultralytics_command(data="d", model="m", extra=["--epochs"])
    with pytest.raises(ConfigError):
        trainers.ultralytics_command(model="m.pt")


def test_data_and_cfg_parsing(tmp_path):
    data = tmp_path / "obj.data"
    data.write_text("classes = 2\ntrain = t.txt  # comment\nbackup = backup/\n")
    assert trainers.backup_dir(data, cwd=tmp_path) == tmp_path / "backup"
    data.write_text("classes = 2\n")
    with pytest.raises(ConfigError, match="backup"):
        trainers.backup_dir(data)
    data.write_text("classes 2\n")
    with pytest.raises(ConfigError, match=r"obj.data:1"):
        trainers.read_data_file(data)
    cfg = tmp_path / "y.cfg"
    cfg.write_text("[net]\n# Testing\nbatch=64\nsubdivisions=16\nmax_batches = 6000\n"
                   "[convolutional]\nbatch=1\n")
    assert trainers.cfg_int(cfg, "batch") == 64 and trainers.cfg_int(cfg, "max_batches") == 6000
    assert trainers.cfg_int(cfg, "nope") is None
    with pytest.raises(ConfigError, match="not found"):
        trainers.read_cfg_net(tmp_path / "missing.cfg")


# ---- environment -------------------------------------------------------------
def test_root_link_is_idempotent_and_refuses_to_clobber(tmp_path):
    target, other = tmp_path / "drive" / "space_Colab", tmp_path / "local"
    target.mkdir(parents=True)
    other.mkdir()
    link = tmp_path / "WORK1"
    assert colab.ensure_link(link, target).action == "created"
    assert colab.ensure_link(link, target).action == "exists"
    assert os.path.realpath(link) == str(target)
    with pytest.raises(UsageError, match="already links"):
        colab.ensure_link(link, other)
    assert os.path.realpath(link) == str(target)
    assert colab.ensure_link(link, other, force=True).action == "replaced"
    assert os.path.realpath(link) == str(other)
    real = tmp_path / "realdir"
    real.mkdir()
    (real / "keep.txt").write_text("user data")
    with pytest.raises(UsageError, match="not a link"):
        colab.ensure_link(real, target)
    with pytest.raises(UsageError, match="non-empty"):
        colab.ensure_link(real, target, force=True)
    assert (real / "keep.txt").read_text() == "user data"
    empty = tmp_path / "emptydir"
    empty.mkdir()
    assert colab.ensure_link(empty, target, force=True).action == "replaced"
    with pytest.raises(ConfigError, match="does not exist"):
        colab.ensure_link(tmp_path / "x", tmp_path / "missing")


def test_mount_uses_the_given_mounter_only_when_missing(tmp_path):
    calls = []

    def fake_mount(point):  # our own seam: google.colab is not importable here
        calls.append(point)
        (tmp_path / "drive" / "MyDrive").mkdir(parents=True)

    assert colab.ensure_drive_mounted(tmp_path / "drive", mount=fake_mount) == \
        tmp_path / "drive" / "MyDrive"
    colab.ensure_drive_mounted(tmp_path / "drive", mount=fake_mount)
    assert calls == [str(tmp_path / "drive")]
    if not colab.in_colab():
        with pytest.raises(UsageError, match="not mounted"):
            colab.ensure_drive_mounted(tmp_path / "nodrive")


def test_prepare_darknet(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        colab.prepare_darknet(tmp_path / "darknet")
    script = tmp_path / "darknet"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    info = colab.prepare_darknet(script)
    assert os.access(script, os.X_OK)
    assert info.gpu is None  # a script is not an ELF binary: nothing claimed
    py = os.path.realpath(os.sys.executable)
    elf = colab.prepare_darknet(py)
    if elf.gpu is not None:  # ldd present: the python binary has no CUDA
        assert elf.gpu is False and "GPU=1" in elf.detail


def test_launch_usage_errors(tmp_path, capsys):
    assert main(["launch", "darknet", "--data", "x", "--cfg", "y", "--keep-last", "0",
                 "--no-mount"]) == 2
    assert "--keep-last" in capsys.readouterr().err
    missing = main(["launch", "darknet", "--data", str(tmp_path / "obj.data"), "--cfg", "y",
                    "--darknet", str(tmp_path / "nope"), "--no-mount"])
    err = capsys.readouterr().err
    assert missing == 2 and "darknet binary" in err and "Traceback" not in err


def _torch_like_pickle(tmp_path, ckpt: dict) -> bytes:
    """A pickle that names torch/ultralytics classes and tensor storages, as torch.save
    writes it, made without torch: the classes live in stand-in modules while dumping."""
    import pickle
    import sys
    import types

    made = {name: types.ModuleType(name) for name in ("torch", "ultralytics", "ultralytics.nn")}
    for mod, cls in [("torch._utils", "_rebuild_tensor_v2"),
                     ("ultralytics.nn.tasks", "DetectionModel")]:
        m = types.ModuleType(mod)
        klass = type(cls, (), {"__reduce__": lambda self: (type(self), ())})
        klass.__module__, klass.__qualname__ = mod, cls
        setattr(m, cls, klass)
        made[mod] = m
    saved = {k: sys.modules.get(k) for k in made}
    sys.modules.update(made)
    try:
        ckpt = {k: (made[v[0]].__dict__[v[1]]() if isinstance(v, tuple) and v[0] in made else v)
                for k, v in ckpt.items()}
        buf = io.BytesIO()

        class P(pickle.Pickler):
            def persistent_id(self, obj):  # a tensor's storage, as torch.save writes it
                return ("storage", "FloatStorage", "0", "cpu", 4) if obj == "TENSOR" else None

        P(buf, protocol=2).dump(ckpt)
        return buf.getvalue()
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_pt_fields_are_read_without_torch_and_nothing_in_the_pickle_runs(tmp_path):
    """Without torch the epoch, the finished flag and save_dir still come from data.pkl;
    a class the pickle names is never imported and a payload never runs."""
    import os
    import pickle

    mid = _torch_like_pickle(tmp_path, {
        "epoch": 2, "model": ("ultralytics.nn.tasks", "DetectionModel"),
        "optimizer": {"state": {0: "TENSOR"}}, "train_args": {"save_dir": "/content/runs/exp"},
        "ema": ("torch._utils", "_rebuild_tensor_v2")})
    info = check_pt(_pt(tmp_path / "last.pt", {"archive/data.pkl": mid}), load=False)
    assert (info.epoch, info.finished, info.save_dir) == (2, False, "/content/runs/exp")
    assert info.describe() == "epoch 3 done"
    done = _torch_like_pickle(tmp_path, {"epoch": -1, "optimizer": None})
    assert check_pt(_pt(tmp_path / "done.pt", {"last/data.pkl": done}), load=False).finished
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"epoch": 1, "x": _Payload(str(marker))}, protocol=2)
    info = check_pt(_pt(tmp_path / "evil.pt", {"archive/data.pkl": evil}), load=False)
    assert info.epoch == 1 and not marker.exists()
    pickle.loads(pickle.dumps(_Payload(str(tmp_path / "armed")), protocol=2))
    assert os.path.exists(tmp_path / "armed")  # the payload is live: plain pickle runs it
    junk = check_pt(_pt(tmp_path / "junk.pt"), load=False)   # not a pickle: unknown
    assert junk.epoch is None and junk.describe() == "epoch ?"


class _Payload:
    """Unpickled by pickle.loads it would create a file; the stand-in unpickler must not."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_mount_folder_of_a_shared_drive_address():
    """Colab's mount shows shared drives under /content/drive/Shareddrives/NAME."""
    from drivesync.config import Settings
    from drivesync.launch.runner import _top_folder

    s = Settings()
    assert _top_folder("drive:space_Colab/data", s) == "space_Colab"
    assert _top_folder("drive:@TeamData/space_Colab/data", s) == \
        "../Shareddrives/TeamData/space_Colab"
    assert _top_folder("drive:@TeamData", s).rstrip("/") == "../Shareddrives/TeamData"
