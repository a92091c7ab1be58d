"""Benchmarks for push / pull against the Drive emulator configured like real Drive.

The emulator runs in a SUBPROCESS (``python -m drivesync emulator``), so the
client's time and memory are measured alone. Real Drive's figures (50 ms per
request, ~3 new files per second, a per-connection bandwidth cap) are scaled
together by ``--factor`` (default 10: 5 ms, 30 files/s, 10x the bandwidth);
the ratios are what count, and every run prints the settings it used.

  python benchmarks/bench_sync.py all [--quick] [--factor 10]
  python benchmarks/bench_sync.py push|pack|noop|pull [--quick]

push   2,000 small files: the naive notebook loop (one files().create after
       another, execute(num_retries=5)) vs drivesync push; drivesync must reach
       >= 90% of the emulator's allowed write rate with no rate-limit error.
pack   the same files with --pack: >= 50x faster than the naive loop.
noop   re-push of 30,000 files in 15 shards: requests and seconds (goal <= ~50
       requests, 0 file reads). Seeded straight into the emulator's data dir.
pull   one 200 MiB file, 4 x 50 MiB and 8 x 25 MiB in parallel, 1,000 files of 64 KiB,
       a packed shard of 400 x 256 KiB (pull + unpack, as Colab staging):
       the naive loop (MediaIoBaseDownload file by file) vs drivesync pull; share
       of what the connections used can carry (goal >= 95% on one file, >= 90% in
       aggregate) and each client's peak RSS (goal < 100 MB; own process).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivesync.config import Settings  # noqa: E402
from drivesync.emulator import EmulatorClient  # noqa: E402
from drivesync.hashing import HashCache  # noqa: E402
from drivesync.remotes import open_remote  # noqa: E402
from drivesync.sync import pull, push  # noqa: E402

TOKEN = "bench-token"
FOLDER_MIME = "application/vnd.google-apps.folder"
REAL = {"latency": 0.05, "write_rate": 3.0, "bandwidth": 2 * 1024 * 1024}


class Server:
    """``drivesync emulator`` in a subprocess; its control plane over HTTP."""

    def __init__(self, data_dir: Optional[Path] = None):
        cmd = [sys.executable, "-m", "drivesync", "emulator", "--port", "0", "--token", TOKEN]
        if data_dir is not None:
            cmd += ["--data-dir", str(data_dir)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, cwd=str(Path(__file__).resolve().parents[1]))
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        m = re.search(r"(http://\S+/)", line)
        if not m:
            self.proc.kill()
            raise SystemExit(f"emulator did not start: {line!r}")
        self.url = m.group(1)
        self.control = EmulatorClient(self.url)

    def stop(self) -> None:
        self.control.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def scaled(factor: float) -> dict:
    return {"latency": REAL["latency"] / factor, "write_rate": REAL["write_rate"] * factor,
            "bandwidth": REAL["bandwidth"] * factor}


def settings_for(url: str, *, write_rate: float = 0.0) -> Settings:
    return Settings(api_endpoint=url, token=TOKEN, write_rate=write_rate)


def make_files(root: Path, n: int, shards: int, size: int = 2048) -> list[Path]:
    out = []
    per = max(1, n // shards)
    for i in range(n):
        p = root / "imgs" / f"{i // per:03d}" / f"img{i:05d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(hashlib.md5(str(i).encode()).digest() * (size // 16))
        out.append(p)
    return out


# ---- the naive notebook loop ------------------------------------------------------------
def naive_push(url: str, src: Path, files: list[Path]) -> dict:
    """What a notebook does: one create after another, the client's own retries."""
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build_from_document
    from googleapiclient.discovery_cache import get_static_doc
    from googleapiclient.errors import HttpError
    from googleapiclient.http import MediaFileUpload

    doc = json.loads(get_static_doc("drive", "v3"))
    doc["rootUrl"] = url
    service = build_from_document(doc, credentials=Credentials(TOKEN))
    folders: dict[str, str] = {}

    def folder(rel: str) -> str:
        if rel in ("", "."):
            return "root"
        if rel not in folders:
            parent = folder(os.path.dirname(rel))
            meta = service.files().create(body={"name": os.path.basename(rel),
                                                "mimeType": FOLDER_MIME,
                                                "parents": [parent]}).execute(num_retries=5)
            folders[rel] = meta["id"]
        return folders[rel]

    t0 = time.monotonic()
    failed = 0
    base = folder("naive")
    for p in files:
        rel = os.path.relpath(p.parent, src)
        parent = folder(os.path.join("naive", rel)) if rel != "." else base
        try:
            service.files().create(body={"name": p.name, "parents": [parent]},
                                   media_body=MediaFileUpload(str(p))).execute(num_retries=5)
        except HttpError:
            failed += 1
    return {"seconds": time.monotonic() - t0, "failed": failed}


# ---- the benchmarks -----------------------------------------------------------------------
def bench_push(args: argparse.Namespace, *, pack_too: bool) -> dict:
    n = 200 if args.quick else 2000
    knobs = scaled(args.factor)
    ours = knobs["write_rate"] * 2.8 / 3.0  # drivesync's default 2.8/s against Drive's ~3
    print(f"[push] {n} files of 2 KiB in 4 shard folders; emulator latency "
          f"{knobs['latency'] * 1000:.0f} ms, write_rate {knobs['write_rate']:.0f}/s "
          f"(burst 5), bandwidth {knobs['bandwidth'] / 2**20:.0f} MiB/s (factor {args.factor:g});"
          f" drivesync write_rate {ours:.1f}/s, jobs 4")
    work = Path(tempfile.mkdtemp(prefix="bench-push-"))
    srv = Server()
    try:
        src = work / "src"
        files = make_files(src, n, 4)
        srv.control.configure(latency=knobs["latency"], write_rate=knobs["write_rate"],
                              bandwidth=knobs["bandwidth"])
        naive = naive_push(srv.url, src, files)
        c_naive = srv.control.counters
        print(f"  naive loop:     {naive['seconds']:7.1f} s  ({n / naive['seconds']:.1f} files/s, "
              f"{c_naive['rate_limited']} rate-limited, {naive['failed']} failed)")
        srv.control.configure(write_rate=None)  # refill: the next run starts fresh
        srv.control.configure(write_rate=knobs["write_rate"])
        before = srv.control.counters
        remote = open_remote("drive:bench", settings=settings_for(srv.url, write_rate=ours))
        res = push(src, remote=remote, path="ours", jobs=4,
                   hash_cache=HashCache(None), state_dir=work / "state")
        after = srv.control.counters
        creates = after["creates"] - before["creates"]
        allowed = knobs["write_rate"] * res.seconds + 5
        rl = after["rate_limited"] - before["rate_limited"]
        print(f"  drivesync push: {res.seconds:7.1f} s  ({res.uploaded / res.seconds:.1f} files/s, "
              f"{creates} creates = {100 * creates / allowed:.0f}% of the allowed "
              f"{allowed:.0f}, {rl} rate-limited, {res.failed} failed, {res.requests} requests)")
        print(f"  ratio naive/drivesync: {naive['seconds'] / res.seconds:.2f}x")
        out = {"files": n, "naive_s": naive["seconds"], "drivesync_s": res.seconds,
               "rate_pct": 100 * creates / allowed, "rate_limited": rl}
        if pack_too:
            before = srv.control.counters
            t0 = time.monotonic()
            pres = push(src, remote=remote, path="packed", jobs=4, pack=True,
                        hash_cache=HashCache(None), state_dir=work / "state")
            secs = time.monotonic() - t0
            after = srv.control.counters
            print(f"  drivesync push --pack: {secs:7.2f} s  ({pres.packed} shards, "
                  f"{after['creates'] - before['creates']} creates, "
                  f"{after['rate_limited'] - before['rate_limited']} rate-limited); "
                  f"naive/packed = {naive['seconds'] / secs:.0f}x")
            out.update(packed_s=secs, pack_ratio=naive["seconds"] / secs)
        remote.close()
        return out
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


def seed(data_dir: Path, tree: dict[str, bytes]) -> None:
    """Write files straight into an emulator data dir (no HTTP, no rate limit)."""
    from drivesync.emulator import Emulator

    emu = Emulator(token=TOKEN, data_dir=data_dir)
    st = emu.state
    folders: dict[str, str] = {"": st.root_id}

    def folder(rel: str) -> str:
        if rel not in folders:
            parent = folder(os.path.dirname(rel))
            folders[rel] = st.create({"name": os.path.basename(rel), "mimeType": FOLDER_MIME,
                                      "parents": [parent]}).id
        return folders[rel]

    for rel, data in tree.items():
        w = st.blobs.writer()
        w.write(data)
        st.create({"name": os.path.basename(rel), "parents": [folder(os.path.dirname(rel))]},
                  w.finish())
    emu.stop()


def bench_noop(args: argparse.Namespace) -> dict:
    n, shards = (3000, 15) if args.quick else (30000, 15)
    knobs = scaled(args.factor)
    print(f"[noop] re-push of {n} files in {shards} shard folders; seeded in the emulator's "
          f"data dir; measured with latency {knobs['latency'] * 1000:.0f} ms (factor "
          f"{args.factor:g})")
    work = Path(tempfile.mkdtemp(prefix="bench-noop-"))
    try:
        src = work / "src"
        files = make_files(src, n, shards, size=256)
        seed(work / "emu", {"bench/" + str(p.relative_to(src)).replace(os.sep, "/"):
                            p.read_bytes() for p in files})
        srv = Server(work / "emu")
        try:
            remote = open_remote("drive:bench", settings=settings_for(srv.url))
            cache = HashCache(work / "state" / "hashes.sqlite")
            warm = push(src, remote=remote, jobs=4, hash_cache=cache,
                        state_dir=work / "state")
            print(f"  first push after seeding (md5 cache cold): {warm.seconds:.1f} s, "
                  f"{warm.uploaded} uploaded, {warm.skipped} skipped, {cache.reads} files read")
            srv.control.configure(latency=knobs["latency"])
            reads0 = cache.reads
            req0 = srv.control.counters["requests"]
            res = push(src, remote=remote, jobs=4, hash_cache=cache,
                       state_dir=work / "state")
            served = srv.control.counters["requests"] - req0
            print(f"  no-op re-push: {res.seconds:.2f} s, {res.requests} requests "
                  f"({served} seen by the emulator), {cache.reads - reads0} files read, "
                  f"{res.uploaded} uploaded, {res.skipped} skipped")
            cache.close()
            remote.close()
            return {"files": n, "seconds": res.seconds, "requests": res.requests,
                    "reads": cache.reads - reads0}
        finally:
            srv.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


#: pull cases: name -> (files, bytes each, folder, drivesync jobs); --quick divides sizes by 10
PULL_CASES = {
    "one": (1, 200 * 2**20, "one", 1),
    "par4": (4, 50 * 2**20, "par4", 4),
    "par8": (8, 25 * 2**20, "par8", 8),
    "small": (1000, 64 * 2**10, "small", 4),
    "packed": (400, 256 * 2**10, "packed", 1),  # one shard: 000.tar + 000.tar.json
}


def bench_pull(args: argparse.Namespace) -> dict:
    """Per case: the naive get_media loop, then drivesync pull, each client in its own
    process (its peak RSS alone), against one emulator with the bandwidth cap."""
    knobs = scaled(args.factor)
    cap = knobs["bandwidth"]
    cases = {k: (n // 5 if args.quick and k == "small" else n,
                 size // 10 if args.quick and k != "small" else size, folder, jobs)
             for k, (n, size, folder, jobs) in PULL_CASES.items()
             if not args.cases or k in args.cases.split(",")}
    print(f"[pull] bandwidth cap {cap / 2**20:.0f} MiB/s per connection, latency "
          f"{knobs['latency'] * 1000:.0f} ms (factor {args.factor:g}); every client in its own "
          "process; share = bytes/s over what the connections used can carry (cap x "
          "connections)")
    work = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    out: dict = {}
    try:
        tree = {}
        expect: dict[str, int] = {}
        for name, (n, size, folder, _jobs) in cases.items():
            files = {f"f{i:04d}.bin": hashlib.sha256(f"{name}-{i}".encode()).digest()
                     * (size // 32) for i in range(n)}
            if name == "packed":
                files = _pack(work / "pack", files)
            tree.update({f"bench/{folder}/{rel}": data for rel, data in files.items()})
            expect[name] = sum(len(d) for rel, d in files.items() if not rel.endswith(".json"))
            del files
        seed(work / "emu", tree)
        del tree
        srv = Server(work / "emu")
        try:
            srv.control.configure(latency=knobs["latency"], bandwidth=cap)
            for name, (n, size, folder, jobs) in cases.items():
                what = (f"{n} files of {size / 2**20:.0f} MiB" if size >= 2**20
                        else f"{n} files of {size // 1024} KiB")
                if name == "packed":
                    what += (" packed in one shard (pull + unpack, as Colab staging; naive: "
                             "download the tar, then extract it)")
                print(f"  {name}: {what}; drivesync jobs {jobs}")
                row = {}
                for client, conns in (("naive", 1), ("drivesync", min(jobs, n))):
                    dest = work / "dest"
                    shutil.rmtree(dest, ignore_errors=True)
                    gets0 = srv.control.counters["ops"].get("files.get", 0)
                    res = subprocess.run([sys.executable, __file__, "_pull_client", client,
                                          srv.url, str(dest), folder, str(jobs)],
                                         capture_output=True, text=True)
                    if res.returncode != 0:
                        raise SystemExit(f"{client} pull client failed:\n{res.stderr[-3000:]}")
                    doc = json.loads(res.stdout.strip().splitlines()[-1])
                    gets = srv.control.counters["ops"].get("files.get", 0) - gets0
                    if doc["bytes"] != expect[name]:
                        raise SystemExit(f"{client}: pulled {doc['bytes']} of {expect[name]} "
                                         "bytes")
                    rate = doc["bytes"] / doc["seconds"]
                    share = 100 * rate / (cap * conns)
                    label = "naive get_media loop" if client == "naive" else "drivesync pull"
                    print(f"    {label:20s} {doc['seconds']:6.2f} s  {rate / 2**20:6.1f} MiB/s = "
                          f"{share:3.0f}% of {conns} x cap; {gets} media GETs; peak RSS "
                          f"{doc['maxrss_mb']:.0f} MB")
                    row[client] = {"seconds": doc["seconds"], "share_pct": share,
                                   "maxrss_mb": doc["maxrss_mb"], "gets": gets}
                print(f"    ratio naive/drivesync: "
                      f"{row['naive']['seconds'] / row['drivesync']['seconds']:.2f}x")
                out[name] = row
        finally:
            srv.stop()
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: after fork+exec, ru_maxrss still
    remembers the parent's RSS at the fork (the seeded 200 MB file), VmHWM does not."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _pack(work: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """The files as one packed shard: {"000.tar": bytes, "000.tar.json": manifest}."""
    from drivesync.sync.pack import Member, write_tar

    src = work / "000"
    src.mkdir(parents=True)
    members = []
    for rel, data in files.items():
        (src / rel).write_bytes(data)
        members.append(Member(rel, len(data), None, str(src / rel)))
    man = write_tar("000", members, work / "000.tar")
    out = {"000.tar": (work / "000.tar").read_bytes(), "000.tar.json": man.to_bytes()}
    shutil.rmtree(work)
    return out


def _pull_client(client: str, url: str, dest: str, folder: str, jobs: int) -> None:
    if client == "naive":
        seconds, nbytes = _naive_pull(url, Path(dest), folder)
    else:
        remote = open_remote("drive:bench", settings=settings_for(url))
        res = pull(remote, dest, path=folder, jobs=jobs, hash_cache=HashCache(None),
                   state_dir=Path(dest).parent / "state")
        seconds, nbytes = res.seconds, res.bytes
    print(json.dumps({"seconds": seconds, "bytes": nbytes, "maxrss_mb": _peak_rss_mb()}))


def _naive_pull(url: str, dest: Path, folder: str) -> tuple[float, int]:
    """What a notebook does: list the folder, then MediaIoBaseDownload file by file
    (google-api-python-client's own download loop, default chunk size)."""
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build_from_document
    from googleapiclient.discovery_cache import get_static_doc
    from googleapiclient.http import MediaIoBaseDownload

    doc = json.loads(get_static_doc("drive", "v3"))
    doc["rootUrl"] = url
    service = build_from_document(doc, credentials=Credentials(TOKEN))
    t0 = time.monotonic()
    parent = "root"
    for name in ("bench", folder):
        q = f"'{parent}' in parents and name = '{name}' and trashed = false"
        parent = service.files().list(q=q, fields="files(id)").execute(
            num_retries=5)["files"][0]["id"]
    files, token = [], None
    while True:
        page = service.files().list(q=f"'{parent}' in parents and trashed = false",
                                    pageSize=1000, pageToken=token,
                                    fields="nextPageToken,files(id,name)").execute(num_retries=5)
        files += page["files"]
        token = page.get("nextPageToken")
        if not token:
            break
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    for f in files:
        with open(dest / f["name"], "wb") as fh:
            down = MediaIoBaseDownload(fh, service.files().get_media(fileId=f["id"]))
            done = False
            while not done:
                _status, done = down.next_chunk(num_retries=5)
            if not f["name"].endswith(".json"):
                total += fh.tell()
        if f["name"].endswith(".tar"):  # a packed shard: extract it, then drop the tar
            with tarfile.open(dest / f["name"]) as tar:
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(dest / f["name"][: -len(".tar")], **safe)
            os.unlink(dest / f["name"])
    return time.monotonic() - t0, total


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_pull_client"]:
        _pull_client(argv[1], argv[2], argv[3], argv[4], int(argv[5]))
        return 0
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=["all", "push", "pack", "noop", "pull"])
    p.add_argument("--quick", action="store_true", help="a smaller smoke run")
    p.add_argument("--factor", type=float, default=10.0,
                   help="speed-up applied to Drive's latency, write rate and bandwidth")
    p.add_argument("--cases", default="",
                   help=f"pull cases to run, comma-separated (default all: {','.join(PULL_CASES)})")
    args = p.parse_args(argv)
    results = {}
    if args.which in ("all", "push", "pack"):
        results["push"] = bench_push(args, pack_too=args.which in ("all", "pack"))
    if args.which in ("all", "noop"):
        results["noop"] = bench_noop(args)
    if args.which in ("all", "pull"):
        results["pull"] = bench_pull(args)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
