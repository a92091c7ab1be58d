"""The README's first command: `drivesync demo` runs the whole loop offline."""

from __future__ import annotations

import json

from drivesync.cli import main


def test_demo_runs_the_whole_loop(tmp_path, capsys):
    code = main(["demo", "--images", "16", "--max-files", "10", "--dir", str(tmp_path / "d"),
                 "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["ok"] is True
    steps = {s["step"]: s for s in doc["steps"]}
    assert steps["prepare"]["images"] == 16 and steps["prepare"]["shards"] == 4
    assert steps["push"]["failed"] == 0 and steps["push"]["uploaded"] > 32
    assert steps["re-push"]["uploaded"] == 0 and steps["re-push"]["requests"] <= 8
    assert steps["push --pack"]["packed"] == 4
    assert steps["pull"]["identical"] is True and steps["pull"]["unpacked"] == 4
    assert steps["prune"]["deleted"] and "backup/yolo-obj_last.weights" in steps["prune"]["kept"]
    assert steps["latest"]["path"] == "backup/yolo-obj_last.weights"
    # paced under the emulated write limit: at most a stray 403 when a loaded machine
    # bunches requests (it is retried; the benchmark measures the clean case)
    assert steps["drive"]["rate_limited"] <= 3
    # the kept work folder really holds what was pulled back
    assert any((tmp_path / "d" / "colab-local").rglob("*.png"))


def test_demo_human_output(tmp_path, capsys):
    assert main(["demo", "--images", "6", "--max-files", "4", "--dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "demo OK" in out and "1/6" in out and "6/6" in out


def test_demo_help_shows_only_real_flags(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "--keep" not in text and "--dir" in text


def test_demo_keeps_its_state_in_its_own_folder(tmp_path, monkeypatch, capsys):
    """The demo never writes md5 caches or temporary files into the user's real
    state folder (~/.cache/drivesync, or DRIVESYNC_STATE_DIR)."""
    real = tmp_path / "real-state"
    monkeypatch.setenv("DRIVESYNC_STATE_DIR", str(real))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["demo", "--images", "6", "--max-files", "4", "-q"]) == 0
    assert not real.exists() and not (tmp_path / "cache").exists()
