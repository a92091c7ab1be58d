"""The format registry: every input format ``prepare`` reads, by its ``--format`` name.

Each format's module describes itself once as a :class:`~.items.Format`
(name, a detector of its files, a converter taking :class:`~.items.ConvertOptions`);
adding a format is one new module and one entry in ``REGISTRY`` below.
"""

from __future__ import annotations

from typing import Dict, List

from ..errors import UsageError
from . import coco, crowdhuman, voc, yolo
from .items import Format

FORMATS_IN_ORDER = (  # one line per format; the order is --format's list in the help
    voc.FORMAT,
    crowdhuman.FORMAT,
    coco.FORMAT,
    yolo.FORMAT,
)
REGISTRY: Dict[str, Format] = {f.name: f for f in FORMATS_IN_ORDER}
FORMATS = tuple(REGISTRY)


def get_format(name: str) -> Format:
    """The registered format called ``name``; a usage error naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {name!r}") from None


def formats_found(src: str) -> List[str]:
    """The formats whose files ``src`` holds, in registry order (for "which --format fits")."""
    return [f.name for f in REGISTRY.values() if f.detect(src)]
