"""The format registry: every input format ``prepare`` reads, by its ``--format`` name.

Each format's module describes itself once as a :class:`~.items.Format`
(name, a detector of its files, a converter ``(src, options, report, progress)
-> Conversion`` taking :class:`~.items.ConvertOptions`); adding a format is one
new module and one :func:`register` line below. Nothing else names a format:
``prepare``, ``convert`` and the CLI's ``--format`` choices read this registry.
"""

from __future__ import annotations

from typing import Dict, List

from ..errors import UsageError
from . import coco, crowdhuman, voc, yolo
from .items import Format

REGISTRY: Dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add (or replace) a format; the order of registration is --format's list in the help."""
    REGISTRY[fmt.name] = fmt
    return fmt


register(voc.FORMAT)
register(crowdhuman.FORMAT)
register(coco.FORMAT)
register(yolo.FORMAT)
FORMATS = tuple(REGISTRY)  # the built-in formats (the CLI's --format choices)


def get_format(name: str) -> Format:
    """The registered format called ``name``; a usage error naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"--format must be one of {', '.join(REGISTRY)}, not {name!r}") from None


def formats_found(src: str) -> List[str]:
    """The formats whose files ``src`` holds, in registry order (for "which --format fits")."""
    return [f.name for f in REGISTRY.values() if f.detect(src)]
