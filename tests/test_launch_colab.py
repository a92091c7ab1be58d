"""colab-cell: cells that work on a fresh runtime with "Run all", valid IPython, the wheel."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys

import pytest

from drivesync.cli import build_parser, main
from drivesync.launch.wheel import build_wheel

TOKEN = "colab-cell-token"


def _expand_bang(line: str) -> str:
    """What IPython's ``!`` does to a line before the shell sees it (DollarFormatter):
    ``$$`` -> ``$``, ``{{``/``}}`` -> braces; a lone ``$name`` or ``{expr}`` would be
    replaced by a Python value, which for a path we printed is a bug."""
    out, i = [], 0
    while i < len(line):
        two = line[i:i + 2]
        if two in ("$$", "{{", "}}"):
            out.append(two[0])
            i += 2
            continue
        ch = line[i]
        if ch in "{}" or (ch == "$" and re.match(r"[A-Za-z_{(]", line[i + 1:i + 2] or " ")):
            raise AssertionError(f"IPython would expand {line[i:i + 12]!r} in {line!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def as_python(text: str) -> tuple[str, list]:
    """A printed notebook as plain Python (IPython's `!` lines become calls); its shell lines."""
    shell: list = []
    lines = []
    for raw in text.splitlines():
        stripped = raw.lstrip()
        if stripped.startswith(("!", "%")):
            if stripped.startswith("%"):
                raise AssertionError(f"magics are not expected: {raw!r}")
            cmd = _expand_bang(stripped[1:])
            shell.append(cmd)
            raw = raw[: len(raw) - len(stripped)] + f"_shell({cmd!r})"
        lines.append(raw)
    code = "\n".join(lines)
    ast.parse(code)  # every cell is valid Python once the `!` lines are handled
    return code, shell


def _cells(capsys, *argv: str) -> tuple[str, str]:
    assert main(["colab-cell", *argv]) == 0
    cap = capsys.readouterr()
    return cap.out, cap.err


WEIRD = ["--weights", "drive:my $HOME {proj}/backup", "--dataset", "drive:it's {x}/data",
         "--data", "/WORK1/a b/obj.data", "--cfg", "/WORK1/$cfg.cfg"]


@pytest.mark.parametrize("argv", [
    ["--trainer", "darknet", *WEIRD, "--pretrained", "/WORK1/p.conv", "--map", "--keep-last",
     "2", "--max-bytes", "5G", "--stage-dir", "/content/d", "--", "-gpus", "0"],
    ["--trainer", "ultralytics", "--data", "/W/{d}.yaml", "--model", "yolov8s.pt",
     "--epochs", "30", "--weights", "drive:space_Colab/runs", "--", "imgsz=640"],
])
def test_every_cell_is_valid_ipython_and_the_command_survives_expansion(capsys, argv):
    out, _err = _cells(capsys, *argv)
    code, shell = as_python(out)
    assert "Run all" in out and "safe to run again" in out
    assert "drive.mount('/content/drive')" in code  # in the kernel, not a `!` subprocess
    launch = [c for c in shell if c.startswith("drivesync launch")]
    assert len(launch) == 1
    words = shlex.split(launch[0])
    args = build_parser().parse_args(words[1:])
    opts = argv[: argv.index("--")]
    pairs = [(f, v) for f, v in zip(opts, opts[1:]) if f.startswith("--")
             and not v.startswith("--") and f not in ("--trainer", "--map")]
    assert len(pairs) >= 4
    for flag, value in pairs:
        got = getattr(args, flag[2:].replace("-", "_"), None)
        assert str(got) == value, (flag, got, value)
    assert args.extra == argv[argv.index("--") + 1:]
    if "--map" in argv:
        assert args.map is True and args.keep_last == 2 and args.stage_dir == "/content/d"


def test_placeholders_warn_and_foreign_options_are_refused(capsys):
    out, err = _cells(capsys, "--trainer", "darknet")
    assert "--data not given" in err and "--cfg not given" in err and "/WORK1/yolo.cfg" in out
    assert main(["colab-cell", "--trainer", "ultralytics", "--map", "--cfg", "x.cfg"]) == 2
    assert "--cfg, --map: not an option of `launch ultralytics`" in capsys.readouterr().err
    assert main(["colab-cell", "--trainer", "darknet", "--epochs", "3"]) == 2
    assert "--epochs" in capsys.readouterr().err


def test_darknet_cell_copies_the_cached_build_and_checks_it_runs(tmp_path, capsys):
    out, _ = _cells(capsys, "--weights", "drive:space_Colab/backup", "--data", "/W/o.data",
                    "--cfg", "/W/y.cfg", "--darknet", str(tmp_path / "content/darknet/darknet"))
    cell = out.split("# --- cell 3/4")[1].split("# --- cell 4/4")[0].split("\n", 1)[1]
    drive = tmp_path / "MyDrive"
    cell = cell.replace("/content/drive/MyDrive", str(drive))
    cache = drive / "space_Colab" / "drivesync-install" / "darknet"
    cache.parent.mkdir(parents=True)
    cache.write_text("#!/bin/sh\necho 'usage: darknet <function>'\n")
    exec(compile(cell, "<darknet cell>", "exec"), {})  # noqa: S102 - our own output
    assert "copied the cached build from Drive" in capsys.readouterr().out
    assert os.access(tmp_path / "content/darknet/darknet", os.X_OK)
    exec(compile(cell, "<darknet cell>", "exec"), {})  # noqa: S102 - run again: nothing to do
    again = capsys.readouterr().out
    assert "copied" not in again and "darknet ready" in again


def test_the_wheel_installs_and_runs_offline(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    assert wheel.name.startswith("drivesync-") and wheel.name.endswith("-py3-none-any.whl")
    assert build_wheel(tmp_path / "again").read_bytes() == wheel.read_bytes()  # deterministic
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True)
    env = dict(os.environ, PYTHONPATH=str(target))
    done = subprocess.run([sys.executable, "-c", "import drivesync.cli, drivesync.launch.runner;"
                           "print(drivesync.__file__)"], env=env, capture_output=True, text=True,
                          cwd=str(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith(str(target)), done.stderr
    assert (target / "bin" / "drivesync").exists()  # the console script


def test_upload_puts_one_wheel_on_drive_where_cell_one_looks(emulator, capsys, monkeypatch):
    monkeypatch.setenv("DRIVESYNC_TOKEN", emulator.token if hasattr(emulator, "token")
                       else "test-token")
    ep = ["--endpoint", emulator.url]
    for _ in range(2):  # a second upload replaces the first
        assert main(["colab-cell", "--upload", "--weights", "drive:space_Colab/backup",
                     "--data", "/W/o.data", "--cfg", "/W/y.cfg", *ep]) == 0
    out = capsys.readouterr().out
    wheels = [f for f in emulator.state.all_files()
              if f["name"].endswith(".whl") and not f["trashed"]]
    assert len(wheels) == 1
    folder = [f for f in emulator.state.all_files() if f["id"] in wheels[0]["parents"]][0]
    assert folder["name"] == "drivesync-install"
    assert "/content/drive/MyDrive/space_Colab/drivesync-install/drivesync-*.whl" in out


def test_a_shared_drive_wheel_is_looked_for_under_shareddrives(capsys):
    """Colab mounts a shared drive at /content/drive/Shareddrives/NAME, not under MyDrive."""
    out, _ = _cells(capsys, "--weights", "drive:@Team/runs", "--data", "/W/o.data",
                    "--cfg", "/W/y.cfg")
    assert "/content/drive/Shareddrives/Team/drivesync-install/drivesync-*.whl" in out
    assert "MyDrive/@Team" not in out


def test_weights_default_is_the_configured_folder(tmp_path, capsys, monkeypatch):
    out, _ = _cells(capsys, "--data", "/W/o.data", "--cfg", "/W/y.cfg")
    assert "--weights drive:space_Colab/backup" in out
    monkeypatch.setenv("DRIVESYNC_FOLDER", "my_runs")
    out, _ = _cells(capsys, "--data", "/W/o.data", "--cfg", "/W/y.cfg")
    assert "--weights drive:my_runs/backup" in out
    assert "/content/drive/MyDrive/my_runs/drivesync-install" in out
