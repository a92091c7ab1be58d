"""Each converter against labels computed by hand, and every bad-input case.

The expected numbers in these tests were worked out on paper from the tiny
examples (see the comments), not produced by the converters.
"""

from __future__ import annotations

import json
import os

import pytest

from drivesync.datasets.coco import convert_coco
from drivesync.datasets.crowdhuman import convert_crowdhuman
from drivesync.datasets.names import ascii_names
from drivesync.datasets.report import BOX, ITEM, NOTE, Report
from drivesync.datasets.sample import png_bytes, voc_xml
from drivesync.datasets.voc import convert_voc
from drivesync.datasets.yolo import convert_yolo


def labels(conv):
    return {it.key: it.label() for it in conv.items}


def reasons(report, kind=None):
    return [p for p in report.problems if kind is None or p.skipped == kind]


# ---------------------------------------------------------------- VOC

VOC_OBJECTS = [
    # 1-based inclusive pixels -> continuous [xmin-1, xmax] on a 200x100 image
    ("dog", 11, 21, 60, 70),  # x 10..60, y 20..70 -> 1 0.175 0.45 0.25 0.5
    ("cat", 151, 51, 250, 100),  # x 150..250 clipped to 200 -> 0 0.875 0.75 0.25 0.5
    ("cat", 1, 1, 20, 10),  # difficult: x 0..20 y 0..10 -> 0 0.05 0.05 0.1 0.1
    ("dog", 301, 1, 350, 10),  # entirely right of the image: empty after clipping
]
DOG = "1 0.175000 0.450000 0.250000 0.500000\n"
CAT = "0 0.875000 0.750000 0.250000 0.500000\n"
HARD = "0 0.050000 0.050000 0.100000 0.100000\n"


def make_voc(root, xml=None, *, name="a", size=(200, 100)):
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(exist_ok=True)
    (root / "JPEGImages" / f"{name}.png").write_bytes(png_bytes(*size))
    text = xml if xml is not None else voc_xml(f"{name}.png", *size, VOC_OBJECTS, difficult=[2])
    (root / "Annotations" / f"{name}.xml").write_text(text, encoding="utf-8")


def test_voc_hand_computed(tmp_path):
    make_voc(tmp_path)
    rep = Report()
    conv = convert_voc(str(tmp_path), report=rep)
    assert conv.classes == ["cat", "dog"]  # sorted names found
    assert labels(conv) == {"JPEGImages/a.png": DOG + CAT}
    assert (conv.counts.difficult, conv.counts.dropped, conv.counts.boxes) == (1, 1, 2)
    assert not rep.failed


def test_voc_keep_difficult_and_given_class_order(tmp_path):
    make_voc(tmp_path)
    conv = convert_voc(str(tmp_path), report=Report(), classes=["dog", "cat"], keep_difficult=True)
    # dog is class 0 now, cat 1
    assert labels(conv)["JPEGImages/a.png"] == (
        "0 0.175000 0.450000 0.250000 0.500000\n"
        "1 0.875000 0.750000 0.250000 0.500000\n"
        "1 0.050000 0.050000 0.100000 0.100000\n"
    )


@pytest.mark.parametrize("size_xml", ["", "<size><width>0</width><height>0</height></size>"])
def test_voc_size_from_image_when_missing_or_zero(tmp_path, size_xml):
    xml = (
        "<annotation><filename>a.png</filename>"
        + size_xml
        + "<object><name>dog</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>60</xmax>"
        "<ymax>70</ymax></bndbox></object></annotation>"
    )
    make_voc(tmp_path, xml)
    conv = convert_voc(str(tmp_path), report=Report())
    assert labels(conv)["JPEGImages/a.png"] == "0 0.175000 0.450000 0.250000 0.500000\n"


def test_voc_bad_inputs_are_reported_and_good_ones_kept(tmp_path):
    make_voc(tmp_path, name="good")
    ann, img = tmp_path / "Annotations", tmp_path / "JPEGImages"
    (ann / "broken.xml").write_text("<annotation>\n<filename>x.png</filename>\n<object>", "utf-8")
    make_voc(
        tmp_path,
        voc_xml("swap.png", 200, 100, [("dog", 60, 21, 11, 70), ("dog", 11, 21, 60, 70)]),
        name="swap",
    )
    make_voc(tmp_path, voc_xml("unknown.png", 200, 100, [("zebra", 1, 1, 5, 5)]), name="unknown")
    (ann / "missing.xml").write_text(
        voc_xml("nowhere.png", 200, 100, [("dog", 1, 1, 5, 5)]), "utf-8"
    )
    (img / "empty.png").write_bytes(b"")
    (ann / "empty.xml").write_text(voc_xml("empty.png", 200, 100, [("dog", 1, 1, 5, 5)]), "utf-8")
    (img / "junk.png").write_bytes(b"this is not a png at all")
    (ann / "junk.xml").write_text(voc_xml("junk.png", 200, 100, [("dog", 1, 1, 5, 5)]), "utf-8")
    rep = Report()
    conv = convert_voc(str(tmp_path), report=rep, classes=["cat", "dog"])
    lines = [p.line() for p in rep.problems]
    text = "\n".join(lines)
    assert "broken.xml:line 3" in text and "malformed XML" in text
    assert "swap.xml:object[0]/bndbox: xmin > xmax" in text
    assert "unknown.xml:object[0]/name: class 'zebra' is not in --classes" in text
    assert "nowhere.png" in text and "image not found" in text
    assert "empty.png" in text and "0 bytes" in text
    assert "junk.png" in text and "unreadable image" in text
    # good items survive: good, swap (its second box), unknown (no boxes left, still an image)
    got = labels(conv)
    assert got["JPEGImages/good.png"] == DOG + CAT
    assert got["JPEGImages/swap.png"] == DOG
    assert got["JPEGImages/unknown.png"] == ""
    assert len(reasons(rep, ITEM)) == 4 and len(reasons(rep, BOX)) == 2 and rep.failed


def test_non_ascii_and_non_utf8_names_get_safe_stems(tmp_path):
    make_voc(tmp_path, voc_xml("café.png", 200, 100, [("dog", 11, 21, 60, 70)]), name="café")
    # a file name that is not UTF-8 at all (Linux allows any bytes)
    raw = os.fsdecode(b"bad\xff name")
    (tmp_path / "JPEGImages" / f"{raw}.png").write_bytes(png_bytes(10, 10))
    (tmp_path / "Annotations" / "raw.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax>"
        "<ymax>10</ymax></bndbox></object></annotation>",
        "utf-8",
    )
    os.rename(tmp_path / "Annotations" / "raw.xml", tmp_path / "Annotations" / f"{raw}.xml")
    rep = Report()
    conv = convert_voc(str(tmp_path), report=rep)
    stems = sorted(it.stem for it in conv.items)
    assert stems == ["bad_name", "café"]          # valid UTF-8 is kept (issue 9 item 4)
    folding = Report()
    with ascii_names(True):                       # prepare --ascii-names
        folded = sorted(it.stem for it in convert_voc(str(tmp_path), report=folding).items)
    assert folded == ["bad_name", "cafe"]
    notes = [p.line() for p in reasons(rep, NOTE)]
    assert any("not valid UTF-8" in n and "bad\\xff name" in n for n in notes)
    assert not any("café" in n for n in notes)      # kept as it is: nothing to note
    assert any("not plain ASCII" in n and "cafe.png" in p.line()
               for p in reasons(folding, NOTE) for n in [p.line()])
    assert not rep.failed  # renamed, not skipped


# ---------------------------------------------------------------- CrowdHuman


def odgt_line(ID, boxes):
    return json.dumps({"ID": ID, "gtboxes": boxes})


def make_crowdhuman(root):
    (root / "Images").mkdir(parents=True)
    (root / "Images" / "273271,1.jpg").write_bytes(png_bytes(100, 50))  # content sniffed, not ext
    boxes = [
        {
            "tag": "person",
            "fbox": [10, 5, 20, 10],
            "vbox": [12, 6, 10, 8],
            "hbox": [15, 5, 6, 4],
            "head_attr": {"ignore": 0},
            "extra": {"ignore": 0},
        },
        {
            "tag": "person",
            "fbox": [90, 40, 20, 20],
            "vbox": [90, 40, 5, 5],
            "hbox": [92, 40, 4, 4],
            "head_attr": {"ignore": 1},
            "extra": {},
        },
        {
            "tag": "person",
            "fbox": [1, 1, 5, 5],
            "vbox": [1, 1, 5, 5],
            "hbox": [1, 1, 2, 2],
            "extra": {"ignore": 1},
        },
        {"tag": "mask", "fbox": [0, 0, 50, 50], "vbox": [0, 0, 50, 50], "hbox": [0, 0, 1, 1]},
    ]
    lines = [odgt_line("273271,1", boxes), "{not json", odgt_line("missing_one", [])]
    (root / "annotation_train.odgt").write_text("\n".join(lines) + "\n", "utf-8")


def test_crowdhuman_fbox_and_heads(tmp_path):
    make_crowdhuman(tmp_path)
    rep = Report()
    conv = convert_crowdhuman(str(tmp_path), report=rep, head_class="head")
    assert conv.classes == ["person", "head"]
    # fbox 10,5,20,10 on 100x50: cx 20/100, cy 10/50, w 20/100, h 10/50
    # hbox 15,5,6,4: cx 18/100=.18, cy 7/50=.14, w .06, h 4/50=.08
    # fbox 90,40,20,20 clipped to x 90..100, y 40..50: cx .95, cy .9, w .1, h .2 (its head ignored)
    assert labels(conv) == {
        "Images/273271,1.jpg": (
            "0 0.200000 0.200000 0.200000 0.200000\n"
            "1 0.180000 0.140000 0.060000 0.080000\n"
            "0 0.950000 0.900000 0.100000 0.200000\n"
        )
    }
    text = "\n".join(p.line() for p in rep.problems)
    assert "annotation_train.odgt:line 2: malformed JSON line" in text
    assert "missing_one.jpg" in text and "image not found" in text
    assert conv.counts.ignored == 3  # the ignore=1 person, the mask, the ignored head


def test_crowdhuman_vbox(tmp_path):
    make_crowdhuman(tmp_path)
    conv = convert_crowdhuman(str(tmp_path), report=Report(), box="vbox")
    # vbox 12,6,10,8: cx 17/100, cy 10/50, w .1, h 8/50=.16; vbox 90,40,5,5: cx 92.5/100, cy 42.5/50
    assert labels(conv)["Images/273271,1.jpg"] == (
        "0 0.170000 0.200000 0.100000 0.160000\n0 0.925000 0.850000 0.050000 0.100000\n"
    )


# ---------------------------------------------------------------- COCO


def make_coco(root, **extra):
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(png_bytes(200, 100))
    doc = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 200, "height": 100},
            {"id": 8, "file_name": "gone.png", "width": 10, "height": 10},
        ],
        "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [20, 10, 40, 30], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 99, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        ],
    }
    doc.update(extra)
    (root / "instances.json").write_text(json.dumps(doc), "utf-8")


def test_coco_hand_computed(tmp_path):
    make_coco(tmp_path)
    rep = Report()
    conv = convert_coco(str(tmp_path), report=rep)
    assert conv.classes == ["person", "car"]  # by category id: 1, 3
    # bbox 20,10,40,30 on 200x100: cx 40/200=.2, cy 25/100=.25, w .2, h .3 ; crowd skipped
    assert labels(conv) == {"images/a.png": "1 0.200000 0.250000 0.200000 0.300000\n"}
    text = "\n".join(p.line() for p in rep.problems)
    assert "annotations[2].category_id: unknown class: category_id 99" in text
    assert "gone.png" in text
    conv = convert_coco(str(tmp_path), report=Report(), keep_crowd=True)
    # crowd bbox 0,0,10,10: cx 5/200=.025, cy 5/100=.05, w .05, h .1
    assert labels(conv)["images/a.png"] == (
        "1 0.200000 0.250000 0.200000 0.300000\n0 0.025000 0.050000 0.050000 0.100000\n"
    )


def test_coco_malformed_json(tmp_path):
    (tmp_path / "bad.json").write_text('{"images": [\n  {"id": 1,}\n]}', "utf-8")
    rep = Report()
    conv = convert_coco(str(tmp_path / "bad.json"), report=rep)
    assert not conv.items
    assert (
        rep.problems[0].where == "line 2 column 12" and "malformed JSON" in rep.problems[0].reason
    )


def test_coco_annotation_of_an_unknown_image_is_reported(tmp_path):
    ann = {"id": 4, "image_id": 42, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0}
    make_coco(tmp_path)
    doc = json.loads((tmp_path / "instances.json").read_text())
    doc["annotations"].append(ann)
    (tmp_path / "instances.json").write_text(json.dumps(doc), "utf-8")
    rep = Report()
    convert_coco(str(tmp_path), report=rep)
    (p,) = [p for p in rep.problems if "42" in p.reason]
    assert p.where == "annotations[3].image_id" and p.skipped == BOX
    assert p.reason == 'image_id 42 is not in "images"'


# ---------------------------------------------------------------- YOLO


def test_yolo_passthrough_and_validation(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    for stem, label in [
        ("ok", "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n"),
        ("range", "0 1.5 0.5 0.2 0.2\n"),
        ("cls", "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n"),
        ("fields", "0 0.5 0.5 0.2\n"),
        ("zero", "0 0.5 0.5 0 0.2\n"),
    ]:
        (tmp_path / f"{stem}.png").write_bytes(png_bytes(8, 8))
        (tmp_path / f"{stem}.txt").write_text(label)
    (tmp_path / "bg.png").write_bytes(png_bytes(8, 8))
    (tmp_path / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    rep = Report()
    conv = convert_yolo(str(tmp_path), report=rep)
    assert conv.classes == ["a", "b"]
    by = {it.key: it for it in conv.items}
    assert sorted(by) == ["bg.png", "ok.png"]
    assert by["ok.png"].label_src == str(tmp_path / "ok.txt") and conv.counts.boxes == 2
    assert by["bg.png"].label_src is None and by["bg.png"].label() == ""
    text = "\n".join(p.line() for p in rep.problems)
    assert "range.txt:line 1: values must be in [0, 1]" in text
    assert "cls.txt:line 2: class id 2 out of range (0..1)" in text
    assert "fields.txt:line 1: expected 5 fields" in text
    assert "zero.txt:line 1: values must be in [0, 1] with w, h > 0" in text
    assert "orphan.txt: label without an image" in text
    assert "bg.png: no label file" in text
    assert len(reasons(rep, ITEM)) == 5 and len(reasons(rep, NOTE)) == 1
