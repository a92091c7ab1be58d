"""The library behaves like the CLI (issue 9 item 6): ``import drivesync`` exposes the
verbs, and with no settings passed they resolve them as the CLI does (flags, then
DRIVESYNC_* environment, then the config file), so DRIVESYNC_API_ENDPOINT is honoured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import drivesync
from drivesync.config import Settings, resolve_settings
from drivesync.errors import NotFound, UsageError

TOKEN = "test-token"  # as in conftest.py


@pytest.fixture
def env(emulator, monkeypatch):
    """Only the environment points at the emulator: nothing is passed to the functions."""
    monkeypatch.setenv("DRIVESYNC_API_ENDPOINT", emulator.url)
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    monkeypatch.setenv("DRIVESYNC_WRITE_RATE", "0")
    monkeypatch.setenv("DRIVESYNC_BACKOFF_BASE", "0.01")
    return emulator


def test_open_remote_reads_the_endpoint_from_the_environment(env):
    with drivesync.open_remote("drive:space_Colab") as remote:
        assert remote.endpoint == env.url
        remote.mkdir("")
    assert [e.name for e in drivesync.ls("drive:")] == ["space_Colab"]


def test_the_config_file_is_read_too(emulator, tmp_path, monkeypatch):
    cfg = tmp_path / "config.ini"
    cfg.write_text(f"[drivesync]\napi_endpoint = {emulator.url}\ntoken = {TOKEN}\n")
    monkeypatch.setenv("DRIVESYNC_CONFIG", str(cfg))
    drivesync.mkdir("drive:from_config")
    assert [e.name for e in drivesync.ls("drive:")] == ["from_config"]


def test_push_pull_dedupe_ls_quota_mkdir_like_the_cli(env, tmp_path):
    src = tmp_path / "src"
    (src / "s").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a")
    (src / "s/b.txt").write_bytes(b"bb")
    plan = drivesync.push(src, "drive:space_Colab/ds", dry_run=True)
    assert plan.dry_run and plan.uploaded == 0 and not drivesync.ls("drive:")
    res = drivesync.push(str(src), "drive:space_Colab/ds", jobs=2)
    assert (res.uploaded, res.failed) == (2, 0) and res.to_dict()["uploaded"] == 2
    assert drivesync.push(src, "drive:space_Colab/ds").skipped == 2
    names = sorted(e.path for e in drivesync.ls("drive:space_Colab/ds", recursive=True))
    assert names == ["a.txt", "s", "s/b.txt"]
    back = drivesync.pull("drive:space_Colab/ds", tmp_path / "back")
    assert back.downloaded == 2 and (tmp_path / "back/s/b.txt").read_bytes() == b"bb"
    assert drivesync.dedupe("drive:space_Colab", dry_run=True).deleted == 0
    assert drivesync.quota().usage >= 3
    assert drivesync.mkdir("drive:space_Colab/new").is_dir


def test_prune_and_latest_like_the_cli(env, tmp_path):
    src = tmp_path / "w"
    src.mkdir()
    for i, n in enumerate((1000, 2000, 3000, 4000)):
        p = src / f"yolov4_{n}.weights"
        p.write_bytes(b"w" * (100 + i))
        os.utime(p, (1_000_000 + i, 1_000_000 + i))
    drivesync.push(src, "drive:space_Colab/backup")
    found = drivesync.latest("drive:space_Colab/backup")
    assert found.entry.path == "yolov4_4000.weights"
    result = drivesync.prune("drive:space_Colab/backup", keep_last=2, dry_run=True)
    assert [d.entry.path for d in result.plan.delete] == ["yolov4_1000.weights",
                                                          "yolov4_2000.weights"]
    drivesync.prune("drive:space_Colab/backup", keep_last=2, max_bytes="1G")
    pulled = drivesync.latest("drive:space_Colab/backup", pull_to=f"{tmp_path}/got/")
    assert pulled.entry.path == "yolov4_4000.weights"
    assert (tmp_path / "got/yolov4_4000.weights").stat().st_size == 103


def test_errors_are_the_cli_errors(env, tmp_path):
    with pytest.raises(UsageError):
        drivesync.ls("gdrive:voc")
    with pytest.raises(NotFound):
        drivesync.pull("drive:nope", tmp_path / "d")
    assert not (tmp_path / "d").exists()
    with pytest.raises(NotFound):
        drivesync.push(tmp_path / "missing", "drive:x")
    with pytest.raises(NotFound):   # not the account's quota for a folder that is not there
        drivesync.quota("drive:nope")


def test_dataset_verbs_are_exported(tmp_path):
    from drivesync import api

    for verb in ("prepare", "convert", "shard", "configs", "check"):
        assert getattr(drivesync, verb) is getattr(api, verb)
    with pytest.raises(AttributeError):
        drivesync.no_such_verb  # noqa: B018


def test_dataset_verbs_take_the_documented_keywords(tmp_path):
    """Flat keywords named like the flags reach each step's options (issue 11)."""
    from drivesync.datasets.sample import make_sample_voc

    src = make_sample_voc(tmp_path / "VOC", images=12)
    res = drivesync.prepare(src, tmp_path / "out", fmt="voc", classes="car,dog,person",
                            max_files=6, name="ds", mode="copy", val_fraction=0.25, seed=3,
                            root="/mnt/ds", keep_difficult=True)
    assert res.ok and res.name == "ds" and res.classes == ["car", "dog", "person"]
    assert res.shards == 4 and (res.train, res.valid) == (9, 3) and res.root == "/mnt/ds"
    assert res.to_dict()["ok"] is True and res.problems == []
    cfg = drivesync.configs(tmp_path / "out", val_fraction=0.5, dry_run=True)
    assert cfg.dry_run and (cfg.train, cfg.valid) == (6, 6)
    assert drivesync.check(tmp_path / "out").ok
    with pytest.raises(TypeError, match="no_such_flag"):
        drivesync.prepare(src, tmp_path / "o2", fmt="voc", no_such_flag=1)
    with pytest.raises(TypeError, match="val_fraction"):   # shard writes no configs
        drivesync.shard(src, tmp_path / "o3", val_fraction=0.2)


def test_resolve_settings_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIVESYNC_JOBS", "5")
    assert resolve_settings().jobs == 5                   # environment
    assert resolve_settings(jobs=7).jobs == 7             # a flag beats it
    given = Settings(jobs=2)
    assert resolve_settings(given).jobs == 2              # given settings are used as given
    assert resolve_settings(given, jobs=9).jobs == 9


def test_import_drivesync_stays_cheap():
    code = "import sys, drivesync; print('googleapiclient' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(root)), check=True).stdout
    assert out.strip() == "False"
