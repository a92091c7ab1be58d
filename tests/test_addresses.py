"""Addresses are read strictly and mean one thing (issue 9 item 3)."""

from __future__ import annotations

import os

import pytest

from drivesync.cli import main
from drivesync.errors import EXIT_NOT_FOUND, EXIT_USAGE, UsageError
from drivesync.remotes import known_schemes, open_remote, parse_address


@pytest.mark.parametrize("text, scheme, path", [
    ("drive:", "drive", ""),
    ("drive:/", "drive", ""),
    ("drive:space_Colab", "drive", "space_Colab"),
    ("drive:/space_Colab/data/", "drive", "space_Colab/data"),
    ("local:a:b", "local", "a:b"),
    ("./a:b", "local", "./a:b"),
    ("/abs/a:b", "local", "/abs/a:b"),
    ("out", "local", "out"),
    ("~/x", "local", "~/x"),
    ("a/b:c", "local", "a/b:c"),
])
def test_parse_address(text, scheme, path):
    a = parse_address(text)
    assert (a.scheme, a.path) == (scheme, path)


@pytest.mark.parametrize("text", ["gdrive:voc", "Drive:voc", "DRIVE:", "c:data", "s3x:b",
                                  "", "local:", "drive:../up"])
def test_parse_address_refuses(text):
    with pytest.raises(UsageError):
        parse_address(text)


def test_unknown_type_lists_the_known_ones_and_hints_the_case():
    with pytest.raises(UsageError) as err:
        parse_address("Drive:voc")
    msg = str(err.value)
    assert "did you mean drive:?" in msg
    assert all(f"{name}:" in msg for name in known_schemes())
    assert "./Drive:voc" in msg and "local:Drive:voc" in msg


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "out"
    src.mkdir()
    (src / "a.txt").write_text("a")
    return tmp_path


@pytest.mark.parametrize("target", ["gdrive:voc", "Drive:voc"])
def test_push_to_an_unknown_type_is_a_usage_error_and_writes_nothing(in_tmp, capsys, target):
    before = sorted(os.listdir(in_tmp))
    assert main(["push", "out", target, "--write-rate", "0"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown remote type" in err and "drive:" in err and "local:" in err
    assert sorted(os.listdir(in_tmp)) == before          # no folder named gdrive:voc


def test_local_paths_with_a_colon(in_tmp, capsys):
    assert main(["push", "out", "./a:b", "--write-rate", "0"]) == 0
    assert (in_tmp / "a:b" / "a.txt").read_text() == "a"
    assert main(["push", "out", "local:c:d", "--write-rate", "0"]) == 0
    assert (in_tmp / "c:d" / "a.txt").read_text() == "a"
    assert main(["pull", "local:c:d", "./e:f"]) == 0
    assert (in_tmp / "e:f" / "a.txt").read_text() == "a"


def test_local_side_of_push_and_pull_must_be_local(in_tmp, capsys):
    assert main(["pull", "out", "drive:x"]) == EXIT_USAGE
    assert main(["push", "gdrive:out", "elsewhere"]) == EXIT_USAGE
    assert "LOCAL must be a local folder" in capsys.readouterr().err
    assert not (in_tmp / "drive:x").exists()




def test_bare_drive_and_drive_x_agree(drive_env, capsys):
    assert main(["mkdir", "drive:zzz"]) == 0
    assert "My Drive/zzz (drive:zzz)" in capsys.readouterr().out
    assert main(["mkdir", "drive:/space_Colab/data/"]) == 0
    capsys.readouterr()
    assert main(["ls", "drive:"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["space_Colab/", "zzz/"]
    assert "My Drive (drive:): 2 items" in err           # the resolved place, on stderr
    assert main(["ls", "drive:/space_Colab"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["data/"] and "My Drive/space_Colab (drive:space_Colab)" in err
    assert "(drive:space_Colab): 1 item\n" in err          # not "1 items"


def test_open_remote_bare_drive_is_my_drive(drive_env, tmp_path):
    src = tmp_path / "f.txt"
    src.write_text("x")
    with open_remote("drive:") as top:                   # settings from the environment
        top.upload(src, "space_Colab/f.txt")
    with open_remote("drive:space_Colab") as folder:
        assert [e.path for e in folder.list("")] == ["f.txt"]


def test_writers_say_where_in_their_first_line(drive_env, in_tmp, capsys):
    assert main(["push", "out", "drive:space_Colab/d"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"push: {in_tmp / 'out'} -> My Drive/space_Colab/d (drive:space_Colab/d)"
    assert main(["pull", "drive:space_Colab/d", "back"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"pull: My Drive/space_Colab/d (drive:space_Colab/d) -> {in_tmp / 'back'}"
    assert main(["dedupe", "drive:space_Colab/d", "-n"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("dedupe: My Drive/space_Colab/d (drive:space_Colab/d)")


def test_missing_local_folder_is_not_found_everywhere(in_tmp, capsys):
    assert main(["push", "nope", "dst", "--write-rate", "0"]) == EXIT_NOT_FOUND
    assert main(["prepare", "nope", "o", "--format", "voc"]) == EXIT_NOT_FOUND
    assert main(["pull", "nope", "dst"]) == EXIT_NOT_FOUND
    assert not (in_tmp / "dst").exists()                 # pull made no empty folder


def test_pull_of_a_missing_drive_folder_leaves_no_empty_folder(drive_env, in_tmp, capsys):
    assert main(["pull", "drive:space_Colab/nope", "dest"]) == EXIT_NOT_FOUND
    assert not (in_tmp / "dest").exists()
    (in_tmp / "kept").mkdir()
    assert main(["pull", "drive:space_Colab/nope", "kept"]) == EXIT_NOT_FOUND
    assert (in_tmp / "kept").is_dir()                    # a folder that was there stays


def test_push_dry_run_onto_a_file_fails_like_the_real_run(in_tmp, capsys):
    (in_tmp / "target").write_text("a file")
    assert main(["push", "out", "target", "--dry-run"]) == EXIT_USAGE
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["push", "out", "target", "-n", "--json"]) == EXIT_USAGE


def test_quota_stop_before_the_first_upload_prints_a_push_summary(drive_env, in_tmp, capsys):
    drive_env.configure(quota_limit=0)
    assert main(["push", "out", "drive:space_Colab/q", "--jobs", "1"]) == 6
    out, err = capsys.readouterr()
    assert "push: 0 uploaded" in out and "downloaded" not in out
    assert ".." not in err and "Re-run the same command" in err
    drive_env.configure(quota_limit=None)


def test_prune_latest_and_prepare_say_where(in_tmp, capsys):
    from drivesync.datasets.sample import make_sample_voc

    (in_tmp / "ck").mkdir()
    (in_tmp / "ck" / "last.pt").write_bytes(b"x")
    os.utime(in_tmp / "ck" / "last.pt", (1, 1))
    assert main(["prune", "ck", "-n"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"prune: {in_tmp / 'ck'} (dry run)"
    assert main(["latest", "ck", "--pull", "got/"]) == 0
    out, err = capsys.readouterr()
    assert f"latest: {in_tmp / 'ck'} -> {in_tmp / 'got'}" in err and out.strip().endswith(
        "last.pt")
    make_sample_voc(in_tmp / "VOC", images=3)
    assert main(["prepare", "VOC", "ds", "-f", "voc"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"prepare: {in_tmp / 'VOC'} -> {in_tmp / 'ds'}"


def test_where_names_each_kind_once(in_tmp):
    from drivesync.cli.remote import where

    assert where("drive:") == "My Drive (drive:)"
    assert where("drive:/a/b/") == "My Drive/a/b (drive:a/b)"
    assert where("./a:b") == str(in_tmp / "a:b")
    for scheme in set(known_schemes()) - {"drive", "local"}:   # e.g. s3://, gs://
        assert where(f"{scheme}://bucket/x") == f"{scheme}://bucket/x"


def test_quota_of_a_missing_folder_is_not_found(drive_env, tmp_path, capsys):
    """QA: `quota drive:nope` printed the account's quota and exited 0."""
    assert main(["quota", "drive:nope"]) == 3
    assert "nope" in capsys.readouterr().err
    assert main(["quota", str(tmp_path / "missing")]) == 3
    assert main(["quota", "drive:"]) == 0


def test_a_file_where_a_folder_is_expected_is_one_usage_error(drive_env, tmp_path, capsys):
    """QA: ls and pull said 'no such folder' (3) where push and prune say 'is a file' (2)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    assert main(["push", str(src), "drive:t1"]) == 0
    capsys.readouterr()
    for argv in (["ls", "drive:t1/a.txt"], ["pull", "drive:t1/a.txt", str(tmp_path / "d")],
                 ["quota", "drive:t1/a.txt"], ["ls", str(src / "a.txt")]):
        assert main(argv) == 2, argv
        assert "is a file, not a folder" in capsys.readouterr().err, argv
    assert not (tmp_path / "d").exists()
