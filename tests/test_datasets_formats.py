"""The format registry: one entry per format, each converter reached through it, detectors."""

from __future__ import annotations

import json

import pytest

from drivesync.datasets import coco, crowdhuman, voc, yolo
from drivesync.datasets.formats import FORMATS, REGISTRY, formats_found, get_format
from drivesync.datasets.items import ConvertOptions
from drivesync.datasets.prepare import convert
from drivesync.datasets.report import Report
from drivesync.datasets.sample import make_sample_voc, png_bytes
from drivesync.errors import UsageError


def test_registry_lists_each_format_once_in_the_help_order():
    assert FORMATS == ("voc", "crowdhuman", "coco", "yolo")
    assert [REGISTRY[n] for n in FORMATS] == [voc.FORMAT, crowdhuman.FORMAT, coco.FORMAT,
                                              yolo.FORMAT]
    assert {n for n in FORMATS if REGISTRY[n].folder_only} == {"voc", "yolo"}
    with pytest.raises(UsageError, match="--format must be one of voc, crowdhuman, coco, yolo"):
        get_format("kitti")


def test_convert_goes_through_the_registry(tmp_path):
    src = make_sample_voc(tmp_path / "VOC", images=4)
    direct = voc.convert_voc(str(src), report=Report(), keep_difficult=True)
    via = convert(src, fmt="voc", report=Report(), keep_difficult=True)
    assert [(i.key, i.boxes) for i in via.items] == [(i.key, i.boxes) for i in direct.items]
    assert via.classes == direct.classes
    with pytest.raises(TypeError):
        convert(src, fmt="voc", report=Report(), no_such_option=1)
    with pytest.raises(UsageError, match="CrowdHuman classes are fixed"):
        crowdhuman.FORMAT.convert(str(src), ConvertOptions(classes=["a"]), Report(), None)


def test_detectors_recognise_their_files(tmp_path):
    src = make_sample_voc(tmp_path / "VOC", images=2)
    assert formats_found(str(src)) == ["voc"]
    odgt = tmp_path / "ch" / "annotation_train.odgt"
    odgt.parent.mkdir()
    odgt.write_text(json.dumps({"ID": "a", "gtboxes": []}) + "\n")
    assert formats_found(str(odgt.parent)) == ["crowdhuman"]
    assert formats_found(str(odgt)) == ["crowdhuman"]
    cj = tmp_path / "coco" / "instances.json"
    cj.parent.mkdir()
    cj.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    (tmp_path / "coco" / "other.json").write_text("{}")
    assert formats_found(str(cj.parent)) == ["coco"]
    y = tmp_path / "yolo"
    y.mkdir()
    (y / "a.png").write_bytes(png_bytes(8, 8))
    (y / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (y / "classes.txt").write_text("cat\n")
    assert formats_found(str(y)) == ["yolo"]
    (y / "a.txt").write_text("not a label\n")
    assert formats_found(str(y)) == []
    assert formats_found(str(tmp_path / "empty-or-missing")) == []
