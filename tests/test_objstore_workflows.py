"""push / pull / prune / latest / launch on an object store, through the CLI.

moto's S3 server runs on loopback (tests/conftest.py); s3fs/botocore talk HTTP to
it, nothing is mocked. The s3:// address and --endpoint are what a user types.
Also: multipart uploads (md5 kept as metadata), an upload killed with kill -9
and re-run, abandoned multipart uploads, and the launch-anywhere path (--no-mount,
dataset pulled from s3://, checkpoints mirrored back, --root linked).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_launch_run import BATCH, _setup

from drivesync.cli import main
from drivesync.config import Settings
from drivesync.remotes import open_remote
from drivesync.types import is_internal

pytestmark = pytest.mark.usefixtures("s3_env")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): md5(p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file() and not is_internal(p.name)}


@pytest.fixture
def s3(s3_bucket, s3_env):
    """(address of a prefix in a fresh bucket, CLI flags that reach the server)."""
    return f"s3://{s3_bucket}/space_Colab", ["--endpoint", s3_env]


def _dataset(root: Path, n: int = 12) -> Path:
    for i in range(n):
        p = root / f"images/{i % 3:03d}" / f"img{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(1000 + i))
    (root / "obj.names").write_text("person\n")
    return root


def test_push_skips_by_md5_replaces_changes_and_pull_round_trips(s3, tmp_path, capsys):
    address, flags = s3
    src = _dataset(tmp_path / "data")
    assert main(["push", str(src), f"{address}/data", *flags]) == 0
    assert "13 uploaded" in capsys.readouterr().out
    # unchanged: every file skipped by size + md5 (the single-part ETag), nothing sent
    assert main(["push", str(src), f"{address}/data", "--json", *flags]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["uploaded"] == 0 and doc["skipped"] == 13
    (src / "obj.names").write_text("person\ncar\n")
    (src / "images/000/img0.jpg").unlink()
    assert main(["push", str(src), f"{address}/data", "--delete", "--yes", "--json",
                 *flags]) == 0
    doc = json.loads(capsys.readouterr().out)
    # deleted: the old obj.names (overwritten in place) and img0.jpg (to the trash)
    assert (doc["uploaded"], doc["deleted"]) == (1, 2)
    out = tmp_path / "pulled"
    assert main(["pull", f"{address}/data", str(out), *flags]) == 0
    assert tree(out) == tree(src)
    capsys.readouterr()
    # --delete moved the file under the trash prefix: quota says so, no limit
    assert main(["quota", f"{address}/data", "--json", *flags]) == 0
    q = json.loads(capsys.readouterr().out)
    assert q["limit"] is None and q["trash"] == 1000 and q["free"] is None


def test_multipart_upload_keeps_the_md5_and_verifies(s3_bucket, s3_settings, tmp_path):
    from drivesync.remotes.objstore import ObjectRemote
    from drivesync.remotes.s3 import S3Store

    store = S3Store(s3_bucket, endpoint=s3_settings.api_endpoint, part_size=5 << 20)
    remote = ObjectRemote(store, "w")
    data = os.urandom(11 << 20)  # three parts
    (tmp_path / "big.pt").write_bytes(data)
    made = remote.upload(tmp_path / "big.pt", "big.pt")
    assert made.md5 == md5(data)
    head = store.fs.call_s3("head_object", Bucket=s3_bucket, Key="w/big.pt")
    assert head["ETag"].strip('"').endswith("-3")   # a multipart ETag is not the md5...
    assert [e.md5 for e in remote.list("")] == [md5(data)]  # ...the metadata is
    copy = remote.copy(made, "best.pt")
    assert copy.md5 == md5(data) and copy.size == len(data)
    remote.download("best.pt", tmp_path / "back.pt")
    assert (tmp_path / "back.pt").read_bytes() == data


def test_abandoned_multipart_uploads_are_invisible_and_empty_trash_aborts_them(
        s3_bucket, s3_settings, tmp_path):
    """What kill -9 in the middle of a multipart upload leaves: parts, no object."""
    remote = open_remote(f"s3://{s3_bucket}/w", settings=s3_settings)
    s3c = remote.store.fs
    mpu = s3c.call_s3("create_multipart_upload", Bucket=s3_bucket, Key="w/last.pt")
    s3c.call_s3("upload_part", Bucket=s3_bucket, Key="w/last.pt", PartNumber=1,
                UploadId=mpu["UploadId"], Body=b"x" * (5 << 20))
    assert not remote.exists("last.pt")   # nothing half-written is ever visible
    (tmp_path / "last.pt").write_bytes(b"whole")
    assert remote.upload(tmp_path / "last.pt", "last.pt").md5 == md5(b"whole")
    # one younger than stale_upload_age may be another run's, still going: left alone
    # (moto dates every upload 2010-11-10, so "younger" here takes a very long age)
    remote.stale_upload_age = 100 * 365 * 86400.0
    remote.empty_trash()
    assert len(s3c.call_s3("list_multipart_uploads", Bucket=s3_bucket).get("Uploads", [])) == 1
    remote.stale_upload_age = 3600.0
    remote.empty_trash()
    assert s3c.call_s3("list_multipart_uploads", Bucket=s3_bucket).get("Uploads", []) == []


def test_push_killed_with_sigkill_then_rerun_finishes_without_duplicates(s3, tmp_path):
    address, flags = s3
    src = tmp_path / "many"
    for i in range(150):
        p = src / f"d{i % 5}" / f"f{i:03d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(20_000 + i))
    argv = [sys.executable, "-m", "drivesync", "push", str(src), f"{address}/many",
            "--jobs", "2", "-q", *flags]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    remote = open_remote(f"{address}/many", settings=Settings(api_endpoint=flags[1]))
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            if sum(1 for e in remote.walk() if not e.is_dir) >= 10:
                break
        except Exception:  # noqa: BLE001 - the prefix may not exist yet
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = sum(1 for e in remote.walk() if not e.is_dir)
    assert before < 150, "the push finished before it could be killed"
    assert main(["push", str(src), f"{address}/many", "-q", *flags]) == 0
    files = [e for e in remote.walk() if not e.is_dir]
    assert len(files) == 150
    want = tree(src)
    assert {e.path: e.md5 for e in files} == want


def _checkpoints(remote, tmp_path: Path, names: list) -> None:
    for i, name in enumerate(names):
        p = tmp_path / "ck" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(hashlib.sha256(name.encode()).digest() * (8 + i))
        remote.upload(p, f"run/{name}")


def test_prune_and_latest_on_s3(s3, s3_settings, tmp_path, capsys):
    address, flags = s3
    remote = open_remote(address, settings=s3_settings)
    _checkpoints(remote, tmp_path, [f"y_{i}.weights" for i in (100, 200, 300, 400)]
                 + ["y_last.weights"])
    assert main(["latest", f"{address}/run", "-q", *flags]) == 0
    assert capsys.readouterr().out.strip().endswith("y_last.weights")
    assert main(["prune", f"{address}/run", "--keep-last", "2", "--yes", *flags]) == 0
    capsys.readouterr()
    left = sorted(e.name for e in remote.list("run"))
    assert left == ["y_300.weights", "y_400.weights", "y_last.weights"]
    run = open_remote(f"{address}/run", settings=s3_settings)
    assert run.quota().trash > 0   # to the .drivesync-trash/ prefix of the pruned folder
    assert main(["prune", f"{address}/run", "--keep-last", "1", "--yes", "--permanent",
                 "--empty-trash", *flags]) == 0
    assert sorted(e.name for e in remote.list("run")) == ["y_400.weights", "y_last.weights"]
    assert run.quota().trash == 0
    assert main(["latest", f"{address}/run", "--pull", str(tmp_path / "got") + "/",
                 "-q", *flags]) == 0
    assert (tmp_path / "got" / "y_last.weights").read_bytes() == \
        hashlib.sha256(b"y_last.weights").digest() * 12


def test_launch_anywhere_pulls_from_and_mirrors_to_s3(s3, s3_settings, tmp_path, capsys,
                                                       monkeypatch):
    """A plain Linux box: --no-mount, dataset staged from s3://, checkpoints mirrored
    to s3:// (no temporary names there), --root linked, then a resume from s3://."""
    address, flags = s3
    paths = _setup(tmp_path, max_batches=12)
    monkeypatch.setenv("FAKE_INTERVAL", "0.01")
    data = _dataset(tmp_path / "dataset", n=6)
    assert main(["push", str(data), f"{address}/data", "-q", *flags]) == 0
    link = tmp_path / "WORK1"
    argv = ["launch", "darknet", "--data", str(tmp_path / "obj.data"),
            "--cfg", str(tmp_path / "yolo.cfg"), "--darknet", str(paths["darknet"]),
            "--weights", f"{address}/backup", "--work-dir", str(tmp_path / "work"),
            "--dataset", f"{address}/data", "--stage-dir", str(tmp_path / "stage"),
            "--root", str(link), "--interval", "0.03", "--no-mount", *flags]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    assert tree(link / "data") == tree(data)          # the root link reaches the staged copy
    remote = open_remote(f"{address}/backup", settings=s3_settings)
    names = {e.name for e in remote.list("")}
    assert {"yolo_final.weights", "yolo_last.weights", "yolo_10.weights"} <= names
    assert "reached iteration 12" in out
    assert all(md5(paths["backup"].joinpath(n).read_bytes()) == e.md5
               for e in remote.list("") for n in [e.name] if paths["backup"].joinpath(n).exists())
    (tmp_path / "yolo.cfg").write_text(f"[net]\nbatch={BATCH}\nmax_batches=16\n")
    import shutil
    shutil.rmtree(paths["backup"])                    # a fresh machine: only s3 has them
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "resuming from yolo_final.weights" in out and "reached iteration 16" in out
    assert "dataset already staged" in out


def test_missing_bucket_and_bad_addresses_are_clear_errors(s3_env, capsys):
    flags = ["--endpoint", s3_env]
    assert main(["ls", "s3://no-such-bucket-here/x", *flags]) == 3
    err = capsys.readouterr().err
    assert "no-such-bucket-here" in err and "Traceback" not in err
    assert main(["ls", "s3://", *flags]) == 2
    assert "bucket name is required" in capsys.readouterr().err
    assert main(["ls", "s3:bucket/x", *flags]) == 2
    assert "//BUCKET/PREFIX" in capsys.readouterr().err


def test_gs_push_pull_and_quota(gcs_bucket, tmp_path, capsys):
    """The GCS leg through the CLI, the emulator found by STORAGE_EMULATOR_HOST."""
    src = _dataset(tmp_path / "data", n=5)
    address = f"gs://{gcs_bucket}/space_Colab/data"
    assert main(["push", str(src), address, "-q"]) == 0
    assert main(["push", str(src), address, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["uploaded"] == 0 and doc["skipped"] == 6
    assert main(["pull", address, str(tmp_path / "back"), "-q"]) == 0
    assert tree(tmp_path / "back") == tree(src)
    assert main(["quota", address]) == 0
    assert "unlimited" in capsys.readouterr().out


@pytest.fixture
def hangup_server():
    """A loopback port that accepts each connection and closes it at once, counting
    them: every HTTP try of a client is one connection here."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.1)
    seen = {"connections": 0}
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            seen["connections"] += 1
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}", seen
    stop.set()
    thread.join()
    srv.close()


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_retries_go_through_the_one_pacer(scheme, gcs_env, hangup_server, capsys,
                                          monkeypatch):
    """A server that hangs up: the client libraries retry nothing (one connection a
    try), the pacer makes max_tries tries, then a network error (exit 7)."""
    from drivesync.errors import TransientError

    url, seen = hangup_server
    settings = Settings(api_endpoint=url, max_tries=3, backoff_base=0.01, backoff_cap=0.02)
    remote = open_remote(f"{scheme}://bucket/x", settings=settings)
    with pytest.raises(TransientError):
        remote.list("")
    assert (remote.stats.requests, remote.stats.retries) == (3, 2)
    # two a try: aiohttp (under s3fs and gcsfs) re-sends an idempotent request once when
    # the server drops the connection unanswered (RFC 9112 9.3.1). Nothing more: s3fs's
    # 5 tries, botocore's 3 and gcsfs's 6 are off (else 2 x 5 x 3 or 2 x 6 a try)
    assert seen["connections"] == 3 * 2
    for var, value in (("MAX_TRIES", "2"), ("BACKOFF_BASE", "0.01"), ("BACKOFF_CAP", "0.02")):
        monkeypatch.setenv(f"DRIVESYNC_{var}", value)
    assert main(["ls", f"{scheme}://bucket/x", "--endpoint", url]) == 7
    assert "Traceback" not in capsys.readouterr().err
