"""The Trainer strategy: what launch needs to know about one trainer, in one place.

A trainer is one module holding one subclass of :class:`Trainer`, and one
``register_trainer`` line (:mod:`.registry`). The runner and the CLI ask the
trainer (its checkpoint suffixes, its checks, its command, the folder it
writes into, its resume rule, its best metric, its options, its notebook
cells); they never branch on a trainer's name.

The class carries what is known before a launch (the CLI's options, the
colab-cell lines); an instance is one launch, holding what ``prepare`` learnt
(a resolved binary, a batch size, the local data file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional, Sequence

from ..errors import UsageError
from ..progress import NULL_PROGRESS, Progress
from .weights import WeightsInfo

if TYPE_CHECKING:
    from ..checkpoints.families import Checkpoint
    from .runner import LaunchOptions
    from .trainer_log import TrainerLog


@dataclass(frozen=True)
class Option:
    """One command-line option of a trainer: ``flag`` and argparse's keywords.

    Data, not argparse calls: the CLI adds them (``launch NAME`` and
    ``colab-cell``), the library reads the values by ``dest``.
    """

    flag: str
    spec: dict = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.spec.get("dest") or self.flag.lstrip("-").replace("-", "_")


def option(flag: str, **spec: Any) -> Option:
    return Option(flag, spec)


@dataclass
class Resume:
    """The checkpoint a launch resumes from: downloaded to ``local`` and checked."""

    name: str
    local: Path
    info: WeightsInfo
    reason: str


class Trainer:
    """One trainer. Subclasses set the class attributes and override the hooks they need."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    example: ClassVar[str] = ""
    data_help: ClassVar[str] = "the dataset's config file"
    #: names of the checkpoint files it writes (resume candidates, mirrored files)
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: how :class:`.trainer_log.TrainerLog` reads its output ("darknet", else epochs)
    log_dialect: ClassVar[str] = "epochs"
    #: ``launch NAME``'s own options (besides --data and the common ones)
    options: ClassVar[tuple[Option, ...]] = ()
    #: the options ``colab-cell --trainer NAME`` takes for it (others' are refused)
    cell_options: ClassVar[tuple[Option, ...]] = ()
    #: options the cell must hold, with the placeholder written when one is missing
    cell_placeholders: ClassVar[dict[str, str]] = {"data": "/WORK1/data.yaml"}
    #: extra packages the notebook's install cell pip-installs
    cell_packages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, opts: LaunchOptions, *, progress: Progress = NULL_PROGRESS):
        self.opts = opts
        self.progress = progress
        #: the size every checkpoint has (darknet's cfg fixes it), for the truncation guards
        self.expected_size: Optional[int] = None

    def own(self, key: str, default: Any = None) -> Any:
        """The value of one of this trainer's options (``LaunchOptions.own``)."""
        value = self.opts.own.get(key)
        return default if value is None else value

    # ---- before anything runs ---------------------------------------------------
    def validate(self) -> None:
        """Refuse options that cannot work (UsageError), before the lease is taken."""

    def prepare(self) -> None:
        """Check the binary, config and dataset before training (ConfigError stops)."""

    # ---- resume -------------------------------------------------------------------
    def resumable(self, checkpoint: Checkpoint) -> bool:
        """Whether a complete checkpoint on the remote is one this trainer resumes from."""
        return True

    def refuse(self, checkpoint: Checkpoint, candidates: list) -> Optional[str]:
        """Why ``checkpoint`` cannot be resumed, seen from its listing alone; None: try it."""
        return None

    def check_resume(self, local: Path, checkpoint: Checkpoint) -> WeightsInfo:
        """Check a downloaded checkpoint (CheckpointError: skip it for the one before)."""
        return self.check_mirror(local)

    def fresh_start(self, skipped: list) -> str:
        """The line said when there is nothing to resume from."""
        return "no usable checkpoint on the remote; starting from scratch"

    def nothing_to_resume(self, resume: Resume) -> Optional[str]:
        """Why the run ``resume`` comes from needs no training (a finished run), or None."""
        return None

    # ---- the run --------------------------------------------------------------------
    def command(self, resume: Optional[Resume]) -> list[str]:
        raise NotImplementedError

    def watch_dir(self, resume: Optional[Resume]) -> Path:
        """The folder it writes checkpoints into: the mirror watches it."""
        raise NotImplementedError

    def check_mirror(self, snapshot: Path) -> WeightsInfo:
        """Check a finished checkpoint before it is mirrored (CheckpointError: refuse it)."""
        raise NotImplementedError

    def best_metric(self, view: TrainerLog) -> Callable[[Path, str], Optional[tuple]]:
        """What a ``_best`` file scored, as ``(what, value)``; None when unknown."""
        return lambda snapshot, name: None

    def extras(self) -> list[tuple[Path, str]]:
        """Files beside the checkpoints worth mirroring (local path, remote name)."""
        return []

    # ---- the notebook (colab-cell) -----------------------------------------------------
    @classmethod
    def cell_launch_args(cls, args: Any) -> list[str]:
        """Its part of the cell's ``drivesync launch NAME --data ...`` line."""
        return []

    @classmethod
    def cells(cls, args: Any, *, install_dir: str) -> list[tuple[str, str]]:
        """Cells of its own, run before the launch cell: (title, body)."""
        return []


def given(args: Any, dest: str) -> Any:
    """An argparse value, None when the namespace lacks it (another verb's args)."""
    return getattr(args, dest, None)


def flags(options: Sequence[Option]) -> str:
    return ", ".join(o.flag for o in options)


def refuse_foreign(trainer: type[Trainer], others: Sequence[type[Trainer]], args: Any) -> None:
    """``--cfg, --map: not an option of `launch ultralytics```: the other trainers' options."""
    mine = {o.dest for o in trainer.cell_options}
    wrong: list[Option] = []
    for other in others:
        for o in other.cell_options:
            if o.dest not in mine and o.dest not in {w.dest for w in wrong} \
                    and given(args, o.dest) not in (None, False):
                wrong.append(o)
    if wrong:
        raise UsageError(f"{flags(wrong)}: not an option of `launch {trainer.name}`")
