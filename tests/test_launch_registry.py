"""A third trainer is one class and one register_trainer line (issue 11, item 5).

The toy trainer below is written only against drivesync.launch.trainer and
registered through drivesync.launch.registry; nothing else in drivesync knows
it. It then launches end to end through the CLI against the Drive emulator:
fresh run, mirrored checkpoints, a new machine resuming from the newest one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import pytest
from conftest import TOKEN

from drivesync.cli import main
from drivesync.launch.registry import TRAINERS, register_trainer
from drivesync.launch.trainer import Resume, Trainer, option
from drivesync.launch.weights import CheckpointError, WeightsInfo
from drivesync.remotes import open_remote

# The toy trainer: trains STEPS steps into OUT, a JSON checkpoint per step plus
# toy_last.ckpt; given a checkpoint, it goes on from the step written in it.
SCRIPT = """
import json, os, sys, time
out, steps = sys.argv[1], int(sys.argv[2])
start = json.load(open(sys.argv[3]))["step"] if len(sys.argv) > 3 else 0
print(f"TOY resumed at step {start}" if start else "TOY fresh start", flush=True)
os.makedirs(out, exist_ok=True)
for step in range(start + 1, steps + 1):
    time.sleep(0.05)
    for name in (f"toy_{step}.ckpt", "toy_last.ckpt"):
        with open(os.path.join(out, name), "w") as f:
            json.dump({"step": step, "pad": "x" * 100}, f)
    print(f"TOY step {step}", flush=True)
"""


class Toy(Trainer):
    name = "toy"
    help = "a toy trainer (tests)"
    suffixes = (".ckpt",)
    options = (option("--steps", type=int, default=3, help="steps to train"),
               option("--script", required=True, help="the toy trainer's script"))
    cell_options = (option("--steps", type=int, help="toy: steps"),)

    def command(self, resume: Optional[Resume]) -> list[str]:
        return [sys.executable, "-u", self.own("script"), str(self.watch_dir(resume)),
                str(self.own("steps")), *([str(resume.local)] if resume else [])]

    def watch_dir(self, resume: Optional[Resume]) -> Path:
        return Path(self.opts.work_dir) / "out"

    def check_mirror(self, snapshot: Path) -> WeightsInfo:
        try:
            step = json.loads(snapshot.read_text())["step"]
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{snapshot}: not a toy checkpoint ({exc})") from None
        return WeightsInfo(path=str(snapshot), size=snapshot.stat().st_size, kind="toy",
                           iteration=step, epoch=step - 1)


@pytest.fixture
def toy(tmp_path, emulator, monkeypatch):
    register_trainer(Toy)  # the one line
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    script = tmp_path / "toy.py"
    script.write_text(SCRIPT)
    yield script
    TRAINERS.pop("toy")


def _launch(tmp_path: Path, emulator, script: Path, work: str, steps: int) -> list:
    return ["--endpoint", emulator.url, "launch", "toy", "--data", str(tmp_path / "none"),
            "--script", str(script), "--steps", str(steps), "--work-dir", str(tmp_path / work),
            "--weights", "drive:space_Colab/toy", "--interval", "0.03", "--no-mount", "-v"]


def test_a_registered_toy_trainer_launches_mirrors_and_resumes(tmp_path, emulator, toy, capsys,
                                                               drive_settings):
    assert main(_launch(tmp_path, emulator, toy, "machine1", 3)) == 0
    out = capsys.readouterr().out
    assert "no usable checkpoint on the remote; starting from scratch" in out
    assert "TOY fresh start" in out and "TOY step 3" in out
    assert "mirrored toy_last.ckpt (epoch 3 done)" in out
    with open_remote("drive:space_Colab/toy", settings=drive_settings) as remote:
        on_drive = {e.name: e for e in remote.list("")}
    assert {"toy_1.ckpt", "toy_3.ckpt", "toy_last.ckpt"} <= set(on_drive)
    last = tmp_path / "last.ckpt"
    with open_remote("drive:space_Colab/toy", settings=drive_settings) as remote:
        remote.download(on_drive["toy_last.ckpt"], last)
    assert json.loads(last.read_text())["step"] == 3
    # a new machine (empty work folder) resumes from the newest checkpoint on Drive
    assert main(_launch(tmp_path, emulator, toy, "machine2", 5)) == 0
    out = capsys.readouterr().out
    assert "resuming from toy_" in out and "epoch 3 done" in out
    assert "TOY resumed at step 3" in out and "TOY step 5" in out
    assert "reached epoch 5 done" in out


def test_the_cli_takes_the_toy_trainers_options_from_the_registry(toy, capsys):
    with pytest.raises(SystemExit):
        main(["launch", "toy", "--help"])
    assert "--steps" in capsys.readouterr().out
    # colab-cell offers it and refuses its options for another trainer
    assert main(["colab-cell", "--trainer", "toy", "--data", "d.json", "--steps", "4",
                 "--repo-url", "https://x/y"]) == 0
    assert "!drivesync launch toy --data d.json --weights" in capsys.readouterr().out
    assert main(["colab-cell", "--trainer", "darknet", "--steps", "4"]) == 2
    assert "--steps: not an option of `launch darknet`" in capsys.readouterr().err
