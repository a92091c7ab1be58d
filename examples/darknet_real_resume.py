"""The README's Colab loop with the real AlexeyAB darknet: kill -9 twice, wipe, resume.

Not a unit test (it needs the darknet binary and a few minutes of CPU): a check you
run by hand, which plays the desktop and three Colab runtimes on one machine
against drivesync's Drive emulator (the real Drive client over HTTP):

1. desktop: generate a small VOC dataset (64x64), patch the tarball's
   yolov4-tiny.cfg small (filters / 4), `drivesync prepare` it with
   --max-batches/--burn-in, add ``savelast``/``saveweights`` to obj.data (darknet
   reads them there) so checkpoints come every few iterations, `push --pack`;
2. runtime 1: `drivesync launch darknet --map` stages, trains from scratch; once a
   ``_last`` is mirrored, kill -9 (the whole process group, darknet included);
3. runtime 2 (same disk): relaunch, resume from that ``_last``; kill -9 again;
4. runtime 3 (local disk wiped): relaunch, resume, train to the end;
5. NaN: resume the finished run on images darknet cannot load (loss -nan); the
   NaN ``_last`` is refused and the good copy on Drive stays;
6. truncated: a ``_last`` cut short (as a kill during darknet's own write into the
   mount leaves it) as the only checkpoint of a folder: launch skips it and
   starts from scratch, saying so; beside whole ones it falls back to them.

    ../shared/tools/build-darknet.sh /tmp/darknet-real
    python examples/darknet_real_resume.py --darknet /tmp/darknet-real/darknet/darknet

Exit code 0 when every check passed; the last lines are the checks.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from drivesync.config import Settings
from drivesync.datasets.sample import make_sample_voc
from drivesync.emulator import Emulator
from drivesync.hashing import md5_file
from drivesync.launch.darknet_cfg import expected_weights_size
from drivesync.launch.weights import check_darknet
from drivesync.remotes import open_remote

TOKEN = "example-token"
NAME = "sample"
TARBALL_GLOB = "darknet-AlexeyAB-*.tar.gz"


def sh(argv: list, env: dict, **kw) -> subprocess.CompletedProcess:
    print("$ " + " ".join(map(str, argv)), flush=True)
    return subprocess.run(argv, env=env, check=True, **kw)


def base_cfg(third_party: Path, dest: Path) -> Path:
    """yolov4-tiny.cfg from the source tarball, its filters / 4 (a CPU trains it fast)."""
    tarball = sorted(third_party.glob(TARBALL_GLOB))[0]
    with tarfile.open(tarball) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("cfg/yolov4-tiny.cfg"))
        text = tar.extractfile(member).read().decode()
    lines = [re.sub(r"^filters=(\d+)", lambda m: f"filters={max(8, int(m.group(1)) // 4)}", ln)
             for ln in text.splitlines()]
    dest.write_text("\n".join(lines) + "\n")
    return dest


def on_drive(emu: Emulator, folder: str) -> dict:
    ids = {f["id"] for f in emu.state.all_files() if f["name"] == folder and not f["trashed"]}
    return {f["name"]: f for f in emu.state.all_files()
            if set(f["parents"]) & ids and not f["trashed"]}


def run_until(argv: list, env: dict, cwd: Path, log: Path, ready, timeout: float) -> str:
    """Start a runtime; kill -9 its process group once ``ready(output)``; its output."""
    print("$ " + " ".join(map(str, argv)), flush=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if ready(log.read_text(errors="replace")):
                break
            time.sleep(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return log.read_text(errors="replace")


def mirrored_last(text: str) -> list:
    return [int(m) for m in re.findall(r"mirrored \S+_last\.weights \(iteration (\d+)", text)]


def main() -> int:
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--darknet", default=os.environ.get("DRIVESYNC_DARKNET"),
                    help="the darknet binary (default $DRIVESYNC_DARKNET)")
    ap.add_argument("--third-party", default=str(here.parent / "shared" / "third_party"),
                    help="folder holding the darknet source tarball (for its yolov4-tiny.cfg)")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--every", type=int, default=300, help="savelast: _last every N iterations")
    ap.add_argument("--max-batches", type=int, default=1500)
    ap.add_argument("--dir", help="work folder to keep (default: a temp folder)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per runtime")
    args = ap.parse_args()
    if not args.darknet or not Path(args.darknet).exists():
        print("no darknet binary: pass --darknet (../shared/tools/build-darknet.sh builds one)")
        return 2

    work = Path(args.dir or tempfile.mkdtemp(prefix="drivesync-darknet-"))
    work.mkdir(parents=True, exist_ok=True)
    emu = Emulator(token=TOKEN)
    url = emu.start()
    env = dict(os.environ, DRIVESYNC_TOKEN=TOKEN, DRIVESYNC_API_ENDPOINT=url,
               DRIVESYNC_WRITE_RATE="0", PYTHONUNBUFFERED="1")
    ds = [sys.executable, "-m", "drivesync"]
    root = work / "WORK1"
    content = work / "content"
    checks: dict = {}
    try:
        # 1. the desktop
        make_sample_voc(work / "voc", images=args.images)
        cfg0 = base_cfg(Path(args.third_party), work / "yolov4-tiny.cfg")
        sh([*ds, "prepare", str(work / "voc"), str(work / "out"), "--format", "voc",
            "--name", NAME, "--root", str(root / NAME), "--darknet-cfg", str(cfg0),
            "--width", "64", "--height", "64", "--batch", "2", "--subdivisions", "1",
            "--max-batches", str(args.max_batches), "--burn-in", "5", "-q"], env)
        data = work / "out" / NAME / "obj.data"
        data.write_text(data.read_text() + f"savelast = {args.every}\nsaveweights = "
                        f"{2 * args.every}\n")
        sh([*ds, "push", str(work / "out" / NAME), f"drive:space_Colab/{NAME}", "--pack",
            "-q"], env)
        cfg = root / NAME / f"yolov4-tiny-{NAME}.cfg"
        size = expected_weights_size(work / "out" / NAME / cfg.name)
        print(f"the cfg makes every checkpoint {size} bytes")

        launch = [*ds, "launch", "darknet", "--data", str(root / NAME / "obj.data"),
                  "--cfg", str(cfg), "--darknet", args.darknet, "--map",
                  "--weights", "drive:space_Colab/backup", "--dataset",
                  f"drive:space_Colab/{NAME}", "--root", str(root), "--stage-dir",
                  str(content / "data"), "--work-dir", str(content / "drivesync"),
                  "--no-mount", "--interval", "0.5", "-v",
                  # a killed runtime leaves its lease behind; the user who relaunches knows
                  # that runtime is gone
                  "--force-take-over"]

        def fresh_runtime() -> Path:
            run = content / "run"
            run.mkdir(parents=True, exist_ok=True)
            return run

        # 2. runtime 1: from scratch, kill -9 once a _last is on Drive
        out1 = run_until(launch, env, fresh_runtime(), work / "runtime1.log",
                         lambda t: mirrored_last(t), args.timeout)
        it1 = max(mirrored_last(out1), default=None)
        print(out1[-1500:])
        print(f"--- runtime 1 killed with SIGKILL after _last at iteration {it1} was mirrored")
        checks["runtime 1 mirrored a _last"] = it1 is not None

        # 3. runtime 2, same disk: resume, kill -9 after a newer _last is on Drive
        out2 = run_until(launch, env, fresh_runtime(), work / "runtime2.log",
                         lambda t: any(i > (it1 or 0) for i in mirrored_last(t)), args.timeout)
        it2 = max(mirrored_last(out2), default=None)
        print(out2[-1500:])
        print(f"--- runtime 2 killed with SIGKILL after _last at iteration {it2} was mirrored")
        checks["runtime 2 resumed from runtime 1's _last"] = re.search(
            rf"resuming from \S+_last\.weights: .*iteration {it1}\b", out2) is not None
        checks["runtime 2's darknet went on at the next iteration"] = re.search(
            rf"^\s*{(it1 or 0) + 1}: ", out2, re.M) is not None or \
            f"iteration {(it1 or 0) + 1}" in out2

        # 4. runtime 3: the local disk wiped (a new VM), train to the end
        shutil.rmtree(content)
        root.unlink()
        out3 = run_until(launch, env, fresh_runtime(), work / "runtime3.log",
                         lambda t: False, args.timeout)
        print(out3[-2500:])
        checks["runtime 3 resumed from runtime 2's _last"] = re.search(
            rf"resuming from \S+_last\.weights: .*iteration {it2}\b", out3) is not None
        checks["runtime 3 finished (exit 0)"] = "summary: trainer exit code 0" in out3
        backup = on_drive(emu, "backup")
        final = next((n for n in backup if n.endswith("_final.weights")), None)
        local = content / "data" / NAME / "backup"
        checks["Drive holds _final, the size the cfg fixes and darknet's md5"] = bool(
            final and int(backup[final]["size"]) == size
            and backup[final]["md5Checksum"] == md5_file(local / final))
        got = check_darknet(local / final, batch=2) if final else None
        checks["_final is at max_batches"] = bool(got and got.iteration == args.max_batches)
        sizes = {n: int(f["size"]) for n, f in backup.items() if n.endswith(".weights")}
        checks["every mirrored checkpoint has the cfg's size"] = set(sizes.values()) == {size}
        print(f"on Drive: {sorted(sizes)}")
        chart = [n for n in backup if n.startswith("chart") and n.endswith(".png")]
        logs = [n for n in on_drive(emu, "logs") if n.endswith(".log")]
        print(f"charts mirrored: {chart or 'none (darknet built without OpenCV)'}; "
              f"logs mirrored: {logs}")
        checks["the trainer's log is on Drive"] = bool(logs)
        best = next((n for n in backup if n.endswith("_best.weights")), None)
        if best:  # -map: darknet printed a mAP and "New best mAP!"; drivesync recorded it
            side = backup.get(f".drivesync-best-{best}.json")
            checks["_best's mAP is recorded beside it"] = side is not None
            print(f"{best} on Drive; its record: {side['name'] if side else None}")

        if not final:
            raise SystemExit(_report(checks, work))
        # 5. NaN: the finished run resumed on images darknet cannot load
        broken = work / "broken"
        broken.mkdir()
        for i in range(6):
            (broken / f"{i}.png").write_bytes(b"not an image " * 20)
            (broken / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        (broken / "train.txt").write_text("".join(f"{broken / f'{i}.png'}\n" for i in range(6)))
        (broken / "obj.data").write_text(
            f"classes = 3\ntrain = {broken / 'train.txt'}\nvalid = {broken / 'train.txt'}\n"
            f"names = {work / 'out' / NAME / 'obj.names'}\nbackup = {broken / 'backup'}\n"
            f"savelast = {args.every}\nsaveweights = 100000\n")
        more = broken / cfg.name
        longer = args.max_batches + 2 * args.every
        more.write_text(re.sub(r"max_batches=\d+", f"max_batches={longer}",
                               (work / "out" / NAME / cfg.name).read_text()))
        last_name = final.replace("_final", "_last")
        before = on_drive(emu, "backup")[last_name]["md5Checksum"]
        nan_launch = [*ds, "launch", "darknet", "--data", str(broken / "obj.data"), "--cfg",
                      str(more), "--darknet", args.darknet, "--weights",
                      "drive:space_Colab/backup", "--work-dir", str(content / "nan"),
                      "--no-mount", "--interval", "0.5", "-v", "--force-take-over"]
        out5 = run_until(nan_launch, env, fresh_runtime(), work / "runtime-nan.log",
                         lambda t: False, args.timeout)
        print(out5[-2000:])
        checks["darknet could not load the images (loss nan)"] = bool(
            re.search(r"Cannot load image|-nan|loss is nan", out5))
        checks["the NaN _last was refused with a warning"] = re.search(
            rf"not mirroring {re.escape(last_name)}: \d+ of \d+ weights are NaN", out5) is not None
        checks["the good _last stayed on Drive"] = \
            on_drive(emu, "backup")[last_name]["md5Checksum"] == before

        # 6. truncated: a _last cut short as the only checkpoint of a folder
        settings = Settings(api_endpoint=url, token=TOKEN, write_rate=0.0)
        cut = work / "cut" / last_name
        cut.parent.mkdir()
        cut.write_bytes((local / final).read_bytes()[: size // 3])  # any whole one
        with open_remote("drive:space_Colab/backup-cut", settings=settings) as remote:
            remote.upload(cut, last_name)
        short_cfg = work / "cut" / cfg.name
        short_cfg.write_text(re.sub(r"max_batches=\d+", "max_batches=3",
                                    (work / "out" / NAME / cfg.name).read_text()))
        shutil.rmtree(content)
        root.unlink(missing_ok=True)
        cut_launch = [a if a != "drive:space_Colab/backup" else "drive:space_Colab/backup-cut"
                      for a in launch]
        cut_launch[cut_launch.index("--cfg") + 1] = str(short_cfg)
        cut_launch.remove("--map")
        out6 = run_until(cut_launch, env, fresh_runtime(), work / "runtime-cut.log",
                         lambda t: False, args.timeout)
        print(out6[-1500:])
        checks["the truncated _last was skipped as truncated"] = re.search(
            rf"skipping checkpoint {re.escape(last_name)}: {size // 3} bytes, but the cfg makes "
            rf"every checkpoint {size} bytes", out6) is not None
        checks["launch said it starts from scratch"] = \
            "no whole checkpoint on the remote (1 skipped); starting from scratch" in out6
        checks["darknet started at iteration 1"] = re.search(r"^\s*1: ", out6, re.M) is not None
    finally:
        emu.stop()
    return _report(checks, work)


def _report(checks: dict, work: Path) -> int:
    for what, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    print(f"work folder: {work}")
    return 0 if checks and all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
