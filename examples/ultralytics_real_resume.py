"""The README's Colab loop with the real Ultralytics trainer: kill -9, relaunch, resume.

Not a test (it needs Ultralytics and torch, minutes, and ~5 GB of disk): a check
you run by hand, on a GPU machine or on the CPU, to see that `drivesync launch
ultralytics` resumes a real run. It plays both sides on one machine:

1. desktop: generate a small VOC dataset, `drivesync prepare` it, `drivesync push
   --pack` it into drivesync's Drive emulator (the real Drive client over HTTP);
2. Colab runtime 1: `drivesync launch ultralytics` stages the dataset, trains a
   fresh yolov8n.yaml, mirrors last.pt to drive:space_Colab/runs; as soon as a
   last.pt past the first epoch is on "Drive", the runtime is killed (SIGKILL to
   the whole process group, trainer included);
3. Colab runtime 2 (its local disk wiped): the same command again. It must
   resume from the mirrored last.pt ("Resuming training ... from epoch N") and
   finish every epoch, and Drive must end up with the final last.pt.

    python -m venv /tmp/ultra && /tmp/ultra/bin/pip install ultralytics
    python examples/ultralytics_real_resume.py --yolo /tmp/ultra/bin/yolo

Ultralytics runs offline (YOLO_OFFLINE=1; amp=False and plots=False, which would
download a model and a font). Exit code 0 when every check passed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from drivesync.datasets.sample import make_sample_voc
from drivesync.emulator import Emulator
from drivesync.hashing import md5_file
from drivesync.launch.weights import check_pt

TOKEN = "example-token"
NAME = "sample"


def sh(argv: list, env: dict, **kw) -> subprocess.CompletedProcess:
    print("$ " + " ".join(map(str, argv)), flush=True)
    return subprocess.run(argv, env=env, check=True, **kw)


def runs_on_drive(emu: Emulator) -> list:
    folders = {f["id"] for f in emu.state.all_files() if f["name"] == "runs" and not f["trashed"]}
    return [f for f in emu.state.all_files() if set(f["parents"]) & folders and not f["trashed"]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--yolo", default=shutil.which("yolo") or "yolo", help="the yolo command")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="Ultralytics device (cpu, 0, ...)")
    ap.add_argument("--dir", help="work folder to keep (default: a temp folder)")
    ap.add_argument("--launch-args", default="",
                    help="more `drivesync launch` options, e.g. '--save-period 1 --keep-last 1'")
    args = ap.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="drivesync-ultra-"))
    work.mkdir(parents=True, exist_ok=True)
    emu = Emulator(token=TOKEN)
    url = emu.start()
    env = dict(os.environ, DRIVESYNC_TOKEN=TOKEN, DRIVESYNC_API_ENDPOINT=url,
               DRIVESYNC_WRITE_RATE="0", YOLO_OFFLINE="1", PYTHONUNBUFFERED="1",
               YOLO_CONFIG_DIR=str(work / "yolo-config"))
    ds = [sys.executable, "-m", "drivesync"]
    root = work / "WORK1"
    try:
        # 1. the desktop
        make_sample_voc(work / "voc", images=args.images)
        sh([*ds, "prepare", str(work / "voc"), str(work / "out"), "--format", "voc",
            "--name", NAME, "--max-files", "40", "--root", str(root / NAME), "-q"], env)
        sh([*ds, "push", str(work / "out" / NAME), f"drive:space_Colab/{NAME}", "--pack",
            "-q"], env)

        # 2. Colab runtime 1, killed once a last.pt past epoch 1 is on Drive
        launch = [*ds, "launch", "ultralytics", "--data", str(root / NAME / "data.yaml"),
                  "--model", "yolov8n.yaml", "--epochs", str(args.epochs),
                  "--project", str(work / "content" / "runs"), "--name", "exp",
                  "--yolo", args.yolo, "--weights", "drive:space_Colab/runs",
                  "--dataset", f"drive:space_Colab/{NAME}", "--root", str(root),
                  "--stage-dir", str(work / "content" / "data"),
                  "--work-dir", str(work / "content" / "drivesync"), "--no-mount",
                  "--interval", "0.5", *args.launch_args.split(),
                  "--", f"imgsz={args.imgsz}", "batch=8", "workers=0",
                  "amp=False", "plots=False", "val=False", f"device={args.device}"]
        print("$ " + " ".join(launch), flush=True)
        log1 = work / "runtime1.log"
        with open(log1, "wb") as out:
            proc = subprocess.Popen(launch, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            seen: set = set()
            deadline = time.monotonic() + 1800
            while len(seen) < 2:
                seen.update(f["md5Checksum"] for f in runs_on_drive(emu)
                            if f["name"] == "last.pt")
                if proc.poll() is not None:
                    print(log1.read_text(errors="replace")[-3000:])
                    print("FAIL: runtime 1 ended before a second last.pt was mirrored")
                    return 1
                if time.monotonic() > deadline:
                    os.killpg(proc.pid, signal.SIGKILL)
                    print("FAIL: no second last.pt on Drive within 30 minutes")
                    return 1
                time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        first = log1.read_text(errors="replace")
        print(first[-2500:])
        print(f"--- runtime 1 killed with SIGKILL; {len(seen)} versions of last.pt mirrored")

        # 3. Colab runtime 2: a fresh local disk, the same command
        shutil.rmtree(work / "content")
        os.unlink(root)
        second = subprocess.run(launch, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=3600).stdout.decode(
                                    errors="replace")
        (work / "runtime2.log").write_text(second)
        print(second[-4000:])
        checks = {
            "resumed from the mirrored last.pt": "resuming from last.pt" in second,
            "Ultralytics says it resumed": re.search(r"Resuming training .*last\.pt from epoch",
                                                     second) is not None,
            "the trainer exited 0": "summary: trainer exit code 0" in second,
        }
        final = work / "content" / "runs" / "exp" / "weights" / "last.pt"
        on_drive = [f for f in runs_on_drive(emu) if f["name"] == "last.pt"]
        checks["Drive holds the final last.pt"] = (
            final.exists() and len(on_drive) == 1 and on_drive[0]["md5Checksum"] == md5_file(final))
        checks["last.pt is the finished run's"] = (
            final.exists() and zipfile.is_zipfile(final) and check_pt(final, load=False).finished)
        for what, ok in checks.items():
            print(f"{'ok  ' if ok else 'FAIL'} {what}")
        print(f"work folder: {work}")
        return 0 if all(checks.values()) else 1
    finally:
        emu.stop()


if __name__ == "__main__":
    sys.exit(main())
