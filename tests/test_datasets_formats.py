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


def _convert_toy(src, o, report, progress):
    """A toy format: ``boxes.toy`` lines ``IMAGE cx cy w h``, one class."""
    import os

    from drivesync.datasets.items import Conversion, open_image

    conv = Conversion(classes=["thing"])
    toy = os.path.join(src, "boxes.toy")
    with open(toy, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            name, *nums = line.split()
            try:
                cx, cy, w, h = (float(v) for v in nums)
            except ValueError:
                report.add(toy, f"line {n}", "expected IMAGE cx cy w h")
                continue
            item = open_image(src, os.path.join(src, name), report, origin=toy,
                              where=f"line {n}", moved=o.moved, hash_image=o.hash_images)
            if item is not None:
                item.boxes = ((0, cx, cy, w, h),)
                conv.items.append(item)
                conv.counts.boxes += 1
    return conv


def test_a_new_format_is_one_module_and_one_registration(tmp_path):
    """Registered through the registry alone, ``prepare`` (and the format errors) know it."""
    import drivesync
    from drivesync.datasets.formats import register
    from drivesync.datasets.items import Format, has_files
    from drivesync.errors import DatasetError

    src = tmp_path / "toyset"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (src / name).write_bytes(png_bytes(16, 8))
    (src / "boxes.toy").write_text("a.png 0.5 0.5 0.25 0.5\nb.png 0.1 0.2 0.1 0.2\n"
                                   "c.png one two\n")
    register(Format("toy", convert=_convert_toy, detect=lambda s: has_files(s, (".toy",)),
                    folder_only=True, what="toy boxes.toy files"))
    try:
        res = drivesync.prepare(src, tmp_path / "out", fmt="toy", name="ds", max_files=4)
        assert (res.images, res.boxes, res.classes, res.shards) == (2, 2, ["thing"], 1)
        assert not res.ok and [p.line() for p in res.problems] == [
            f"{src / 'boxes.toy'}:line 3: expected IMAGE cx cy w h [skipped item]"]
        label = (tmp_path / "out/ds/000/a.txt").read_text()
        assert label == "0 0.500000 0.500000 0.250000 0.500000\n"
        assert (tmp_path / "out/ds/obj.names").read_text() == "thing\n"
        with pytest.raises(DatasetError, match="holds toy boxes.toy files: use --format toy"):
            drivesync.prepare(src, tmp_path / "o2", fmt="voc")
    finally:
        REGISTRY.pop("toy")
    with pytest.raises(UsageError, match="--format must be one of voc, crowdhuman, coco, yolo,"):
        get_format("toy")
