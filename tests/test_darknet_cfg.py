"""Expected darknet .weights size from a cfg: official models, patched cfgs, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivesync.datasets.configs import patch_darknet_cfg
from drivesync.errors import DatasetError
from drivesync.launch.darknet_cfg import (
    HEADER_BYTES,
    expected_size_from_text,
    expected_weights_size,
    parse_cfg,
    weights_payload_floats,
)

DATA = Path(__file__).parent / "data" / "darknet"

# Sizes of the published files (pjreddie.com/media/files/*.weights and the
# AlexeyAB/darknet releases), as other projects pin them for download checks.
OFFICIAL = {
    "yolov3.cfg": 248_007_048,
    "yolov3-tiny.cfg": 35_434_956,
    "yolov4.cfg": 257_717_640,
    "yolov4-tiny.cfg": 24_251_276,
}


def floats(text: str):
    return weights_payload_floats(parse_cfg(text))


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_weights_sizes(name: str) -> None:
    assert expected_weights_size(DATA / name) == OFFICIAL[name]
    assert expected_weights_size(str(DATA / name)) == OFFICIAL[name]


def test_header_size_is_a_parameter() -> None:
    assert expected_weights_size(DATA / "yolov3-tiny.cfg", header=16) == 35_434_956 - 4
    assert HEADER_BYTES == 20


@pytest.mark.parametrize("classes", [1, 3, 80])
def test_patched_yolov4_tiny_matches_a_hand_count(classes: int) -> None:
    base = (DATA / "yolov4-tiny.cfg").read_text()
    patched = patch_darknet_cfg(base, classes=classes, source="yolov4-tiny.cfg")
    # Only the two detection convs change: 1x1, no batchnorm, filters 255 ->
    # 3*(classes+5). The first reads the 512-channel 3x3 conv before it, the
    # second the 256-channel one: each writes filters biases + c*filters weights.
    new = 3 * (classes + 5)
    change = (new - 255) * ((1 + 512) + (1 + 256))
    assert expected_size_from_text(patched) == OFFICIAL["yolov4-tiny.cfg"] + 4 * change
    if classes == 3:
        assert expected_size_from_text(patched) == 23_539_796


NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"


def test_small_net_by_hand() -> None:
    cfg = NET + (
        "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\n"
        "[convolutional]\nfilters=4\nsize=1\ngroups=2\n"   # no bn, grouped: (8/2)*4*1*1
        "[maxpool]\nsize=2\nstride=2\n"
        "[connected]\noutput=10\n"                         # 32 -> 16 (stride 2) -> 8 (pool)
    )
    conv1 = 8 + 3 * 8 + 3 * 8 * 3 * 3
    conv2 = 4 + (8 // 2) * 4
    fc = 10 + 10 * (8 * 8 * 4)
    assert floats(cfg) == conv1 + conv2 + fc


def test_route_groups_and_absolute_index() -> None:
    cfg = NET + (
        "[convolutional]\nfilters=16\nsize=1\n"            # layer 0
        "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"        # 8 channels
        "[convolutional]\nfilters=4\nsize=3\npad=1\n"       # reads 8
        "[route]\nlayers = 0, -1\n"                         # 16 + 4
        "[convolutional]\nfilters=2\nsize=1\n"              # reads 20
    )
    assert floats(cfg) == (16 + 3 * 16) + (4 + 8 * 4 * 9) + (2 + 20 * 2)


def test_weighted_shortcut_share_index_and_xnor() -> None:
    cfg = NET + (
        "[convolutional]\nfilters=6\nsize=1\n"
        "[convolutional]\nfilters=6\nsize=1\n"
        "[shortcut]\nfrom=-2\nweights_type=per_channel\n"  # (1 from + 1) * 6
        "[shortcut]\nfrom=-3,-2\nweights_type=per_feature\n"  # 2 from + 1
        "[convolutional]\nfilters=6\nsize=1\nshare_index=1\n"  # borrows layer 1: writes nothing
        "[convolutional]\nfilters=6\nsize=3\npad=1\ngroups=3\nxnor=1\n"  # xnor: groups=1
    )
    assert floats(cfg) == (6 + 3 * 6) + (6 + 6 * 6) + 12 + 3 + 0 + (6 + 6 * 6 * 9)


def test_maxpool_depth_reorg_upsample_avgpool() -> None:
    cfg = NET + (
        "[convolutional]\nfilters=8\nsize=1\n"
        "[maxpool]\nmaxpool_depth=1\nout_channels=2\n"     # 2 channels, same size
        "[reorg3d]\nstride=2\n"                            # 8 channels, 16x16
        "[upsample]\nstride=2\n"                           # 8 channels, 32x32
        "[convolutional]\nfilters=1\nsize=1\n"
        "[avgpool]\n"
        "[connected]\noutput=3\n"                          # 1 input
    )
    assert floats(cfg) == (8 + 24) + (1 + 8) + (3 + 3)


@pytest.mark.parametrize("layer", ["[crop]\ncrop_height=8\ncrop_width=8\n", "[lstm]\noutput=4\n",
                                   "[foo]\n", "[batchnorm]\n"])
def test_unknown_or_ambiguous_layer_gives_none(layer: str) -> None:
    cfg = NET + "[convolutional]\nfilters=4\nsize=1\n" + layer
    assert floats(cfg) is None
    assert expected_size_from_text(cfg) is None


@pytest.mark.parametrize("body", [
    "[route]\nlayers=-3\n",                       # before the first layer
    "[route]\nlayers=5\n",                        # a later layer
    "[route]\n",                                  # no layers=
    "[shortcut]\nfrom=-1\nweights_type=odd\n",    # darknet exits on this
    "[upsample]\nstride=0\n",
])
def test_bad_references_give_none(body: str) -> None:
    assert floats(NET + "[convolutional]\nfilters=4\nsize=1\n" + body) is None


def test_filters_missing_before_yolo_gives_none() -> None:
    # darknet defaults filters to 1, then refuses: the [yolo] needs 3*(2+5)=21
    head = "[yolo]\nmask=0,1,2\nnum=6\nclasses=2\n"
    assert floats(NET + "[convolutional]\nsize=1\n" + head) is None
    assert floats(NET + "[convolutional]\nsize=1\nfilters=21\n" + head) == 21 + 3 * 21


def test_channels_missing_means_darknet_cannot_build_it() -> None:
    assert floats("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\nsize=1\n") is None


@pytest.mark.parametrize("text, where", [
    ("", "no [section]"),
    ("filters=3\n[net]\n", ":1: option before"),
    ("[convolutional]\nfilters=3\n", ":1: the first section must be [net]"),
])
def test_unreadable_cfg_is_a_clear_error_or_none(text: str, where: str) -> None:
    with pytest.raises(DatasetError, match=r"^x\.cfg.*") as exc:
        parse_cfg(text, source="x.cfg")
    assert where in str(exc.value)
    assert expected_size_from_text(text) is None


def test_missing_file_gives_none(tmp_path: Path) -> None:
    assert expected_weights_size(tmp_path / "nope.cfg") is None


def test_options_follow_darknet_reading() -> None:
    sec = parse_cfg("[net]\nchannels = 3  # rgb\nchannels=1\nsize=3.7\nempty=\n")[0]
    assert sec.get_int("channels", 0) == 3      # first value wins, comment dropped
    assert sec.get_int("size", 1) == 3          # atoi
    assert sec.get_int("empty", 7) == 7         # "key=" is not an option to darknet
    assert sec.get_int("missing", 5) == 5
