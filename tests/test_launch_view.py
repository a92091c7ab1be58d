"""The trainer's output: whole in a log file, condensed in the notebook, mAP read right."""

from __future__ import annotations

from drivesync.launch.trainer_log import TrainerLog

# what AlexeyAB darknet prints (src/detector.c: train_detector, validate_detector_map)
DARKNET = (
    "\n (next mAP calculation at 100 iterations) "
    "\x1b[H\x1b[J99/200: loss=1.5 hours left=0.1\x07\n"
    " 99: 1.523400, 1.610000 avg loss, 0.001000 rate, 0.312000 seconds, 198 images, "
    "0.100000 hours left\n"
    "v3 (iou loss, Normalizer: (iou: 0.07, obj: 1.00, cls: 1.00) Region 30 Avg (IOU: 0.5)\n"
    "\x1b[H\x1b[J100/200: loss=1.4 hours left=0.1\x07\n"
    " 100: 1.400000, 1.590000 avg loss, 0.001000 rate, 0.300000 seconds, 200 images, "
    "0.090000 hours left\n"
    " calculation mAP (mean average precision)...\n"
    " mean average precision (mAP@0.50) = 0.005210, or 0.52 % \n"
    "\n mean_average_precision (mAP@0.50) = 0.005210 \n"
    "New best mAP!\n"
    "Saving weights to backup/yolo_best.weights\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_darknet_output_is_parsed_logged_whole_and_shown_condensed(tmp_path):
    clock = Clock()
    best: list = []
    log = TrainerLog(tmp_path / "logs" / "train.log", every=10, clock=clock,
                     on_best=best.append)
    shown = ""
    for i in range(0, len(DARKNET), 17):  # arbitrary chunks, as the pipe delivers them
        clock.now += 0.1
        shown += log.feed(DARKNET[i:i + 17])
    shown += log.final()
    log.close()
    assert (tmp_path / "logs" / "train.log").read_text() == DARKNET  # every byte
    p = log.progress
    assert (p.iteration, p.total, p.loss, p.avg_loss) == (100, 200, 1.4, 1.59)
    assert p.map == p.best_map == 0.00521 and best == [0.00521]
    assert "\x1b" not in shown and "\x07" not in shown and "Region 30" not in shown
    assert " 99: 1.5234" not in shown  # the raw per-iteration lines are condensed
    assert "New best mAP!" in shown and "Saving weights" in shown
    assert "progress: iteration 100/200, loss 1.400 (avg 1.590), mAP@0.50 0.52% " \
           "(best 0.52%)" in shown


def test_verbose_shows_everything_and_nan_is_said_once(tmp_path):
    log = TrainerLog(None, verbose=True)
    assert log.feed(DARKNET) == DARKNET
    quiet = TrainerLog(None, every=1e9)
    text = "".join(f" {i}: -nan, -nan avg loss, 0.001 rate, 0.3 seconds, 8 images\n"
                   for i in range(1, 5))
    shown = quiet.feed("Cannot load image broken/0.png\n" + text)
    assert shown.count("loss is nan") == 1 and "Cannot load image broken/0.png" in shown


def test_ultralytics_epochs_are_read():
    log = TrainerLog(None, kind="ultralytics", every=0)
    shown = log.feed("      Epoch    GPU_mem   box_loss\n"
                     "        3/50      1.2G      1.234      2.1    1.0   12   640: 100%\n")
    assert log.progress.iteration == 3 and log.progress.total == 50
    assert "progress: epoch 3/50, loss 1.234" in shown


def test_charts_and_the_log_are_mirrored_with_the_checkpoints(tmp_path, local_remote, capsys,
                                                             monkeypatch):
    """darknet writes chart.png / chart_<cfg>.png into its working directory."""
    import sys
    from pathlib import Path

    from drivesync.cli import main

    fake = Path(__file__).parent / "fake_trainer.py"
    (tmp_path / "obj.data").write_text(f"classes = 1\nbackup = {tmp_path / 'backup'}\n")
    (tmp_path / "yolo.cfg").write_text("[net]\nbatch=4\nmax_batches=4\n")
    darknet = tmp_path / "darknet"
    darknet.write_text("#!/bin/sh\nprintf 'PNG1' > chart.png\nprintf 'PNG2' > chart_yolo.png\n"
                       f'exec "{sys.executable}" -u "{fake}" darknet "$@"\n')
    darknet.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAKE_INTERVAL", "0.0")
    assert main(["launch", "darknet", "--data", "obj.data", "--cfg", "yolo.cfg", "--darknet",
                 str(darknet), "--weights", str(local_remote.root), "--work-dir",
                 str(tmp_path / "work"), "--interval", "0.03", "--no-mount"]) == 0
    out = capsys.readouterr().out
    assert " 2: loss 1.0" not in out and "-v: all of it" in out  # condensed without -v
    names = {e.name: e for e in local_remote.list("")}
    assert (local_remote.root / "chart.png").read_bytes() == b"PNG1"
    assert (local_remote.root / "chart_yolo.png").read_bytes() == b"PNG2"
    assert "yolo_final.weights" in names
    (log,) = local_remote.list("logs")
    assert "FAKE done" in (local_remote.root / "logs" / log.name).read_text()
