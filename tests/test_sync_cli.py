"""The push / pull / dedupe verbs: exit codes, --json, --dry-run output."""

from __future__ import annotations

import json

from drivesync.cli import main
from drivesync.errors import EXIT_NOT_FOUND, EXIT_PARTIAL, EXIT_USAGE


def tree(root):
    for rel, data in {"a.txt": b"a", "s/000/x.jpg": b"x", "s/000/y.jpg": b"yy",
                      "s/001/z.jpg": b"z"}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_push_dry_run_then_push_then_json_noop(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src)
    code, out, _ = run(capsys, "push", src, dst, "--dry-run", "--write-rate", "0")
    assert code == 0 and "plan (dry run" in out and "upload" in out and not dst.exists()
    code, out, _ = run(capsys, "push", src, dst, "--write-rate", "0")
    assert code == 0 and "4 uploaded" in out
    code, out, _ = run(capsys, "push", src, dst, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["skipped"] == 4 and doc["uploaded"] == 0
    code, out, _ = run(capsys, "push", src, tmp_path / "packed", "--pack", "--json",
                       "--write-rate", "0")
    doc = json.loads(out)
    assert doc["packed"] == 2 and doc["uploaded"] == 1
    assert (tmp_path / "packed/s/000.tar.json").is_file()


def test_pull_json_and_missing_remote(tmp_path, capsys):
    src = tmp_path / "src"
    tree(src)
    run(capsys, "push", src, tmp_path / "r", "--pack", "--write-rate", "0")
    code, out, _ = run(capsys, "pull", tmp_path / "r", tmp_path / "back", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["unpacked"] == 2 and doc["downloaded"] == 1
    assert (tmp_path / "back/s/000/y.jpg").read_bytes() == b"yy"
    code, out, _ = run(capsys, "pull", tmp_path / "r", tmp_path / "raw", "--no-unpack")
    assert code == 0 and (tmp_path / "raw/s/000.tar").is_file()
    code, _, err = run(capsys, "pull", tmp_path / "nope", tmp_path / "b2")
    assert code == EXIT_NOT_FOUND and "Traceback" not in err


def test_partial_failure_exit_4_and_usage_errors(tmp_path, capsys, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src)
    (dst / "a.txt").mkdir(parents=True)  # a folder where a file must go
    code, out, err = run(capsys, "push", src, dst, "--write-rate", "0", "--json")
    doc = json.loads(out)
    assert code == EXIT_PARTIAL and doc["failed"] == 1 and doc["uploaded"] == 3
    assert not doc["ok"] and doc["problems"][0]["path"] == "a.txt"
    code, out, err = run(capsys, "push", src, dst, "--write-rate", "0")
    assert code == EXIT_PARTIAL and "a.txt" in err and "1 item(s) failed" in err
    code, _, err = run(capsys, "push", tmp_path / "missing", dst)
    assert code == EXIT_NOT_FOUND and "no such folder" in err
    code, _, err = run(capsys, "push", src / "a.txt", dst)
    assert code == EXIT_USAGE and "is a file" in err
    code, _, err = run(capsys, "pull", dst, src / "a.txt")
    assert code == EXIT_USAGE and "not a folder" in err and (src / "a.txt").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, _ = run(capsys, "push", empty, tmp_path / "made")
    assert code == 0 and (tmp_path / "made").is_dir()  # the target exists afterwards
    big = tmp_path / "big"
    for i in range(5):
        (big / "f").mkdir(parents=True, exist_ok=True)
        (big / "f" / f"{i}.jpg").write_bytes(b"x")
    monkeypatch.setenv("DRIVESYNC_MAX_FILES_PER_FOLDER", "4")
    code, _, err = run(capsys, "push", big, tmp_path / "bigdst", "--write-rate", "0")
    assert code == EXIT_USAGE and "drivesync shard" in err and not (tmp_path / "bigdst").exists()
    code, _, err = run(capsys, "push", big, tmp_path / "bigdst", "--write-rate", "0",
                       "--allow-big-folders")
    assert code == 0 and len(list((tmp_path / "bigdst/f").iterdir())) == 5
    code, out, _ = run(capsys, "dedupe", dst, "--json", "--yes")
    assert code == 0 and json.loads(out)["deleted"] == 0
    code, out, _ = run(capsys, "dedupe", dst, "--dry-run")
    assert code == 0 and "nothing to do" in out
