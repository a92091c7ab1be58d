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
FAKE_PAYLOAD bytes, FAKE_CHUNKS, FAKE_CHUNK_SLEEP, FAKE_EXIT_CODE.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
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


def payload(tag: str, n: int) -> bytes:
    """Deterministic bytes derived from the iteration, so content differs per iteration."""
    seed = hashlib.sha256(f"{tag}:{n}".encode()).digest()
    return (seed * (PAYLOAD // len(seed) + 1))[:PAYLOAD]


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
    backup = Path(kv_file(data)["backup"])
    net = kv_file(cfg)
    batch, max_batches = int(net["batch"]), int(net["max_batches"])
    name = Path(cfg).stem
    start = 0
    if weights:
        with open(weights, "rb") as f:
            major, minor, _rev = struct.unpack("<iii", f.read(12))
            seen = struct.unpack("<q", f.read(8))[0] if major * 10 + minor >= 2 else \
                struct.unpack("<i", f.read(4))[0]
        start = seen // batch
        print(f"FAKE resumed from {Path(weights).name} at iteration {start}", flush=True)
    else:
        print("FAKE starting from scratch at iteration 0", flush=True)
    print(f"FAKE args {' '.join(rest)}", flush=True)
    backup.mkdir(parents=True, exist_ok=True)
    for it in range(start + 1, max_batches + 1):
        time.sleep(INTERVAL)
        print(f" {it}: loss 1.0, avg loss 1.0", flush=True)
        blob = struct.pack("<iiiq", 0, 2, 0, it * batch) + payload(name, it)
        if it % LAST_EVERY == 0:
            write_slowly(backup / f"{name}_last.weights", blob)
        if it % NUM_EVERY == 0:
            write_slowly(backup / f"{name}_{it}.weights", blob)
    write_slowly(backup / f"{name}_final.weights",
                 struct.pack("<iiiq", 0, 2, 0, max_batches * batch) + payload(name, max_batches))
    print("FAKE done", flush=True)
    return int(os.environ.get("FAKE_EXIT_CODE", "0"))


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
    wdir = Path(args["project"]) / args["name"] / "weights"
    wdir.mkdir(parents=True, exist_ok=True)
    for epoch in range(start, args["epochs"]):
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
