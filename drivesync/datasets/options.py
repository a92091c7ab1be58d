"""What a dataset run is asked to do, as small option objects (s3transfer's TransferConfig idea).

One object per step (:class:`~.items.ConvertOptions`, :class:`ShardOptions`,
:class:`~.configs.ConfigOptions`), composed into :class:`PrepareOptions`. Each
default is written once, here or in the step's module; the CLI and the Python
API (``drivesync.prepare(...)``) build these from their flags and keywords, and
the pipelines in :mod:`.prepare` read them (the result carries only results).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Collection, Optional, Sequence, Tuple, Union

from ..config import DEFAULT_MAX_FILES
from .configs import ConfigOptions
from .items import ConvertOptions


@dataclass(frozen=True)
class ShardOptions:
    """How files get into the output: shard size, name, link/copy/move, name folding."""

    max_files: int = DEFAULT_MAX_FILES  # files per shard folder, images plus labels
    name: Optional[str] = None          # the dataset folder under OUT (default: SRC's name)
    mode: str = "link"                  # link (copy across file systems), copy or move
    ascii_names: bool = False           # fold image names to ASCII


@dataclass(frozen=True)
class PrepareOptions:
    """Everything one ``prepare`` (or ``convert``, ``shard``) run is asked for.

    ``classes`` is ``a,b,c`` or a list, ``classes_file`` one name per line (read
    after SRC and OUT are checked); ``convert.classes`` is filled from them.
    """

    fmt: str
    classes: Union[str, Sequence[str], None] = None
    classes_file: Optional[str] = None
    convert: ConvertOptions = field(default_factory=ConvertOptions)
    shard: ShardOptions = field(default_factory=ShardOptions)
    configs: ConfigOptions = field(default_factory=ConfigOptions)
    dry_run: bool = False
    check: bool = True


# The ConvertOptions a caller may set (the rest are filled in by the pipeline).
CONVERT_KEYWORDS = ("keep_difficult", "keep_crowd", "box", "head_class", "images")
# What the single steps take: convert writes one flat folder, shard reads YOLO pairs.
FOR_CONVERT = (*CONVERT_KEYWORDS, "mode", "ascii_names")
FOR_SHARD = ("max_files", "name", "mode", "ascii_names")


def _names(cls: type) -> Tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def prepare_options(fmt: str, *, classes: Union[str, Sequence[str], None] = None,
                    classes_file: Optional[str] = None, dry_run: bool = False,
                    check: bool = True, only: Optional[Collection[str]] = None,
                    **keywords: Any) -> PrepareOptions:
    """PrepareOptions from flat keywords named like the CLI's flags (``max_files=40``,
    ``keep_difficult=True``, ``val_fraction=0.2``): each goes to the step that reads it;
    a name no step knows (or not in ``only``) is a TypeError, as for any function."""
    unknown = [k for k in keywords if only is not None and k not in only]
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    groups = {}
    for key, cls in (("convert", ConvertOptions), ("shard", ShardOptions),
                     ("configs", ConfigOptions)):
        allowed = CONVERT_KEYWORDS if cls is ConvertOptions else _names(cls)
        groups[key] = cls(**{k: keywords.pop(k) for k in allowed if k in keywords})
    if keywords:
        raise TypeError(f"unexpected keyword argument {next(iter(keywords))!r}")
    return PrepareOptions(fmt=fmt, classes=classes, classes_file=classes_file, dry_run=dry_run,
                          check=check, **groups)
