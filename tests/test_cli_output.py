"""What the CLI prints: untrusted text escaped (issue 9 item 5), a closed pipe (item 7),
the -q rule, options before the verb and the small flag fixes (item 9)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from drivesync.cli import main
from drivesync.cli.context import Context, printable
from drivesync.config import Settings

HOSTILE = "evil\x1b[2J\x1b]0;owned\x07\rdrivesync: error: forged\nline\x9b\x7f\u202e.txt"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")   # anything but a real newline/TAB


def test_printable_escapes_every_control_character():
    assert printable("a\x1bb\x07c\rd\ne\tf\x7fg\x85h\u2028i\u202ej") == \
        "a\\x1bb\\x07c\\x0dd\\x0ae\\x09f\\x7fg\\x85h\\u2028i\\u202ej"
    assert printable("街景_01.jpg ok") == "街景_01.jpg ok"
    undecodable = os.fsdecode(b"bad\xff.jpg")
    assert printable(undecodable) == "bad\\udcff.jpg"
    printable(undecodable).encode("utf-8")               # never a UnicodeEncodeError


def test_context_warns_once_and_escapes_every_channel():
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(settings=Settings(), out=out, err=err)
    for _ in range(2):
        ctx.warn(f"{HOSTILE}: skipped")
    ctx.say(HOSTILE)
    ctx.result(HOSTILE)
    ctx.table([[HOSTILE, 1]])
    ctx.error(HOSTILE)
    assert err.getvalue().count("warning") == 1
    for text in (out.getvalue(), err.getvalue()):
        assert not RAW.search(text)
        assert all(not line.startswith("drivesync: error: forged") for line in text.splitlines())




def _seed(emu, parent, name, data=None, mime=None):
    meta = {"name": name, "parents": [parent]}
    if data is None:
        meta["mimeType"] = mime or "application/vnd.google-apps.folder"
        return emu.state.create(meta).id
    w = emu.state.blobs.writer()
    w.write(data)
    return emu.state.create(meta, w.finish()).id


def test_names_from_drive_never_reach_the_terminal_raw(drive_env, tmp_path, capsys):
    top = _seed(drive_env, drive_env.state.root_id, "space_Colab")
    _seed(drive_env, top, HOSTILE, b"x")
    _seed(drive_env, top, "doc\x1b[31m", mime="application/vnd.google-apps.document")
    for argv in (["ls", "drive:space_Colab"], ["ls", "drive:space_Colab", "-l", "-r"],
                 ["pull", "drive:space_Colab", str(tmp_path / "d")],
                 ["ls", "drive:space_Colab/\x1b[2Jnope"]):
        main(argv)
        out, err = capsys.readouterr()
        assert "pull" in argv or "\\x1b[2J" in out + err, argv
        for text in (out, err):
            assert not RAW.search(text), (argv, text)
            assert not any(line.startswith("drivesync: error: forged")
                           for line in text.splitlines())
    main(["ls", "drive:space_Colab", "--json"])          # JSON escapes by itself
    names = [e["path"] for e in json.loads(capsys.readouterr().out)["entries"]]
    assert HOSTILE in names


def test_closed_pipe_exits_quietly(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(3000):
        (folder / f"file-{i:05d}-{'x' * 40}.txt").touch()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "drivesync", "ls", str(folder), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(100)
    proc.stdout.close()                                  # `| head -c 100`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err and err == ""


def test_quiet_keeps_the_result_and_drops_the_chatter(tmp_path, capsys):
    folder = tmp_path / "r"
    (folder / "sub").mkdir(parents=True)
    (folder / "last.pt").write_bytes(b"x" * 10)
    os.utime(folder / "last.pt", (1, 1))
    assert main(["ls", str(folder), "-q"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["last.pt", "sub/"] and err == ""
    assert main(["-q", "quota", str(folder)]) == 0       # options before the verb, too
    assert "limit" in capsys.readouterr().out
    assert main(["-q", "latest", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == f"{folder}/last.pt"
    assert main(["-q", "push", str(folder), str(tmp_path / "copy")]) == 0
    assert capsys.readouterr().out == ""                 # a summary is chatter


def test_global_options_before_the_verb(tmp_path, capsys):
    assert main(["--json", "-v", "ls", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    log = tmp_path / "log.txt"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    assert main(["--log-file", str(log), "-q", "push", str(src), str(tmp_path / "dst")]) == 0
    text = log.read_text()
    assert "push: 1 uploaded" in text and "exit code 0" in text   # the counts are logged


def test_short_and_alias_flags(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "s").mkdir(parents=True)
    (src / "s/a.txt").write_text("a")
    assert main(["push", str(src), str(tmp_path / "dst"), "-n"]) == 0
    assert "plan (dry run" in capsys.readouterr().out and not (tmp_path / "dst").exists()
    for flag in ("-r", "-R"):
        assert main(["ls", str(src), flag]) == 0
        assert "s/a.txt" in capsys.readouterr().out
        assert main(["latest", str(src), flag]) == 3     # no checkpoint: found nothing
        assert main(["prune", str(src), flag, "-n"]) == 0
        capsys.readouterr()


@pytest.mark.parametrize("verb", ["prepare", "convert", "shard", "configs", "check", "demo",
                                  "emulator"])
def test_drive_options_only_on_verbs_that_use_drive(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = capsys.readouterr().out
    assert "--endpoint" not in text and "--config" not in text


def test_drive_verbs_keep_drive_options(capsys):
    with pytest.raises(SystemExit):
        main(["push", "--help"])
    text = capsys.readouterr().out
    assert "--endpoint" in text and "--config" in text and "--dry-run, -n" in text


def test_progress_descriptions_are_escaped_and_byteless_steps_get_no_bytes_bar():
    from drivesync.progress import TqdmProgress

    out = io.StringIO()
    bar = TqdmProgress(file=out, label=printable)
    bar.on_start(files=3, bytes=0, desc="copy\x1b[2J\x07")
    bar.on_progress(files=3)
    bar.on_done()
    text = out.getvalue()
    assert "\x1b[2J" not in text and "\x07" not in text and "copy\\x1b[2J" in text
    assert "0.00B" not in text and "bytes" not in text and "3/3" in text


def test_prepare_bars_have_totals(tmp_path):
    from drivesync.api import prepare
    from drivesync.datasets.sample import make_sample_voc
    from drivesync.progress import TqdmProgress

    out = io.StringIO()
    src = make_sample_voc(tmp_path / "VOC", images=5)
    prepare(src, tmp_path / "o", fmt="voc", progress=TqdmProgress(file=out), mode="copy")
    shards = [line for line in re.split(r"[\r\n]", out.getvalue()) if "into shards" in line]
    assert shards and "10/10" in shards[-1]              # 5 images + 5 labels, with a total
    assert "0.00B" not in out.getvalue()


@pytest.mark.parametrize("verb", [["colab-cell"], ["prepare"], ["convert"], ["shard"],
                                  ["launch", "ultralytics"]])
def test_every_option_and_argument_has_help(verb, capsys):
    """No bare flag in --help: each option and positional says what it is."""
    from drivesync.cli import build_parser

    parser = build_parser()
    sub = parser
    for word in verb:
        action = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction")
        sub = action.choices[word]
    bare = [a.option_strings or a.dest for a in sub._actions
            if not a.help and a.__class__.__name__ != "_SubParsersAction"]
    assert not bare, bare
