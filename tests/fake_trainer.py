"""A stand-in for darknet and Ultralytics' ``yolo`` that writes checkpoints slowly.

darknet mode: ``fake_trainer.py darknet detector train DATA CFG [WEIGHTS] -dont_show [-map] ...``
  reads ``backup=`` from DATA, ``batch=``/``max_batches=`` from CFG's [net];
  resumes from WEIGHTS' header (seen / batch); writes NAME_last.weights every
  FAKE_LAST_EVERY iterations and NAME_<i>.weights every FAKE_NUM_EVERY, in
  chunks (the file stays open and partial while it is written, like darknet).
yolo mode: ``fake_trainer.py yolo train resume model=LAST`` or
  ``fake_trainer.py yolo train data=.. model=.. epochs=N project=P name=N ...``;
  writes P/N/weights/last.pt (a zip holding the epoch and the train args) every epoch.

Knobs (env): FAKE_INTERVAL seconds per iteration, FAKE_LAST_EVERY, FAKE_NUM_EVERY,
FAKE_PAYLOAD bytes, FAKE_CHUNKS, FAKE_CHUNK_SLEEP, FAKE_EXIT_CODE, FAKE_STOP_AT (last
iteration, below the cfg's max_batches), FAKE_TRAP_TERM (on SIGTERM: finish the current
checkpoint, print "FAKE got SIGTERM" and exit with FAKE_TERM_CODE, as a trainer that
saves on SIGTERM would), FAKE_NAN (weights full of NaN, as
a diverged run saves), FAKE_TRUNCATE_AT (darknet: the first checkpoint stops after this
many bytes and the trainer exits 137, as darknet killed while saving leaves it).

Like the real trainers, both modes read the dataset before training: every image listed
in obj.data's ``train=`` (darknet) or data.yaml's ``path``/``train``/``val`` (yolo, with
each image's label beside it) is opened, and a missing one ends the run with exit code 66
and its path on stderr; the starting weights are opened too.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import struct
import sys
import time
import zipfile
from pathlib import Path

INTERVAL = float(os.environ.get("FAKE_INTERVAL", "0.02"))
LAST_EVERY = int(os.environ.get("FAKE_LAST_EVERY", "2"))
NUM_EVERY = int(os.environ.get("FAKE_NUM_EVERY", "5"))
PAYLOAD = int(os.environ.get("FAKE_PAYLOAD", "40000"))
CHUNKS = int(os.environ.get("FAKE_CHUNKS", "8"))
CHUNK_SLEEP = float(os.environ.get("FAKE_CHUNK_SLEEP", "0.003"))


TERM: list = []


def _trap_term() -> None:
    if os.environ.get("FAKE_TRAP_TERM"):
        signal.signal(signal.SIGTERM, lambda *_: TERM.append(1))


def _stopped() -> bool:
    if TERM:
        print("FAKE got SIGTERM", flush=True)
    return bool(TERM)


def read_images(listing: Path, *, labels: bool = False) -> int:
    """Open every image a list file names (and its label); exit 66 on the first missing."""
    count = 0
    for line in listing.read_text().splitlines():
        path = line.strip()
        if not path:
            continue
        needed = [path] + ([os.path.splitext(path)[0] + ".txt"] if labels else [])
        for one in needed:
            try:
                with open(one, "rb") as f:
                    f.read(8)
            except OSError as exc:
                print(f"FAKE cannot open {one}: {exc}", file=sys.stderr, flush=True)
                sys.exit(66)
        count += 1
    return count


def payload(tag: str, n: int) -> bytes:
    """Deterministic bytes derived from the iteration, so content differs per iteration."""
    seed = hashlib.sha256(f"{tag}:{n}".encode()).digest()
    data = bytearray((seed * (PAYLOAD // len(seed) + 1))[:PAYLOAD])
    # finite float32 values (a real trainer's weights): clear each value's top exponent bit
    data[3::4] = bytes(b & 0x3F for b in data[3::4])
    if os.environ.get("FAKE_NAN"):  # a diverged run (loss nan) saves weights full of NaN
        data[:] = b"\x00\x00\xc0\x7f" * (len(data) // 4) + bytes(len(data) % 4)
    return bytes(data)


def write_slowly(path: Path, data: bytes) -> None:
    step = max(1, len(data) // CHUNKS)
    with open(path, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i:i + step])
            f.flush()
            time.sleep(CHUNK_SLEEP)


def kv_file(path: str) -> dict:
    out, section = {}, None
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line
        elif "=" in line and section in (None, "[net]"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def darknet(argv: list) -> int:
    assert argv[:2] == ["detector", "train"], argv
    data, cfg, rest = argv[2], argv[3], argv[4:]
    weights = rest[0] if rest and not rest[0].startswith("-") else None
    values = kv_file(data)
    backup = Path(values["backup"])
    if "train" in values:
        print(f"FAKE read {read_images(Path(values['train']))} training images", flush=True)
    net = kv_file(cfg)
    batch, max_batches = int(net["batch"]), int(net["max_batches"])
    max_batches = min(max_batches, int(os.environ.get("FAKE_STOP_AT", max_batches)))
    name = Path(cfg).stem
    start = 0
    if weights:
        with open(weights, "rb") as f:
            major, minor, _rev = struct.unpack("<iii", f.read(12))
            seen = struct.unpack("<q", f.read(8))[0] if major * 10 + minor >= 2 else \
                struct.unpack("<i", f.read(4))[0]
        start = seen // batch
        if start == 0:
            print(f"FAKE starting from pretrained {Path(weights).name}", flush=True)
        print(f"FAKE resumed from {Path(weights).name} at iteration {start}", flush=True)
    else:
        print("FAKE starting from scratch at iteration 0", flush=True)
    print(f"FAKE args {' '.join(rest)}", flush=True)
    backup.mkdir(parents=True, exist_ok=True)
    _trap_term()
    for it in range(start + 1, max_batches + 1):
        if _stopped():
            return int(os.environ.get("FAKE_TERM_CODE", "0"))
        time.sleep(INTERVAL)
        print(f" {it}: loss 1.0, avg loss 1.0", flush=True)
        blob = struct.pack("<iiiq", 0, 2, 0, it * batch) + payload(name, it)
        if "FAKE_TRUNCATE_AT" in os.environ and it % LAST_EVERY == 0:
            cut = int(os.environ["FAKE_TRUNCATE_AT"])
            write_slowly(backup / f"{name}_last.weights", blob[:cut])
            print("FAKE killed while saving", flush=True)
            return 137
        if it % LAST_EVERY == 0:
            write_slowly(backup / f"{name}_last.weights", blob)
        if it % NUM_EVERY == 0:
            write_slowly(backup / f"{name}_{it}.weights", blob)
    write_slowly(backup / f"{name}_final.weights",
                 struct.pack("<iiiq", 0, 2, 0, max_batches * batch) + payload(name, max_batches))
    print("FAKE done", flush=True)
    return int(os.environ.get("FAKE_EXIT_CODE", "0"))


def read_dataset(data_yaml: Path) -> int:
    """data.yaml's ``path`` + ``train``/``val`` (list files of image paths), as Ultralytics."""
    kv = {}
    for line in data_yaml.read_text().splitlines():
        if ":" in line and not line.startswith((" ", "#")):
            k, v = line.split(":", 1)
            kv[k.strip()] = v.strip().strip('"')
    root = Path(kv["path"])
    return sum(read_images(root / kv[key], labels=True) for key in ("train", "val"))


def yolo(argv: list) -> int:
    assert argv[0] == "train", argv
    kv = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
    if "resume" in argv[1:]:
        with zipfile.ZipFile(kv["model"]) as z:
            args = json.loads(z.read("fake/args.json"))
            start = int(z.read("fake/epoch")) + 1
        print(f"FAKE Resuming training {kv['model']} from epoch {start + 1} "
              f"to {args['epochs']} total epochs", flush=True)
    else:
        args = {"data": kv["data"], "model": kv["model"], "epochs": int(kv.get("epochs", 3)),
                "project": kv.get("project", "runs/detect"), "name": kv.get("name", "train")}
        start = 0
        print("FAKE fresh run", flush=True)
        if os.path.dirname(args["model"]):  # a bare name is a download in the real yolo
            with open(args["model"], "rb") as f:
                f.read(4)
    if Path(args["data"]).is_file():
        print(f"FAKE read {read_dataset(Path(args['data']))} images", flush=True)
    wdir = Path(args["project"]) / args["name"] / "weights"
    wdir.mkdir(parents=True, exist_ok=True)
    _trap_term()
    for epoch in range(start, args["epochs"]):
        if _stopped():
            return int(os.environ.get("FAKE_TERM_CODE", "0"))
        time.sleep(INTERVAL)
        print(f"      {epoch + 1}/{args['epochs']}  box_loss 1.0", flush=True)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("fake/epoch", str(epoch))
            z.writestr("fake/args.json", json.dumps(args))
            z.writestr("fake/data.pkl", payload("pt", epoch))
        write_slowly(wdir / "last.pt", buf.getvalue())
    print("FAKE done", flush=True)
    return 0


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    sys.exit(darknet(rest) if mode == "darknet" else yolo(rest))
