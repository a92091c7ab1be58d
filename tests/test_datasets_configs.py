"""Config files: darknet cfg patching, obj.data, data.yaml, the seeded split."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivesync.datasets.configs import (
    ConfigOptions,
    check_root,
    data_yaml,
    obj_data,
    patch_darknet_cfg,
    split_images,
    write_configs,
)
from drivesync.errors import DatasetError, UsageError

DATA = Path(__file__).parent / "data" / "darknet"
TINY_CFG = DATA / "two-heads-tiny.cfg"  # two [yolo] heads, a [route] between
TINY = TINY_CFG.read_text()


def section_values(text, section, key):
    out, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("["):
            cur = s
        elif cur == f"[{section}]" and s.split("=")[0].strip() == key:
            out.append(s.split("=", 1)[1].strip())
    return out


def test_tiny_cfg_two_yolo_layers():
    out = patch_darknet_cfg(TINY, classes=2)
    # (2 classes + 5) * 3 anchors per mask = 21, only in the conv right before each [yolo]
    assert section_values(out, "convolutional", "filters") == ["16", "21", "21"]
    assert section_values(out, "yolo", "classes") == ["2", "2"]
    assert section_values(out, "net", "max_batches") == ["6000"]  # max(6000, 2000*2)
    assert section_values(out, "net", "steps") == ["4800,5400"]
    assert section_values(out, "net", "batch") == ["1"]  # untouched unless asked
    assert "# Testing" in out and "layers = -4" in out


def test_cfg_many_classes_and_sizes():
    out = patch_darknet_cfg(TINY, classes=4, batch=64, subdivisions=16, width=608, height=320)
    assert section_values(out, "net", "max_batches") == ["8000"]
    assert section_values(out, "net", "steps") == ["6400,7200"]
    assert [
        section_values(out, "net", k)[0] for k in ("batch", "subdivisions", "width", "height")
    ] == ["64", "16", "608", "320"]
    assert section_values(out, "convolutional", "filters") == ["16", "27", "27"]  # (4+5)*3


def test_region_cfg():
    cfg = "[net]\nbatch=1\n[convolutional]\nfilters=425\n[region]\nclasses=80\ncoords=4\nnum=5\n"
    out = patch_darknet_cfg(cfg, classes=3)
    assert section_values(out, "convolutional", "filters") == ["40"]  # (3+4+1)*5
    assert section_values(out, "region", "classes") == ["3"]


def test_cfg_errors():
    with pytest.raises(DatasetError, match="no \\[yolo\\]"):
        patch_darknet_cfg("[net]\nbatch=1\n", classes=1)
    with pytest.raises(DatasetError, match="not \\[convolutional\\]"):
        patch_darknet_cfg("[net]\n[route]\nlayers=-1\n[yolo]\nmask=0\n", classes=1)


def test_obj_data_and_yaml():
    assert obj_data("/WORK1/voc", 3) == (
        "classes = 3\ntrain = /WORK1/voc/train.txt\nvalid = /WORK1/voc/valid.txt\n"
        "names = /WORK1/voc/obj.names\nbackup = /WORK1/voc/backup\n"
    )
    y = data_yaml("/WORK1/voc", ["person", 'odd: "name"', "ü"])
    assert 'path: "/WORK1/voc"\ntrain: train.txt\nval: valid.txt\nnc: 3\nnames:\n' in y
    assert '  0: "person"\n  1: "odd: \\"name\\""\n  2: "\\u00fc"\n' in y


def test_split_exact_seeded_and_order_free():
    imgs = [f"{i // 10:03d}/im{i}.png" for i in range(50)]
    train, valid = split_images(imgs, val_fraction=0.2, seed=0)
    assert len(valid) == 10 and len(train) == 40 and set(train) | set(valid) == set(imgs)
    assert split_images(list(reversed(imgs)), val_fraction=0.2, seed=0) == (train, valid)
    assert split_images(imgs, val_fraction=0.2, seed=1)[1] != valid
    assert split_images(imgs, val_fraction=0.0)[1] == []
    with pytest.raises(UsageError):
        split_images(imgs, val_fraction=1.0)


def test_roots_that_would_break_training():
    with pytest.raises(UsageError, match="whitespace"):
        check_root("/content/My Drive/x")
    with pytest.raises(UsageError, match="images"):
        check_root("/WORK1/images")
    assert check_root("/WORK1/voc/") == "/WORK1/voc"


def test_write_configs_files(tmp_path):
    cfg = tmp_path / "yolov3-tiny.cfg"
    cfg.write_text(TINY)
    res = write_configs(
        str(tmp_path / "ds"),
        name="ds",
        classes=["a", "b"],
        images=["000/x.png", "000/y.png", "001/z.png"],
        options=ConfigOptions(root="/mnt/d/ds", val_fraction=0.34, darknet_cfg=str(cfg)),
    )
    d = tmp_path / "ds"
    assert (d / "obj.names").read_text() == "a\nb\n"
    train = (d / "train.txt").read_text().splitlines()
    valid = (d / "valid.txt").read_text().splitlines()
    assert len(valid) == 1 and len(train) == 2
    assert sorted(train + valid) == [
        "/mnt/d/ds/000/x.png",
        "/mnt/d/ds/000/y.png",
        "/mnt/d/ds/001/z.png",
    ]
    assert "classes=2" in (d / "yolov3-tiny-ds.cfg").read_text()
    assert res.root == "/mnt/d/ds" and len(res.files) == 6


def test_max_batches_default_rule_steps_burn_in_and_refusals():
    from drivesync.datasets.configs import default_max_batches

    assert default_max_batches(2) == 6000 and default_max_batches(4) == 8000
    assert default_max_batches(1, train_images=20000) == 20000  # at least the images
    base = ("[net]\nbatch=64\nsubdivisions=16\nburn_in=1000\n[convolutional]\nfilters=1\n"
            "[yolo]\nmask=0,1,2\n")
    out = patch_darknet_cfg(base, classes=1, max_batches=500, burn_in=50)
    assert section_values(out, "net", "max_batches") == ["500"]
    assert section_values(out, "net", "steps") == ["400,450"]
    assert section_values(out, "net", "burn_in") == ["50"]
    assert section_values(patch_darknet_cfg(base, classes=1, train_images=9000), "net",
                          "max_batches") == ["9000"]
    for kw, why in [({"batch": 1, "subdivisions": 1}, "batch=1"),
                    ({"batch": 64, "subdivisions": 24}, "not divisible"),
                    ({"width": 100}, "multiple of 32"),
                    ({"max_batches": 0}, "at least 1")]:
        with pytest.raises(DatasetError, match=why):
            patch_darknet_cfg(base, classes=1, **kw)
