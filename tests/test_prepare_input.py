"""Wrong input is named (issue 9 item 8), UTF-8 names are kept (item 4, prepare part),
and prepare's summary says what it did (item 9)."""

from __future__ import annotations

import json
import os

import pytest

from drivesync.cli import main
from drivesync.datasets.sample import make_sample_voc, png_bytes
from drivesync.errors import EXIT_ERROR, EXIT_USAGE

TINY = "[net]\nbatch=1\n[convolutional]\nfilters=255\n[yolo]\nmask=0,1,2\nclasses=80\n"


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return make_sample_voc(tmp_path_factory.mktemp("voc") / "VOC2012", images=12)


def test_yolo_on_a_voc_folder_stops_and_names_the_format(voc, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["prepare", str(voc), str(out), "--format", "yolo", "--classes", "person,car"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert "no YOLO label .txt files found for --format yolo" in err
    assert "VOC XML annotations" in err and "use --format voc" in err
    assert not out.exists()                               # stopped before writing anything


def test_coco_on_a_voc_folder_says_no_coco_json(voc, tmp_path, capsys):
    assert main(["prepare", str(voc), str(tmp_path / "o"), "--format", "coco"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "no COCO JSON found" in err and "use --format voc" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.png").write_bytes(png_bytes(8, 8))
    assert main(["convert", str(empty), str(tmp_path / "o2"), "-f", "coco"]) == EXIT_ERROR
    assert "no COCO JSON found" in capsys.readouterr().err


def test_crowdhuman_and_shard_on_a_voc_folder(voc, tmp_path, capsys):
    assert main(["prepare", str(voc), str(tmp_path / "o"), "-f", "crowdhuman"]) == EXIT_ERROR
    assert "use --format voc" in capsys.readouterr().err
    assert main(["shard", str(voc), str(tmp_path / "s")]) == EXIT_ERROR
    err = capsys.readouterr().err       # shard has no --format: it must not say "for --format yolo"
    assert "for --format" not in err and "shard takes a YOLO folder" in err
    assert "`drivesync prepare` (or `drivesync convert` first) with --format voc" in err


def test_the_right_format_still_works(voc, tmp_path, capsys):
    assert main(["prepare", str(voc), str(tmp_path / "o"), "-f", "voc"]) == 0


def test_out_that_is_a_file(voc, tmp_path, capsys):
    target = tmp_path / "out.txt"
    target.write_text("not a folder")
    assert main(["prepare", str(voc), str(target), "-f", "voc"]) == EXIT_USAGE
    assert "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "not a folder"


def _yolo(root, n, labelled):
    root.mkdir()
    for i in range(n):
        (root / f"im{i}.png").write_bytes(png_bytes(16, 16))
        if i < labelled:
            (root / f"im{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")


def test_most_images_without_a_label_warn_in_the_summary(tmp_path, capsys):
    _yolo(tmp_path / "y", 10, labelled=2)
    code = main(["prepare", str(tmp_path / "y"), str(tmp_path / "o"), "-f", "yolo",
                 "--classes", "a"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "warning: 8 of 10 images have no label" in err          # not only in the report
    assert "8 background images" in out
    code = main(["prepare", str(tmp_path / "y"), str(tmp_path / "o2"), "-f", "yolo",
                 "--classes", "a", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["background"] == 8 and doc["warnings"]


def test_summary_names_the_cfg_and_shows_notes(tmp_path, capsys):
    src = tmp_path / "y"
    _yolo(src, 3, labelled=3)
    (src / "a b.png").write_bytes(png_bytes(16, 16))               # renamed: a note
    (src / "a b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    cfg = tmp_path / "yolov4-tiny.cfg"
    cfg.write_text(TINY)
    code = main(["prepare", str(src), str(tmp_path / "o"), "-f", "yolo", "--classes", "a",
                 "--darknet-cfg", str(cfg)])
    out = capsys.readouterr().out
    assert code == 0
    wrote = next(line for line in out.splitlines() if line.startswith("wrote "))
    assert "yolov4-tiny-y.cfg" in wrote and "obj.data" in wrote
    assert any(line.startswith("note: ") and "a b.png" in line for line in out.splitlines())


def test_utf8_image_names_are_kept_unless_ascii_is_asked(tmp_path, capsys):
    src = tmp_path / "y"
    src.mkdir()
    for name in ("街景_01", "café"):
        (src / f"{name}.png").write_bytes(png_bytes(16, 16))
        (src / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert main(["prepare", str(src), str(tmp_path / "o"), "-f", "yolo", "--classes", "a"]) == 0
    names = sorted(os.listdir(tmp_path / "o/y/000"))
    assert names == ["café.png", "café.txt", "街景_01.png", "街景_01.txt"]
    train = (tmp_path / "o/y/train.txt").read_text(encoding="utf-8") + \
        (tmp_path / "o/y/valid.txt").read_text(encoding="utf-8")
    assert "街景_01.png" in train
    assert main(["prepare", str(src), str(tmp_path / "a"), "-f", "yolo", "--classes", "a",
                 "--ascii-names"]) == 0
    assert sorted(os.listdir(tmp_path / "a/y/000")) == ["01.png", "01.txt", "cafe.png",
                                                        "cafe.txt"]
    capsys.readouterr()
