"""The dataset verbs through main(argv): exit codes, --json, files on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from drivesync.api import prepare
from drivesync.cli import main
from drivesync.datasets.sample import make_sample_voc, png_bytes


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return make_sample_voc(tmp_path_factory.mktemp("voc") / "VOC", images=30)


TINY = (Path(__file__).parent / "data" / "darknet" / "two-heads-tiny.cfg").read_text()


def run_json(capsys, argv):
    code = main(argv + ["--json"])
    return code, json.loads(capsys.readouterr().out)


def test_prepare_voc_one_command(voc, tmp_path, capsys):
    cfg = tmp_path / "yolov4-tiny.cfg"
    cfg.write_text(TINY)
    code, doc = run_json(
        capsys,
        [
            "prepare",
            str(voc),
            str(tmp_path / "out"),
            "--format",
            "voc",
            "--max-files",
            "20",
            "--darknet-cfg",
            str(cfg),
            "--batch",
            "64",
        ],
    )
    assert code == 0 and doc["ok"] is True
    assert doc["images"] == 30 and doc["classes"] == ["car", "dog", "person"]
    assert doc["shards"] == 3 and doc["train"] + doc["valid"] == 30 and doc["valid"] == 3
    assert doc["skipped_items"] == 0 and doc["report_path"].endswith("prepare-report.txt")
    ds = tmp_path / "out" / "VOC"
    for f in (
        "obj.names",
        "obj.data",
        "train.txt",
        "valid.txt",
        "data.yaml",
        "yolov4-tiny-VOC.cfg",
    ):
        assert (ds / f).is_file(), f
    first = (ds / "train.txt").read_text().splitlines()[0]
    assert first.startswith("/WORK1/VOC/00") and (ds / first[len("/WORK1/VOC/") :]).is_file()
    # background images (every tenth sample) have an empty label file beside them
    assert (ds / "000" / "img_0009.txt").read_text() == ""
    # run again: nothing to do, same answer
    code, again = run_json(
        capsys, ["prepare", str(voc), str(tmp_path / "out"), "-f", "voc", "--max-files", "20"]
    )
    assert code == 0 and again["kept"] == 30 and again["placed"] == 0


def test_bad_items_exit_4_and_are_in_the_report(voc, tmp_path, capsys):
    src = tmp_path / "VOC"
    shutil.copytree(voc, src)
    (src / "JPEGImages" / "img_0003.png").write_bytes(b"")
    (src / "Annotations" / "img_0004.xml").write_text("<annotation><object>", "utf-8")
    code, doc = run_json(capsys, ["prepare", str(src), str(tmp_path / "out"), "-f", "voc"])
    assert code == 4 and doc["ok"] is False
    assert doc["skipped_items"] == 2 and doc["images"] == 28
    report = (tmp_path / "out" / "prepare-report.txt").read_text()
    assert "img_0003.png" in report and "empty file (0 bytes)" in report
    assert "img_0004.xml:line 1" in report and "malformed XML" in report
    problems = json.loads((tmp_path / "out" / "prepare-report.json").read_text())["problems"]
    assert {p["reason"].split(":")[0] for p in problems} >= {"unreadable image", "malformed XML"}


def test_check_finds_problems(voc, tmp_path, capsys):
    out = tmp_path / "out"
    res = prepare(voc, out, fmt="voc", max_files=10, name="ds", mode="copy")  # we damage it below
    assert res.ok
    assert main(["check", str(out), "-q"]) == 0
    ds = out / "ds"
    (ds / "000" / "img_0000.txt").write_text("7 0.5 0.5 0.1 0.1\n0 0.5 0.5 0 0.1\n")  # class 7 of 3
    (ds / "000" / "img_0001.png").unlink()  # orphan label
    shutil.copy(ds / "000" / "img_0002.png", ds / "001" / "copy.png")  # duplicate + over limit
    (ds / "001" / "copy.txt").write_text("")
    (ds / "002" / "img_0011.png").write_bytes(b"\x89PNG garbage")  # unreadable
    code, doc = run_json(capsys, ["check", str(out)])
    assert code == 4 and doc["ok"] is False
    text = "\n".join(doc["problems"])
    assert "img_0000.txt:line 1: class id 7 out of range (0..2)" in text
    assert "img_0000.txt:line 2: values must be in [0, 1] with w, h > 0" in text
    assert "img_0001.txt: label without an image" in text
    assert "001: shard holds 12 files, over the limit of 10" in text
    assert "img_0011.png: unreadable image" in text
    assert "valid.txt" in text or "train.txt" in text  # the list names the deleted image
    assert doc["duplicates"] == 1 and any("same image as" in n for n in doc["notes"])


def test_convert_then_shard_then_configs(voc, tmp_path, capsys):
    flat, out = tmp_path / "flat", tmp_path / "out"
    assert main(["convert", str(voc), str(flat), "-f", "voc", "-q"]) == 0
    assert (flat / "classes.txt").read_text() == "car\ndog\nperson\n"
    assert len(list(flat.glob("*.png"))) == 30 and len(list(flat.glob("img_*.txt"))) == 30
    code, doc = run_json(capsys, ["shard", str(flat), str(out), "--name", "v", "--max-files", "8"])
    assert code == 0 and doc["images"] == 30 and doc["shards"] == 8 and doc["classes"][0] == "car"
    code, doc = run_json(
        capsys, ["configs", str(out), "--root", "/content/v", "--val-fraction", "0.5"]
    )
    assert code == 0 and doc["valid"] == 15
    assert (
        (out / "v" / "obj.data").read_text().startswith("classes = 3\ntrain = /content/v/train.txt")
    )
    code, doc = run_json(
        capsys, ["prepare", str(flat), str(tmp_path / "p"), "-f", "yolo", "--name", "y"]
    )
    assert code == 0 and doc["images"] == 30 and doc["classes"] == ["car", "dog", "person"]
    assert doc["train"] + doc["valid"] == 30 and doc["boxes"] > 30


def test_dry_run_and_usage_errors(voc, tmp_path, capsys):
    out = tmp_path / "out"
    code, doc = run_json(capsys, ["prepare", str(voc), str(out), "-f", "voc", "--dry-run"])
    assert code == 0 and doc["dry_run"] and doc["placed"] == 30 and doc["train"] == 27
    assert not out.exists()
    assert main(["prepare", str(tmp_path / "nope"), str(out), "-f", "voc"]) == 3
    assert main(["prepare", str(voc), str(out), "-f", "voc", "--name", "a b"]) == 2
    assert main(["prepare", str(voc), str(out), "-f", "voc", "--root", "/x/images"]) == 2
    assert main(["prepare", str(voc), str(out), "-f", "voc", "--max-files", "1"]) == 2
    assert main(["check", str(tmp_path / "nope")]) == 3
    capsys.readouterr()


@pytest.mark.parametrize("verb", ["prepare", "convert", "shard", "configs", "check"])
def test_help_has_an_example(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_move_mode_keeps_annotations_and_moves_images(voc, tmp_path):
    src = tmp_path / "VOC"
    shutil.copytree(voc, src)
    res = prepare(src, tmp_path / "out", fmt="voc", mode="move", name="ds")
    assert res.ok and res.images == 30, res.report.problems
    assert (
        not list((src / "JPEGImages").iterdir())
        and len(list((src / "Annotations").iterdir())) == 30
    )
    again = prepare(
        src, tmp_path / "out", fmt="voc", mode="move", name="ds"
    )  # moved: not "missing"
    assert again.ok and again.kept == 30 and again.images == 30, again.report.problems


def test_png_sample_is_deterministic(tmp_path):
    a = make_sample_voc(tmp_path / "a", images=5, seed=3)
    b = make_sample_voc(tmp_path / "b", images=5, seed=3)
    for p in (a / "JPEGImages").iterdir():
        assert p.read_bytes() == (b / "JPEGImages" / p.name).read_bytes()
    assert png_bytes(2, 2).startswith(b"\x89PNG")


def test_prepare_max_batches_burn_in_and_refusals(voc, tmp_path, capsys):
    """--max-batches/--burn-in reach the cfg; a [net] darknet refuses is an error (exit != 0)."""
    base = tmp_path / "base.cfg"
    base.write_text("[net]\nbatch=64\nsubdivisions=16\nwidth=416\nheight=416\nburn_in=1000\n"
                    "[convolutional]\nfilters=255\n[yolo]\nmask=0,1,2\nclasses=80\n")
    out = tmp_path / "out"
    assert main(["prepare", str(voc), str(out), "-f", "voc", "--name", "v", "--darknet-cfg",
                 str(base), "--max-batches", "300", "--burn-in", "20", "-q"]) == 0
    cfg = (out / "v" / "base-v.cfg").read_text()
    assert "max_batches=300" in cfg and "steps=240,270" in cfg and "burn_in=20" in cfg
    assert main(["prepare", str(voc), str(tmp_path / "bad"), "-f", "voc", "--name", "v",
                 "--darknet-cfg", str(base), "--batch", "1", "--subdivisions", "1"]) != 0
    err = capsys.readouterr().err
    assert "You set incorrect value batch=1 for Training" in err and "Traceback" not in err
    assert main(["prepare", str(voc), str(tmp_path / "bad2"), "-f", "voc", "--name", "v",
                 "--darknet-cfg", str(base), "--width", "100"]) != 0
    assert "width=100 is not a multiple of 32" in capsys.readouterr().err
