"""Checks before a GPU hour is spent: the dataset the trainer will read is really there.

Training on the Drive mount (``--no-stage``) with a packed dataset (shards kept as
``000.tar`` + ``000.tar.json`` on Drive) gave darknet nothing to read: "Cannot
load image" hundreds of times and a loss of -nan. So the image lists the trainer
will read (darknet's ``train=``/``valid=``, Ultralytics' ``train``/``val``) are
sampled and every sampled path must exist, and no packed shard beside them may
be left unstaged (a manifest whose folder is missing).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Optional

from ..errors import ConfigError

#: how many listed paths are checked (evenly spread over the list)
SAMPLE = 200
MANIFEST_SUFFIX = ".tar.json"


def _sample(lines: list, n: int = SAMPLE) -> list:
    if len(lines) <= n:
        return lines
    step = len(lines) / n
    return [lines[int(i * step)] for i in range(n)] + [lines[-1]]


def _list_file(path: Path, *, base: Path) -> list[Path]:
    out = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            out.append(p if p.is_absolute() else base / p)
    return out


def unstaged_shards(dirs: Iterable[Path]) -> list[Path]:
    """Packed shards (``NAME.tar.json``) in ``dirs`` whose folder ``NAME`` is missing."""
    found = []
    for d in sorted(set(dirs)):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            if name.endswith(MANIFEST_SUFFIX) and not (d / name[: -len(MANIFEST_SUFFIX)]).is_dir():
                found.append(d / name)
    return sorted(found)


def check_paths(paths: list[Path], *, source: str, total: Optional[int] = None) -> None:
    """Every path in ``paths`` (a sample of ``source``'s list) exists, no shard unstaged."""
    missing = [p for p in paths if not p.exists()]
    near = {p.parent.parent for p in paths} | {p.parent for p in paths}
    packed = unstaged_shards(d for d in near if d.is_dir())
    for p in missing:  # the shard folder a missing image would be in
        for up in p.parents:
            if up.parent.is_dir():
                packed += unstaged_shards([up.parent])
                break
    packed = sorted(set(packed))
    if packed:
        raise ConfigError(
            f"{source}: the dataset has packed shards that are not unpacked "
            f"({', '.join(str(p)[: -len('.json')] for p in packed[:3])}"
            f"{', ...' if len(packed) > 3 else ''}): the trainer would find no images there. "
            "Stage it (launch --dataset REMOTE without --no-stage unpacks the shards onto "
            "local disk) or pull it with `drivesync pull`")
    if missing:
        of = f"{len(missing)} of {len(paths)} sampled" + (f" (of {total})" if total else "")
        raise ConfigError(
            f"{source}: {of} listed files do not exist, e.g. {missing[0]}; the trainer "
            "would train on nothing (darknet: 'Cannot load image', loss -nan). Check the "
            "root link / --drive-dir, or stage the dataset with --dataset")


def check_darknet_data(data_file: Path, *, cwd: Optional[Path] = None) -> int:
    """darknet resolves ``train=``/``valid=`` and the paths they list against its cwd."""
    from .trainers import read_data_file

    cwd = Path(cwd or os.getcwd())
    values = read_data_file(data_file)
    checked = 0
    for key in ("train", "valid"):
        raw = values.get(key)
        if not raw:
            continue
        listing = Path(raw).expanduser()
        listing = listing if listing.is_absolute() else cwd / listing
        if not listing.is_file():
            raise ConfigError(f"{data_file}: {key} = {raw}: no such list file ({listing})")
        paths = _list_file(listing, base=cwd)
        if key == "train" and not paths:
            raise ConfigError(f"{listing}: lists no images; the trainer would train on nothing")
        sample = _sample(paths)
        check_paths(sample, source=str(listing), total=len(paths))
        checked += len(sample)
    return checked


_YAML_KV = re.compile(r"^(\w+)\s*:\s*(.*?)\s*(?:#.*)?$")


def _yaml_top(text: str) -> dict[str, str]:
    """Top-level ``key: scalar`` lines of a data.yaml (enough for path/train/val)."""
    out = {}
    for line in text.splitlines():
        if line[:1] in (" ", "\t", "#", "-"):
            continue
        m = _YAML_KV.match(line)
        if m and m.group(2):
            out[m.group(1)] = m.group(2).strip("'\"")
    return out


def check_ultralytics_data(data_yaml: Path) -> int:
    """``path`` + ``train``/``val``: a folder of images or a ``.txt`` list (relative to path)."""
    try:
        doc = _yaml_top(data_yaml.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return 0  # a dataset name Ultralytics resolves itself (coco8.yaml): not ours to check
    root = Path(doc.get("path", data_yaml.parent)).expanduser()
    root = root if root.is_absolute() else data_yaml.parent / root
    checked = 0
    for key in ("train", "val"):
        raw = doc.get(key)
        if not raw or raw.startswith("["):
            continue
        target = Path(raw).expanduser()
        target = target if target.is_absolute() else root / target
        if target.suffix == ".txt":
            if not target.is_file():
                raise ConfigError(f"{data_yaml}: {key}: {raw}: no such list file ({target})")
            paths = _list_file(target, base=root)
        elif target.is_dir():
            paths = [target / n for n in sorted(os.listdir(target))[:SAMPLE]]
            if not paths:
                packed = unstaged_shards([target.parent, target])
                if packed:
                    check_paths([target / "x"], source=str(target))
                raise ConfigError(f"{data_yaml}: {key}: {target} is an empty folder")
        else:
            check_paths([target], source=f"{data_yaml}: {key}")
            continue
        sample = _sample(paths)
        check_paths(sample, source=str(target), total=len(paths))
        checked += len(sample)
    return checked


def check_darknet_cfg(cfg: Path) -> None:
    """The cfg's [net] trains: darknet refuses batch=1 (official cfgs ship that way, in
    "testing" mode), and width/height must be multiples of 32."""
    from ..datasets.configs import check_darknet_net
    from ..errors import DatasetError
    from .trainers import read_cfg_net

    try:
        check_darknet_net(dict(read_cfg_net(cfg)), source=str(cfg))
    except DatasetError as exc:
        raise ConfigError(f"{exc} (set it in the cfg's [net] section, or re-run `drivesync "
                          "prepare ... --batch N --subdivisions M`)") from None
