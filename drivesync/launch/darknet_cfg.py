"""The exact byte size darknet's ``save_weights`` writes for a network cfg.

The checkpoint mirror refuses a darknet checkpoint as truncated when it is
smaller than an earlier one of the same family; the first checkpoint of a run
has nothing to compare with. A cfg fixes the size completely: after the header
(20 bytes for weights version >= 0.2, see :func:`weights.parse_darknet_header`)
darknet writes float32 arrays whose lengths follow from the layer list alone.

Facts followed here (AlexeyAB/darknet ``src/parser.c``: ``save_weights_upto``,
``save_*_weights``, ``parse_*``; the ``make_*_layer`` functions for the shapes):

* ``[convolutional]``: biases ``n``; ``scales``, ``rolling_mean``,
  ``rolling_variance`` ``n`` each when ``batch_normalize`` (or ``cbn``); then
  ``(c/groups)*n*size*size`` weights. ``xnor`` forces ``groups=1``; ``binary``
  changes nothing (the binary writer is commented out); a layer with
  ``share_index`` writes nothing (it borrows another layer's arrays).
* ``[shortcut]`` with ``weights_type``: ``n+1`` (per_feature/per_layer) or
  ``(n+1)*c`` (per_channel) floats, ``n`` = number of ``from`` layers.
* ``[connected]``: ``outputs`` + ``outputs*inputs`` (+ 3*outputs with batchnorm).
* ``[implicit]``: ``filters*atoms``.
* ``[batchnorm]`` is deliberately unknown: AlexeyAB writes 4*c floats (biases
  too), pjreddie writes 3*c, and the file does not say which fork wrote it.

Whenever the cfg holds something whose size is not certain (an unknown layer,
a reference to a missing layer, a shape darknet itself would refuse) the answer
is ``None``: for a truncation guard "no guard" is safe, a wrong size is not.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from ..datasets.configs import CFG_KEY, cfg_sections  # the one cfg line grammar
from ..errors import DatasetError

log = logging.getLogger(__name__)

HEADER_BYTES = 20  # int32 major, minor, revision + uint64 seen (version >= 0.2)
_NO_SHARE = -1000000000  # darknet's "share_index not given" sentinel
_ATOI = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Section:
    """One ``[type]`` block; ``type`` is lower case, the first value of a key wins."""

    type: str
    options: Dict[str, str] = field(default_factory=dict)
    line: int = 0  # 1-based line of the [header]

    def get_str(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The raw value with blanks removed, as darknet's ``strip`` leaves it."""
        v = self.options.get(key)
        if v is None or v == "":  # darknet drops a ``key=`` line with nothing after '='
            return default
        return re.sub(r"[ \t]", "", v)

    def get_int(self, key: str, default: int) -> int:
        """``atoi`` semantics: leading integer, 0 when there is none, like darknet."""
        v = self.get_str(key)
        if v is None:
            return default
        m = _ATOI.match(v)
        return int(m.group(0)) if m else 0


def parse_cfg(text: str, *, source: str = "cfg") -> List[Section]:
    """Sections in file order; raises DatasetError where darknet could not read the file.

    Built on the line grammar of :mod:`drivesync.datasets.configs` (the cfg
    patcher) so that both read a cfg the same way; comments after ``#`` are
    dropped and a key's first occurrence wins, as in darknet's ``option_find``.
    """
    lines = text.splitlines()
    heads = cfg_sections(lines)
    if not heads:
        raise DatasetError(f"{source}: no [section] found; not a darknet cfg")
    for i in range(heads[0][1]):
        if CFG_KEY.match(lines[i].split("#", 1)[0]):
            raise DatasetError(f"{source}:{i + 1}: option before the first [section]")
    if heads[0][0] not in ("net", "network"):
        raise DatasetError(f"{source}:{heads[0][1] + 1}: the first section must be [net], "
                           f"not [{heads[0][0]}]")
    out: List[Section] = []
    for name, start, end in heads:
        opts: Dict[str, str] = {}
        for line in lines[start + 1:end]:
            m = CFG_KEY.match(line.split("#", 1)[0])
            if m and m.group(1) not in opts:
                opts[m.group(1)] = m.group(2)
        out.append(Section(type=name, options=opts, line=start + 1))
    return out


class _Unsure(Exception):
    """Why a cfg's payload cannot be computed with certainty."""


@dataclass(frozen=True)
class _Shape:
    """A layer's output; ``None`` where it is not known (only a later need is fatal)."""

    c: Optional[int]
    h: Optional[int]
    w: Optional[int]
    outputs: Optional[int]

    @staticmethod
    def image(c: int, h: Optional[int], w: Optional[int]) -> _Shape:
        n = c * h * w if h is not None and w is not None else None
        return _Shape(c, h, w, n)


_ALIASES = {
    "conv": "convolutional", "conn": "connected", "max": "maxpool", "avg": "avgpool",
    "local_avg": "local_avgpool", "soft": "softmax", "silence": "empty",
}
# Layers that write nothing and hand their input on unchanged (parse_dropout,
# parse_activation and [empty] copy params.w/h/c).
_PASS = {"dropout", "activation", "empty"}
# Loss/output layers: no weights; darknet does not give them an image shape.
_HEADS = {"cost", "softmax", "detection", "gaussian_yolo"}


def _index(sec: Section, token: str, here: int) -> int:
    """Resolve a layer reference like darknet (negative = relative); refuse a bad one."""
    m = _ATOI.match(token)
    idx = int(m.group(0)) if m else 0
    if idx < 0:
        idx += here
    if not 0 <= idx < here:
        raise _Unsure(f"line {sec.line}: [{sec.type}] refers to layer {token!r}, "
                      f"which is not an earlier layer (this is layer {here})")
    return idx


def _refs(sec: Section, key: str, here: int) -> List[int]:
    v = sec.get_str(key)
    if v is None:
        raise _Unsure(f"line {sec.line}: [{sec.type}] has no {key}=")
    return [_index(sec, t, here) for t in v.split(",")]


def _need_image(sec: Section, p: _Shape) -> int:
    """Darknet's "Layer before ... must output image" check; returns the channels."""
    if p.c is None:
        raise _Unsure(f"line {sec.line}: [{sec.type}] input channels unknown")
    if p.c <= 0 or (p.h is not None and p.h <= 0) or (p.w is not None and p.w <= 0):
        raise _Unsure(f"line {sec.line}: [{sec.type}] input is not an image "
                      f"({p.w} x {p.h} x {p.c}); darknet refuses this cfg")
    return p.c


def _out(sec: Section, size: Optional[int], pad: int, k: int, stride: int) -> Optional[int]:
    """``(size + pad - k) / stride + 1`` for a known size; refuse what darknet cannot run."""
    if size is None:
        return None
    if stride < 1 or size + pad - k < 0:
        raise _Unsure(f"line {sec.line}: [{sec.type}] stride/size give no output")
    return (size + pad - k) // stride + 1


def _mul(v: Optional[int], k: int) -> Optional[int]:
    return None if v is None else v * k


def _div(v: Optional[int], k: int) -> Optional[int]:
    return None if v is None else v // k


def _convolutional(sec: Section, p: _Shape, here: int, layers: List[str]) -> Tuple[int, _Shape]:
    c = _need_image(sec, p)
    n = sec.get_int("filters", 1)
    size = sec.get_int("size", 1)
    groups = sec.get_int("groups", 1)
    if sec.get_int("xnor", 0):
        groups = 1  # make_convolutional_layer: "disable groups for XNOR-net"
    groups = max(groups, 1)
    if n < 1 or size < 1 or c % groups:
        raise _Unsure(f"line {sec.line}: [convolutional] filters={n} size={size} "
                      f"groups={groups} on {c} channels")
    deform = sum(sec.get_int(k, 0) != 0 for k in ("sway", "rotate", "stretch", "stretch_sway"))
    if deform > 1 or (deform and size == 1):
        raise _Unsure(f"line {sec.line}: [convolutional] sway/rotate/stretch darknet refuses")
    stride_x, stride_y = sec.get_int("stride_x", -1), sec.get_int("stride_y", -1)
    if stride_x < 1 or stride_y < 1:
        stride = sec.get_int("stride", 1)
        stride_x = stride if stride_x < 1 else stride_x
        stride_y = stride if stride_y < 1 else stride_y
    padding = size // 2 if sec.get_int("pad", 0) else sec.get_int("padding", 0)
    bn = sec.get_int("batch_normalize", 0) or sec.get_int("cbn", 0)
    share = sec.get_int("share_index", _NO_SHARE)
    floats = n + (3 * n if bn else 0) + (c // groups) * n * size * size
    if share != _NO_SHARE:
        target = share if share >= 0 else here + share
        if not 0 <= target < here or layers[target] != "convolutional":
            raise _Unsure(f"line {sec.line}: share_index={share} is not an earlier "
                          "[convolutional]")
        floats = 0  # save_weights_upto skips layers whose share_layer is set
    if sec.get_int("antialiasing", 0):
        # a blur layer after the conv sets the spatial size; channels stay n
        return floats, _Shape(n, None, None, None)
    h = _out(sec, p.h, 2 * padding, size, stride_y)
    w = _out(sec, p.w, 2 * padding, size, stride_x)
    return floats, _Shape.image(n, h, w)


def _pool(sec: Section, p: _Shape, *, depth_ok: bool) -> _Shape:
    c = _need_image(sec, p)
    stride = sec.get_int("stride", 1)
    stride_x, stride_y = sec.get_int("stride_x", stride), sec.get_int("stride_y", stride)
    size = sec.get_int("size", stride)
    padding = sec.get_int("padding", size - 1)
    if depth_ok and sec.get_int("maxpool_depth", 0):
        return _Shape.image(sec.get_int("out_channels", 1), p.h, p.w)
    if depth_ok and sec.get_int("antialiasing", 0):
        return _Shape(c, None, None, None)
    return _Shape.image(c, _out(sec, p.h, padding, size, stride_y),
                        _out(sec, p.w, padding, size, stride_x))


def _yolo_check(sec: Section, p: _Shape) -> None:
    """Darknet exits unless the conv before [yolo]/[region] has exactly its outputs."""
    classes = sec.get_int("classes", 20)
    num = sec.get_int("num", 1)
    if sec.type == "yolo":
        mask = sec.get_str("mask")
        if mask is not None:
            num = mask.split("#", 1)[0].count(",") + 1
        want = num * (classes + 4 + 1)
    else:
        want = num * (classes + sec.get_int("coords", 4) + 1)
    if p.c != want:
        raise _Unsure(f"line {sec.line}: [{sec.type}] wants {want} input channels, the "
                      f"layer before gives {p.c}; darknet refuses this cfg")


# One function per layer type, all (sec, shape in, index, shapes so far, layer types)
# -> (floats written, shape out): the table below is the list of what is counted.
def _route(sec: Section, p: _Shape, here: int, shapes: List[_Shape],
           layers: List[str]) -> Tuple[int, _Shape]:
    ins = [shapes[i] for i in _refs(sec, "layers", here)]
    groups = sec.get_int("groups", 1)
    if groups < 1 or not 0 <= sec.get_int("group_id", 0) < groups:
        raise _Unsure(f"line {sec.line}: [route] groups/group_id out of range")
    chans = [s.c for s in ins if s.c is not None]
    if len(chans) != len(ins):
        raise _Unsure(f"line {sec.line}: [route] input channels unknown")
    first = ins[0]
    for s in ins[1:]:
        if None not in (s.h, s.w, first.h, first.w) and (s.h, s.w) != (first.h, first.w):
            raise _Unsure(f"line {sec.line}: [route] joins layers of different sizes")
    return 0, _Shape.image(sum(chans) // groups, first.h, first.w)


def _shortcut(sec: Section, p: _Shape, here: int, shapes: List[_Shape],
              layers: List[str]) -> Tuple[int, _Shape]:
    refs = _refs(sec, "from", here)
    kind = sec.get_str("weights_type", "none")
    if kind == "none":
        return 0, p
    if kind in ("per_feature", "per_layer"):
        return len(refs) + 1, p
    if kind == "per_channel":
        return (len(refs) + 1) * _need_image(sec, p), p
    raise _Unsure(f"line {sec.line}: [shortcut] weights_type={kind} is unknown")


def _upsample(sec: Section, p: _Shape, here: int, shapes: List[_Shape],
              layers: List[str]) -> Tuple[int, _Shape]:
    c = _need_image(sec, p)
    stride = sec.get_int("stride", 2)
    if stride == 0:
        raise _Unsure(f"line {sec.line}: [upsample] stride=0")
    if stride < 0:  # make_upsample_layer: a negative stride downsamples
        return 0, _Shape.image(c, _div(p.h, -stride), _div(p.w, -stride))
    return 0, _Shape.image(c, _mul(p.h, stride), _mul(p.w, stride))


def _reorg(sec: Section, p: _Shape, here: int, shapes: List[_Shape],
           layers: List[str]) -> Tuple[int, _Shape]:
    t, c = sec.type, _need_image(sec, p)
    s = sec.get_int("stride", 1)
    if s < 1 or (t == "reorg" and sec.get_int("extra", 0)):
        raise _Unsure(f"line {sec.line}: [{t}] stride/extra not supported")
    if sec.get_int("reverse", 0):
        return 0, _Shape.image(c // (s * s), _mul(p.h, s), _mul(p.w, s))
    return 0, _Shape.image(c * s * s, _div(p.h, s), _div(p.w, s))


def _connected(sec: Section, p: _Shape, here: int, shapes: List[_Shape],
               layers: List[str]) -> Tuple[int, _Shape]:
    out = sec.get_int("output", 1)
    if p.outputs is None or p.outputs <= 0 or out < 1:
        raise _Unsure(f"line {sec.line}: [connected] input size unknown")
    bn = sec.get_int("batch_normalize", 0)
    return out + out * p.outputs + (3 * out if bn else 0), _Shape(out, 1, 1, out)


def _implicit(sec: Section, p: _Shape, here: int, shapes: List[_Shape],
              layers: List[str]) -> Tuple[int, _Shape]:
    filters, atoms = sec.get_int("filters", 128), sec.get_int("atoms", 1)
    return filters * atoms, _Shape(filters, atoms, 1, filters * atoms)


def _batchnorm(sec: Section, p: _Shape, here: int, shapes: List[_Shape],
               layers: List[str]) -> Tuple[int, _Shape]:
    raise _Unsure(f"line {sec.line}: [batchnorm] is 4*c floats in AlexeyAB's darknet "
                  "and 3*c in pjreddie's; the size depends on the build")


def _yolo(sec: Section, p: _Shape, here: int, shapes: List[_Shape],
          layers: List[str]) -> Tuple[int, _Shape]:
    _yolo_check(sec, p)
    return 0, p


_LayerFn = Callable[[Section, _Shape, int, List[_Shape], List[str]], Tuple[int, _Shape]]
_LAYERS: Dict[str, _LayerFn] = {
    "convolutional": lambda sec, p, here, shapes, layers: _convolutional(sec, p, here, layers),
    "route": _route,
    "shortcut": _shortcut,
    "upsample": _upsample,
    "maxpool": lambda sec, p, *_: (0, _pool(sec, p, depth_ok=True)),
    "local_avgpool": lambda sec, p, *_: (0, _pool(sec, p, depth_ok=False)),
    "avgpool": lambda sec, p, *_: (0, _Shape.image(_need_image(sec, p), 1, 1)),
    "reorg": _reorg,
    "reorg3d": _reorg,
    "yolo": _yolo,
    "region": _yolo,
    # output = the "from" layer's shape
    "sam": lambda sec, p, here, shapes, _l: (0, shapes[_refs(sec, "from", here)[0]]),
    "scale_channels": lambda sec, p, here, shapes, _l: (0, shapes[_refs(sec, "from", here)[0]]),
    "connected": _connected,
    "implicit": _implicit,
    "batchnorm": _batchnorm,
    **{t: (lambda sec, p, *_: (0, p)) for t in _PASS},
    **{t: (lambda sec, p, *_: (0, _Shape(None, None, None, p.outputs))) for t in _HEADS},
}


def _layer(sec: Section, p: _Shape, here: int, shapes: List[_Shape],
           layers: List[str]) -> Tuple[int, _Shape]:
    """(floats written, output shape) of one layer; raises _Unsure."""
    count = _LAYERS.get(sec.type)
    if count is None:
        raise _Unsure(f"line {sec.line}: layer type [{sec.type}] is not supported")
    return count(sec, p, here, shapes, layers)


def _payload(sections: List[Section]) -> int:
    if not sections or sections[0].type not in ("net", "network"):
        raise _Unsure("the first section is not [net]")
    net = sections[0]
    h, w, c = net.get_int("height", 0), net.get_int("width", 0), net.get_int("channels", 0)
    p = _Shape(c, h, w, net.get_int("inputs", h * w * c))
    shapes: List[_Shape] = []
    layers: List[str] = []
    total = 0
    for here, sec in enumerate(sections[1:]):
        t = _ALIASES.get(sec.type, sec.type)
        sec = Section(type=t, options=sec.options, line=sec.line)
        floats, p = _layer(sec, p, here, shapes, layers)
        total += floats
        shapes.append(p)
        layers.append(t)
    return total


def weights_payload_floats(sections: List[Section]) -> Optional[int]:
    """Float32 values darknet writes after the header, or None when not certain."""
    try:
        return _payload(sections)
    except _Unsure as exc:
        log.info("darknet weights size unknown: %s", exc)
        return None


def expected_size_from_text(text: str, *, header: int = HEADER_BYTES,
                            source: str = "cfg") -> Optional[int]:
    """Bytes of a whole .weights file for this cfg text, or None (no guard)."""
    try:
        sections = parse_cfg(text, source=source)
    except DatasetError as exc:
        log.info("darknet weights size unknown: %s", exc)
        return None
    floats = weights_payload_floats(sections)
    return None if floats is None else header + 4 * floats


def expected_weights_size(cfg: Union[str, Path], *, header: int = HEADER_BYTES) -> Optional[int]:
    """Bytes darknet's save_weights writes for the cfg file at ``cfg``, or None.

    Never raises for a bad or unreadable cfg: the caller is a guard, and a
    missing guard is better than a crashed mirror.
    """
    try:
        text = Path(cfg).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        log.info("darknet weights size unknown: cannot read %s: %s", cfg, exc)
        return None
    return expected_size_from_text(text, header=header, source=str(cfg))
