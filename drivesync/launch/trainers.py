"""Pure command building for the trainers, plus reading their small config files.

Nothing here runs a process: the runner executes what these functions return,
and tests check the argv lists directly.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

from ..errors import ConfigError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]


# ---- darknet ---------------------------------------------------------------
def _read_text(p: Path, what: str) -> str:
    try:
        return p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found") from None


def read_data_file(path: PathLike) -> dict[str, str]:
    """``key = value`` lines of a darknet ``.data`` file (``#`` comments allowed)."""
    p = Path(path)
    text = _read_text(p, "darknet data file")
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise ConfigError(f"{p}:{lineno}: expected 'key = value', got {raw.strip()!r}")
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def backup_dir(data_file: PathLike, *, cwd: Optional[PathLike] = None) -> Path:
    """Where darknet writes its weights: ``backup =`` in the data file (relative to cwd)."""
    values = read_data_file(data_file)
    raw = values.get("backup")
    if not raw:
        raise ConfigError(f"{data_file}: no 'backup = DIR' line; darknet would not save weights")
    p = Path(raw).expanduser()
    return p if p.is_absolute() else Path(cwd or os.getcwd()) / p


def read_cfg_net(cfg: PathLike) -> dict[str, str]:
    """Keys of the ``[net]`` (or ``[network]``) section of a darknet cfg."""
    p = Path(cfg)
    text = _read_text(p, "darknet cfg file")
    section = None
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            if section in ("net", "network"):
                break
            section = m.group(1)
            continue
        if section in ("net", "network") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def cfg_int(cfg: PathLike, key: str) -> Optional[int]:
    value = read_cfg_net(cfg).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise ConfigError(f"{cfg}: [net] {key}={value!r} is not an integer") from None


def darknet_command(*, darknet: PathLike, data: PathLike, cfg: PathLike,
                    weights: Optional[PathLike] = None, map: bool = False,
                    extra: Sequence[str] = (), line_buffered: bool = True) -> list[str]:
    """``DARKNET detector train DATA CFG [WEIGHTS] -dont_show [-map] [extra]``.

    ``stdbuf -oL`` (when present) makes darknet's C stdio flush every line, so
    the notebook shows progress as it happens instead of in 4 KiB bursts.
    """
    argv = [str(darknet), "detector", "train", str(data), str(cfg)]
    if weights:
        argv.append(str(weights))
    if "-dont_show" not in extra:
        argv.append("-dont_show")
    if map and "-map" not in extra:
        argv.append("-map")
    argv.extend(extra)
    stdbuf = shutil.which("stdbuf") if line_buffered else None
    return [stdbuf, "-oL", "-eL", *argv] if stdbuf else argv


# ---- ultralytics -------------------------------------------------------------
def _check_kv(extra: Sequence[str]) -> None:
    for item in extra:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"ultralytics extra argument {item!r}: expected key=value")


def ultralytics_command(*, yolo: str = "yolo", data: Optional[PathLike] = None,
                        model: Optional[PathLike] = None, epochs: Optional[int] = None,
                        project: Optional[PathLike] = None, name: Optional[str] = None,
                        save_period: Optional[int] = None,
                        resume_from: Optional[PathLike] = None,
                        extra: Sequence[str] = ()) -> list[str]:
    """``yolo train resume model=LAST`` when resuming, else a fresh ``yolo train ...``.

    On resume Ultralytics reloads every training argument (data, epochs,
    project, name, save_dir) from the checkpoint itself; only a few (imgsz,
    batch, device, ...) may be overridden, so extra key=value pairs still pass.
    """
    _check_kv(extra)
    argv = [yolo, "train"]
    if resume_from:
        return [*argv, "resume", f"model={resume_from}", *extra]
    if not data or not model:
        raise ConfigError("ultralytics: a fresh run needs --data and --model")
    argv += [f"data={data}", f"model={model}"]
    if epochs is not None:
        argv.append(f"epochs={epochs}")
    if project is not None:
        argv.append(f"project={project}")
    if name is not None:
        argv.append(f"name={name}")
        argv.append("exist_ok=True")  # a relaunch reuses the folder instead of NAME2
    if save_period is not None:
        argv.append(f"save_period={save_period}")
    return argv + list(extra)


def ultralytics_weights_dir(*, project: PathLike, name: str) -> Path:
    """Where Ultralytics saves ``last.pt``/``best.pt``/``epoch<N>.pt``."""
    return Path(project) / name / "weights"
