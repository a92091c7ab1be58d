"""Checks that a checkpoint file is whole before we train from it or upload it.

Darknet weights start with int32 major, minor, revision, then ``seen`` (images
trained on): an int64 when ``major*10 + minor >= 2``, else an int32. The
iteration is ``seen / batch`` (``batch`` from the cfg's ``[net]`` section).
Ultralytics ``.pt`` files are zip archives (``torch.save``); their CRCs are
checked, and the file is loaded with torch when torch is importable. Without
torch (or with ``load=False``) the epoch, whether the run finished and its
``save_dir`` are read from the archive's ``data.pkl`` by an unpickler that
imports nothing and runs nothing: every class the pickle names is a stand-in.
"""

from __future__ import annotations

import collections
import io
import logging
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import DriveSyncError

log = logging.getLogger(__name__)

ZIP_MAGIC = b"PK\x03\x04"
DARKNET_SUFFIXES = (".weights", ".backup")
PT_SUFFIXES = (".pt", ".pth")
_NUMBERED = re.compile(r"_(\d+)\.weights$")


class CheckpointError(DriveSyncError):
    """A checkpoint file is truncated, corrupt or not what its name says."""


@dataclass(frozen=True)
class DarknetHeader:
    major: int
    minor: int
    revision: int
    seen: int
    size: int  # bytes of the header itself

    def iteration(self, batch: Optional[int]) -> Optional[int]:
        return self.seen // batch if batch else None


@dataclass(frozen=True)
class WeightsInfo:
    """What a check learned; ``iteration``/``epoch`` are None when unknown."""

    path: str
    size: int
    kind: str  # "darknet" | "pt"
    seen: Optional[int] = None
    iteration: Optional[int] = None
    epoch: Optional[int] = None
    finished: bool = False
    save_dir: Optional[str] = None

    def describe(self) -> str:
        if self.kind == "darknet":
            it = f"iteration {self.iteration}" if self.iteration is not None else "iteration ?"
            return f"{it}, {self.seen} images seen"
        if self.finished:
            return "finished run (optimizer stripped)"
        if self.epoch is None:
            return "epoch ?"
        return f"epoch {self.epoch + 1} done"


def parse_darknet_header(data: bytes) -> DarknetHeader:
    """Decode the header from the first bytes of a weights file."""
    if len(data) < 12:
        raise CheckpointError(f"darknet header needs at least 12 bytes, got {len(data)}")
    major, minor, revision = struct.unpack("<iii", data[:12])
    if not (0 <= major < 1000 and 0 <= minor < 1000 and 0 <= revision < 100000):
        raise CheckpointError(f"darknet header has implausible version {major}.{minor}.{revision}")
    if major * 10 + minor >= 2:
        if len(data) < 20:
            raise CheckpointError("darknet header truncated (no 64-bit 'seen')")
        (seen,) = struct.unpack("<q", data[12:20])
        size = 20
    else:
        if len(data) < 16:
            raise CheckpointError("darknet header truncated (no 32-bit 'seen')")
        (seen,) = struct.unpack("<i", data[12:16])
        size = 16
    if seen < 0:
        raise CheckpointError(f"darknet header has negative 'seen' ({seen})")
    return DarknetHeader(major, minor, revision, seen, size)


def read_darknet_header(path: Union[str, Path]) -> DarknetHeader:
    with open(path, "rb") as f:
        return parse_darknet_header(f.read(20))


def numbered_iteration(name: str) -> Optional[int]:
    """``yolo_1000.weights`` -> 1000; names without an iteration -> None."""
    m = _NUMBERED.search(name)
    return int(m.group(1)) if m else None


def check_darknet(path: Union[str, Path], *, batch: Optional[int] = None) -> WeightsInfo:
    """Header readable, payload present, and for ``NAME_<N>.weights`` header == N."""
    p = Path(path)
    size = p.stat().st_size
    try:
        header = read_darknet_header(p)
    except CheckpointError as exc:
        raise CheckpointError(f"{p}: {exc}") from None
    if size <= header.size:
        raise CheckpointError(f"{p}: {size} bytes holds only the header, no weights")
    iteration = header.iteration(batch)
    expected = numbered_iteration(p.name)
    if expected is not None and iteration is not None and iteration != expected:
        raise CheckpointError(
            f"{p}: header says iteration {iteration} (seen {header.seen} / batch {batch}), "
            f"name says {expected}")
    return WeightsInfo(path=str(p), size=size, kind="darknet", seen=header.seen,
                       iteration=iteration)


def _torch_load(path: Path) -> Optional[Any]:
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=False)
        except TypeError:  # torch < 1.13 has no weights_only
            return torch.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure to load means "bad file"
        raise CheckpointError(f"{path}: torch.load failed: {exc}") from None


class _StandIn:
    """Every class a checkpoint's pickle names (torch, ultralytics, numpy): built,
    filled and called with anything, it keeps nothing, imports nothing, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _StandIn:
        return _StandIn()

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


_SAFE_GLOBALS = {("collections", "OrderedDict"): collections.OrderedDict}
_MAX_PICKLE = 64 << 20  # the pickle of a checkpoint is small; the tensors live beside it


class _PeekUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - see _StandIn
        return _SAFE_GLOBALS.get((module, name), _StandIn)

    def persistent_load(self, pid: Any) -> None:  # tensor storages are not read
        return None


def peek_pt(path: Union[str, Path]) -> Optional[dict]:
    """The top-level dict of a torch zip checkpoint without torch, or None.

    Enough for the plain fields (``epoch``, ``train_args``, whether ``optimizer``
    is None); tensors and models come back as empty stand-ins. Never raises:
    it informs, it does not validate (the CRCs and torch.load do that).
    """
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist()
                         if n == "data.pkl" or n.endswith("/data.pkl")), None)
            if name is None or z.getinfo(name).file_size > _MAX_PICKLE:
                return None
            data = z.read(name)
        obj = _PeekUnpickler(io.BytesIO(data)).load()
    except Exception:  # noqa: BLE001 - any malformed pickle just means "unknown"
        return None
    return obj if isinstance(obj, dict) else None


def check_pt(path: Union[str, Path], *, load: bool = True) -> WeightsInfo:
    """Zip magic and member CRCs; with torch importable and ``load``, it must load."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            raise CheckpointError(f"{p}: not a torch zip checkpoint (no PK header)")
    try:
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{p}: truncated or corrupt zip: {exc}") from None
    if bad is not None:
        raise CheckpointError(f"{p}: member {bad!r} fails its CRC")
    epoch = save_dir = None
    finished = False
    ckpt = _torch_load(p) if load else None
    if ckpt is None:  # no torch here, or not asked to load: read the plain fields
        ckpt = peek_pt(p)
    if isinstance(ckpt, dict):
        raw_epoch = ckpt.get("epoch")
        if isinstance(raw_epoch, int):
            epoch, finished = raw_epoch, raw_epoch < 0 or ckpt.get("optimizer") is None
        args = ckpt.get("train_args") or {}
        if isinstance(args, dict) and args.get("save_dir"):
            save_dir = str(args["save_dir"])
    return WeightsInfo(path=str(p), size=size, kind="pt", epoch=epoch, finished=finished,
                       save_dir=save_dir)


def check_checkpoint(path: Union[str, Path], *, batch: Optional[int] = None,
                     load: bool = True) -> WeightsInfo:
    """Dispatch on the suffix; anything else is refused."""
    name = Path(path).name.lower()
    if name.endswith(DARKNET_SUFFIXES):
        return check_darknet(path, batch=batch)
    if name.endswith(PT_SUFFIXES):
        return check_pt(path, load=load)
    raise CheckpointError(f"{path}: not a darknet (.weights/.backup) or torch (.pt) checkpoint")
