"""Bad input through the CLI: one line on stderr, a distinct exit code, no traceback.

Runs `drivesync.cli.main([...])` in-process against the emulator (real client, real HTTP).
"""

from __future__ import annotations

import json
import time

import pytest

from drivesync.cli import main
from drivesync.errors import EXIT_AUTH, EXIT_NETWORK, EXIT_NOT_FOUND, EXIT_QUOTA


@pytest.fixture
def cli(emulator, monkeypatch, capsys):
    """Run the CLI against the emulator; returns (code, stdout, stderr)."""
    monkeypatch.setenv("DRIVESYNC_TOKEN", emulator.token)
    monkeypatch.setenv("DRIVESYNC_API_ENDPOINT", emulator.url)
    for name, value in {"BACKOFF_BASE": "0.001", "BACKOFF_CAP": "0.002", "MAX_TRIES": "3",
                        "WRITE_RATE": "0"}.items():
        monkeypatch.setenv(f"DRIVESYNC_{name}", value)

    def run(*argv: str):
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("drivesync: error: ")
    return lines[0]


def test_wrong_token_exits_5_without_showing_it(cli, monkeypatch):
    monkeypatch.setenv("DRIVESYNC_TOKEN", "wrong-secret-token")
    code, out, err = cli("ls", "drive:space_Colab")
    assert code == EXIT_AUTH
    assert "auth login" in one_line_error(err)
    assert "wrong-secret-token" not in out + err


def test_unknown_remote_path_exits_3(cli):
    code, out, err = cli("ls", "drive:nope")
    assert code == EXIT_NOT_FOUND
    assert one_line_error(err) == "drivesync: error: drive:nope: no such folder"


def test_quota_exceeded_write_exits_6(cli, emulator):
    emulator.inject("quota", method="POST")
    code, out, err = cli("mkdir", "drive:space_Colab/new")
    assert code == EXIT_QUOTA
    assert "storageQuotaExceeded" in one_line_error(err)


def test_unreachable_endpoint_exits_7_quickly(cli):
    start = time.monotonic()
    code, out, err = cli("ls", "drive:space_Colab", "--endpoint", "http://127.0.0.1:9/")
    assert code == EXIT_NETWORK
    assert "cannot reach http://127.0.0.1:9/" in one_line_error(err)
    assert time.monotonic() - start < 10


def test_ls_quota_mkdir_happy_path(cli, emulator, tmp_path):
    assert cli("mkdir", "drive:space_Colab/data/voc")[0] == 0
    assert cli("mkdir", "drive:space_Colab/data/voc")[0] == 0  # idempotent
    code, out, _ = cli("ls", "drive:space_Colab")
    assert (code, out) == (0, "data/\n")
    code, out, _ = cli("ls", "drive:space_Colab", "-R", "--json")
    doc = json.loads(out)
    assert [(e["path"], e["kind"]) for e in doc["entries"]] == [("data", "folder"),
                                                                 ("data/voc", "folder")]
    emulator.configure(quota_limit=1_000_000)
    code, out, _ = cli("quota", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["limit"] == 1_000_000 and doc["trash"] == 0
    code, out, _ = cli("quota", str(tmp_path))
    assert code == 0 and "used" in out
    code, out, _ = cli("ls", str(tmp_path), "-l")
    assert code == 0


def test_a_remote_that_is_a_file_gives_one_clear_error(cli, emulator, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("a")
    (src / "b.txt").write_text("b")
    assert cli("push", str(src), "drive:space_Colab/ds")[0] == 0
    requests = emulator.counters["requests"]
    code, _, err = cli("push", str(src), "drive:space_Colab/ds/b.txt")
    assert code == 2 and "ds/b.txt: exists and is not a folder" in one_line_error(err)
    assert emulator.counters["requests"] - requests < 10  # stopped before any upload
    for verb in (["pull", "drive:space_Colab/ds/b.txt", str(tmp_path / "d")],
                 ["ls", "drive:space_Colab/ds/b.txt"], ["ls", "drive:space_Colab/ds/b.txt/x"]):
        code, _, err = cli(*verb)
        assert code == 2 and "is a file, not a folder" in one_line_error(err)  # one rule
    assert len([f for f in emulator.state.all_files() if f["name"] == "b.txt"]) == 1


def test_a_config_file_that_is_missing_or_garbled_is_a_usage_error(cli, tmp_path):
    """--config naming no file was silently ignored (the token and endpoint then went elsewhere)."""
    code, out, err = cli("ls", "drive:", "--config", str(tmp_path / "typo.ini"))
    assert code == 2 and "typo.ini: no such file" in one_line_error(err)
    binary = tmp_path / "binary.ini"
    binary.write_bytes(b"\xff\xfe\x00[")
    code, out, err = cli("ls", "drive:", "--config", str(binary))
    assert code == 2 and "binary.ini: not UTF-8 text" in one_line_error(err)


@pytest.mark.parametrize("flag", [["--jobs", "0"], ["-j", "-2"], ["--write-rate", "-1"]])
def test_push_and_pull_refuse_a_meaningless_jobs_or_rate(cli, tmp_path, flag):
    """--jobs 0 silently meant the default; --jobs -2 and --write-rate -1 were accepted."""
    (tmp_path / "src").mkdir()
    src, dest = str(tmp_path / "src"), str(tmp_path / "d")
    for argv in (["push", src, "drive:x"], ["pull", "drive:x", dest]):
        if argv[0] == "pull" and flag[0] == "--write-rate":
            continue
        with pytest.raises(SystemExit) as info:
            cli(*argv, *flag)
        assert info.value.code == 2
