"""Every name survives the round trip or is refused with a reason (issue 9, item 4)."""

from __future__ import annotations

import json
import os

from hypothesis import given
from hypothesis import strategies as st

from drivesync.cli import main
from drivesync.hashing import HashCache
from drivesync.sync.names import (
    _RESERVED,
    MAX_PART_BYTES,
    ControlCharacterName,
    local_part,
    remote_part,
    safe_part,
    shorten,
)

TOKEN = "test-token"
# a name part on Linux that push takes: anything but "/" and control characters (refused,
# see test_control_characters_are_refused); "\\", "＼" and "‛" drawn often
names = st.text(st.one_of(st.sampled_from("\\\uff3c\u201bab."),
                          st.characters(blacklist_characters="/",
                                        blacklist_categories=("Cs", "Cc"))), min_size=1)


@given(st.text(min_size=1).filter(lambda t: any(c < " " or c == "\x7f" for c in t)))
def test_control_characters_are_refused(name):
    """pull never writes a name with a control character, so push cannot promise it back."""
    try:
        remote_part(name)
    except (ControlCharacterName, UnicodeEncodeError):
        return
    raise AssertionError(f"{name!r} was accepted")


def test_push_refuses_a_control_character_name_and_keeps_its_remote_copy(
        tmp_path, emulator, monkeypatch, capsys):
    """QA: 'new\nline.txt' was uploaded raw, pulled back as 'new_line.txt', and a push of
    that folder with --delete then trashed the original."""
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("ok")
    (src / "new\nline.txt").write_text("x")
    code, doc = _push(src, emulator, capsys)
    assert code == 4 and doc["uploaded"] == 1
    names_on_drive = {f["name"] for f in emulator.state.all_files() if not f["trashed"]}
    assert "new\nline.txt" not in names_on_drive and "ok.txt" in names_on_drive
    code = main(["push", str(src), "drive:space_Colab/ds", "--endpoint", emulator.url,
                 "--delete", "--yes", "--json"])
    assert code == 4
    assert not any(f["trashed"] for f in emulator.state.all_files())


@given(names)
def test_remote_name_maps_back_to_the_local_name(name):
    remote = remote_part(name)
    assert "\\" not in remote and "/" not in remote   # never a separator on the remote side
    assert local_part(remote) == name
    assert remote_part(name) == remote               # the same on every run


@given(names, names)
def test_two_local_names_never_share_a_remote_name(a, b):
    assert (remote_part(a) == remote_part(b)) == (a == b)


@given(names)
def test_pull_names_come_back_as_pushed(name):
    """push maps a local name to the remote; pull maps it back (POSIX), within 255 bytes."""
    if len(name.encode()) <= MAX_PART_BYTES and name.strip(" ") == name \
            and not name.endswith(".") and name not in (".", "..") \
            and not any(c in name for c in ':*?"<>|') and not any(ord(c) < 32 for c in name) \
            and "\x7f" not in name and not name.startswith(".drivesync") \
            and name.split(".", 1)[0].upper() not in _RESERVED:
        assert safe_part(remote_part(name)) == name


@given(st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
               min_size=1, max_size=400))
def test_long_names_are_shortened_stably_and_distinctly(name):
    short = shorten(name)
    assert len(short.encode()) <= MAX_PART_BYTES and shorten(name) == short
    if len(name.encode()) > MAX_PART_BYTES:
        assert short != name and shorten(name + "x") != short


def _push(src, emulator, capsys):
    """(exit code, the JSON document) of one push."""
    code = main(["push", str(src), "drive:space_Colab/ds", "--endpoint", emulator.url, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out[out.index("{"):])


def test_backslash_name_is_one_file_and_a_repush_adds_nothing(tmp_path, emulator,
                                                             monkeypatch, capsys):
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a\\b.txt").write_text("one file")
    assert _push(src, emulator, capsys)[0] == 0
    code, doc = _push(src, emulator, capsys)
    assert code == 0 and doc["uploaded"] == 0 and doc["skipped"] == 1
    live = [f for f in emulator.state.all_files() if not f["trashed"]]
    assert sorted(f["name"] for f in live) == ["a\uff3cb.txt", "ds", "space_Colab"]
    dest = tmp_path / "back"
    assert main(["pull", "drive:space_Colab/ds", str(dest), "--endpoint", emulator.url]) == 0
    assert os.listdir(dest) == ["a\\b.txt"]
    code, doc = _push(dest, emulator, capsys)           # the pulled copy matches too
    assert code == 0 and doc["uploaded"] == 0


def test_undecodable_name_is_reported_never_an_internal_error(tmp_path, emulator, monkeypatch,
                                                              capsys):
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("ok")
    with open(os.path.join(os.fsencode(src), b"bad\xff.txt"), "wb") as f:
        f.write(b"x")
    for _ in range(2):  # the second push used to die in the md5 cache
        code = main(["push", str(src), "drive:space_Colab/ds", "--endpoint", emulator.url])
        err = capsys.readouterr().err
        assert code == 4 and "internal error" not in err
        assert "bad\\xff.txt: the name is not valid UTF-8" in err
        line = next(li for li in err.splitlines() if "bad\\xff.txt" in li)
        assert line.count("not pushed") == 1, line         # it said "not pushed" twice
    cache = HashCache(None)   # and the md5 cache takes such a path
    path = os.path.join(str(src), os.fsdecode(b"bad\xff.txt"))
    assert cache.md5(path) == cache.md5(path) and cache.reads == 1


def test_a_remote_name_over_255_bytes_is_pulled_shortened_and_reported(tmp_path, emulator,
                                                                       drive_settings, capsys,
                                                                       monkeypatch):
    from drivesync.remotes import open_remote

    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    long = "n" * 300 + ".jpg"
    src = tmp_path / "x.jpg"
    src.write_text("img")
    with open_remote("drive:space_Colab/ds", settings=drive_settings) as remote:
        remote.upload(src, long)
    dest = tmp_path / "dest"
    for _ in range(2):
        assert main(["pull", "drive:space_Colab/ds", str(dest), "--endpoint",
                     emulator.url]) == 0
        assert "longer than the file system's 255 bytes" in capsys.readouterr().err
    (got,) = os.listdir(dest)
    assert got == shorten(long) and got.endswith(".jpg") and len(got.encode()) <= 255
