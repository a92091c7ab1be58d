"""drivesync: YOLO datasets and checkpoints between a desktop, Google Drive and Colab.

``import drivesync`` exposes the verbs as functions with keyword arguments
(README "Python API"): ``push``, ``pull``, ``dedupe``, ``prune``, ``latest``,
``ls``, ``quota``, ``mkdir``, ``prepare``, ``convert``, ``shard``, ``configs``,
``check``; plus ``open_remote``, ``parse_address`` and the settings helpers.
They are loaded on first use, so ``import drivesync`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_EXPORTS = {
    **{verb: ("api", verb) for verb in
       ("push", "pull", "dedupe", "prune", "latest", "ls", "quota", "mkdir",
        "prepare", "convert", "shard", "configs", "check")},
    "open_remote": ("remotes", "open_remote"),
    "parse_address": ("remotes", "parse_address"),
    "Settings": ("config", "Settings"),
    "load_settings": ("config", "load_settings"),
    "resolve_settings": ("config", "resolve_settings"),
    "DriveSyncError": ("errors", "DriveSyncError"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'drivesync' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
