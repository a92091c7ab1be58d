"""The registry of trainers: ``launch NAME`` and ``colab-cell --trainer NAME`` look here.

A new trainer is one module with a :class:`.trainer.Trainer` subclass and one
``register_trainer`` line, here or in the code that uses it.
"""

from __future__ import annotations

from ..errors import UsageError
from .trainer import Trainer
from .trainer_darknet import Darknet
from .trainer_ultralytics import Ultralytics

TRAINERS: dict[str, type[Trainer]] = {}


def register_trainer(trainer: type[Trainer]) -> type[Trainer]:
    """Make ``trainer`` launchable by its ``name`` (a later registration replaces one)."""
    if not trainer.name or not trainer.suffixes:
        raise ValueError(f"{trainer.__name__}: a trainer needs a name and checkpoint suffixes")
    TRAINERS[trainer.name] = trainer
    return trainer


def trainer_named(name: str) -> type[Trainer]:
    try:
        return TRAINERS[name]
    except KeyError:
        raise UsageError(f"unknown trainer {name!r} (known: {', '.join(TRAINERS)})") from None


register_trainer(Darknet)
register_trainer(Ultralytics)
