"""Ultralytics YOLOv8/11 (``yolo train``) as a :class:`.trainer.Trainer`.

It writes ``last.pt``/``best.pt``/``epoch<N>.pt`` into ``PROJECT/NAME/weights``;
a resume is ``yolo train resume model=LAST`` (every training argument,
the save folder included, comes back from the checkpoint), so only ``last``
and numbered files are resumed from, and a ``last.pt`` whose optimizer was
stripped is a finished run: nothing to resume.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

from . import preflight, trainers
from .best import pt_best_fitness
from .trainer import Resume, Trainer, given, option
from .weights import PT_SUFFIXES, WeightsInfo, check_pt

log = logging.getLogger(__name__)


class Ultralytics(Trainer):
    name = "ultralytics"
    help = "Ultralytics YOLOv8/11 (`pip install ultralytics`)"
    example = ("drivesync launch ultralytics --data data.yaml --model yolov8n.pt "
               "--epochs 100 --weights drive:space_Colab/runs -- imgsz=640 batch=16")
    data_help = "Ultralytics data.yaml"
    suffixes = PT_SUFFIXES
    options = (
        option("--model", required=True, help="yolov8n.pt or a model .yaml for a fresh run"),
        option("--epochs", type=int, help="epochs to train (default: the model's)"),
        option("--project", help="runs folder (default ./runs/detect)"),
        option("--name", help="run name (default train)"),
        option("--save-period", type=int, metavar="N",
               help="also save epoch<N>.pt every N epochs"),
        option("--yolo", default="yolo", metavar="CMD", help="the yolo command (default yolo)"),
    )
    cell_options = (
        option("--model", help="ultralytics model (default yolov8n.pt)"),
        option("--epochs", type=int, help="ultralytics: epochs to train"),
    )
    cell_placeholders = {"data": "/WORK1/data.yaml"}
    cell_packages = ("ultralytics",)

    def prepare(self) -> None:
        checked = preflight.check_ultralytics_data(Path(self.opts.data))
        if checked:
            log.info("%d listed dataset files checked: present", checked)

    def _dirs(self) -> tuple[str, str]:
        return os.path.abspath(self.own("project", "runs/detect")), self.own("name", "train")

    # ---- resume -------------------------------------------------------------------
    def resumable(self, checkpoint: Any) -> bool:
        """``yolo train resume`` wants a run's own ``last.pt`` (or an ``epoch<N>.pt``)."""
        return checkpoint.role in ("last", "numbered")

    def check_resume(self, local: Path, checkpoint: Any) -> WeightsInfo:
        return check_pt(local)

    def fresh_start(self, skipped: list) -> str:
        return f"no usable last.pt on the remote; starting from {self.own('model')}"

    def nothing_to_resume(self, resume: Resume) -> Optional[str]:
        if resume.info.finished:
            return f"{resume.name} is from a finished run (optimizer stripped): nothing to resume"
        return None

    # ---- the run --------------------------------------------------------------------
    def command(self, resume: Optional[Resume]) -> list[str]:
        project, name = self._dirs()
        return trainers.ultralytics_command(
            yolo=self.own("yolo", "yolo"), data=self.opts.data, model=self.own("model"),
            epochs=self.own("epochs"), project=project, name=name,
            save_period=self.own("save_period"),
            resume_from=resume.local if resume else None, extra=self.opts.extra)

    def watch_dir(self, resume: Optional[Resume]) -> Path:
        """``PROJECT/NAME/weights``; a resumed run saves where the checkpoint says."""
        if resume and resume.info.save_dir:
            return Path(resume.info.save_dir) / "weights"
        project, name = self._dirs()
        return trainers.ultralytics_weights_dir(project=project, name=name)

    def check_mirror(self, snapshot: Path) -> WeightsInfo:
        return check_pt(snapshot, load=False)

    def best_metric(self, view: Any) -> Callable[[Path, str], Optional[tuple]]:
        """``best.pt`` carries its own ``best_fitness``."""

        def metric(snapshot: Path, name: str) -> Optional[tuple]:
            value = pt_best_fitness(snapshot)
            return ("best_fitness", value) if value is not None else None

        return metric

    # ---- the notebook ------------------------------------------------------------------
    @classmethod
    def cell_launch_args(cls, args: Any) -> list[str]:
        out = ["--model", given(args, "model") or "yolov8n.pt"]
        if given(args, "epochs"):
            out += ["--epochs", str(args.epochs)]
        return out
