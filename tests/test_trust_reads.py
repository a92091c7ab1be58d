"""A read error never becomes a deletion (issue 9, item 1).

Whatever could not be listed or read, locally or on the remote (a folder, a
file, one page of a listing), is left out of every delete decision, reported,
and makes the run exit 4. Destructive verbs ask first on a terminal and need
--yes without one.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from conftest import TOKEN

import drivesync.hashing as hashing
from drivesync.checkpoints.policy import PrunePolicy
from drivesync.checkpoints.prune import prune
from drivesync.cli import main
from drivesync.errors import EXIT_PARTIAL, EXIT_USAGE, Unreadable
from drivesync.remotes import open_remote

push_module = importlib.import_module("drivesync.sync.scan")   # where push lists folders


def write(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def live(emulator, name=None):
    """{name: count} of untrashed files (not folders) on the emulator."""
    out: dict[str, int] = {}
    for f in emulator.state.all_files():
        if f["trashed"] or f["mimeType"].endswith("folder"):
            continue
        if name is None or f["name"] == name:
            out[f["name"]] = out.get(f["name"], 0) + 1
    return out


def cli(emulator, *argv):
    return main([*map(str, argv), "--endpoint", emulator.url])


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    monkeypatch.setenv("DRIVESYNC_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("DRIVESYNC_BACKOFF_CAP", "0.02")
    monkeypatch.setenv("DRIVESYNC_MAX_TRIES", "3")
    monkeypatch.setenv("DRIVESYNC_WRITE_RATE", "0")


class FakeTerminal(io.StringIO):
    """stdin as a terminal that answers the prompt with ``answer``."""

    def isatty(self) -> bool:
        return True


# ---- local read errors -------------------------------------------------------------
def test_unlistable_local_folder_keeps_its_remote_copies(tmp_path, emulator, token,
                                                         monkeypatch, capsys):
    """`SRC/sub` that cannot be listed (mode 000 for a user; simulated through the scan's
    own scandir seam, since tests run as root) must not trash `sub/*` on Drive."""
    src = tmp_path / "src"
    write(src / "top.txt")
    write(src / "sub/a.txt", "a")
    write(src / "sub/b.txt", "b")
    assert cli(emulator, "push", src, "drive:space_Colab/ds", "-q") == 0
    assert live(emulator) == {"top.txt": 1, "a.txt": 1, "b.txt": 1}

    real = push_module._scandir

    def scandir(path):
        if os.path.basename(path) == "sub":
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(push_module, "_scandir", scandir)
    code = cli(emulator, "push", src, "drive:space_Colab/ds", "--delete", "--yes")
    out, err = capsys.readouterr()
    assert code == EXIT_PARTIAL
    assert "sub: cannot list: Permission denied" in err and "remote copy is kept" in err
    assert "0 deleted" in out
    assert live(emulator) == {"top.txt": 1, "a.txt": 1, "b.txt": 1}


def test_unreadable_local_file_is_neither_deleted_nor_replaced(tmp_path, emulator, token,
                                                               monkeypatch, capsys):
    src = tmp_path / "src"
    write(src / "a.txt", "aaa")
    write(src / "b.txt", "bbb")
    assert cli(emulator, "push", src, "drive:space_Colab/ds", "-q") == 0
    write(src / "a.txt", "AAA")  # same size, new bytes: the md5 decides, and cannot be read
    real = hashing.md5_file

    def md5_file(path, **kw):
        if os.path.basename(path) == "a.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, **kw)

    monkeypatch.setattr(hashing, "md5_file", md5_file)
    (src / "b.txt").unlink()
    code = cli(emulator, "push", src, "drive:space_Colab/ds", "--delete", "--yes", "--json")
    doc = json.loads(capsys.readouterr().out)
    assert code == EXIT_PARTIAL and not doc["ok"]
    assert any(p["path"] == "a.txt" and "cannot read" in p["reason"] for p in doc["problems"])
    assert doc["deleted"] == 1  # b.txt really is gone locally
    assert live(emulator) == {"a.txt": 1}


def test_broken_symlink_and_symlink_loop_protect_their_remote_names(tmp_path, emulator, token,
                                                                    capsys):
    """A dangling link `x.txt` and a loop `loop -> .` are not "absent": the remote
    `x.txt` and `loop/` stay. The dangling link is a read error (exit 4)."""
    src = tmp_path / "src"
    write(src / "x.txt", "x")
    write(src / "loop/y.txt", "y")
    assert cli(emulator, "push", src, "drive:space_Colab/ds", "-q") == 0
    (src / "x.txt").unlink()
    os.symlink("gone-now", src / "x.txt")
    shutil.rmtree(src / "loop")
    os.symlink(".", src / "loop")
    code = cli(emulator, "push", src, "drive:space_Colab/ds", "--delete", "--yes")
    err = capsys.readouterr().err
    assert code == EXIT_PARTIAL and "x.txt: broken symlink" in err and "loop: symlink loop" in err
    assert live(emulator) == {"x.txt": 1, "y.txt": 1}


def _nobody_can_run_python() -> bool:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return False
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            sys.executable, "-c", "import drivesync"], capture_output=True,
                           env={**os.environ, "PYTHONPATH": os.getcwd()}, cwd="/")
    return probe.returncode == 0


@pytest.mark.skipif(not _nobody_can_run_python(),
                    reason="needs root, setpriv and a Python the user nobody can run")
def test_mode_000_folder_as_an_unprivileged_user(tmp_path):  # pragma: no cover - env-bound
    """The exact case seen: a user's `push SRC DST --delete` where SRC/sub is mode 000."""
    work = tempfile.mkdtemp(prefix="drivesync-nobody-")
    try:
        os.chmod(work, 0o755)
        src, dst = os.path.join(work, "src"), os.path.join(work, "dst")
        for d in (src, os.path.join(src, "sub"), dst, os.path.join(dst, "sub")):
            os.makedirs(d, exist_ok=True)
        for p in (os.path.join(src, "sub/a.txt"), os.path.join(dst, "sub/a.txt")):
            with open(p, "w") as f:
                f.write("a")
        for dirpath, _dirs, files in os.walk(work):
            for name in [dirpath] + [os.path.join(dirpath, f) for f in files]:
                os.chown(name, 65534, 65534)
        os.chmod(os.path.join(src, "sub"), 0)
        env = {**os.environ, "PYTHONPATH": os.getcwd(), "HOME": work,
               "DRIVESYNC_STATE_DIR": os.path.join(work, "state"),
               "XDG_CONFIG_HOME": os.path.join(work, "config"),
               "XDG_CACHE_HOME": os.path.join(work, "cache")}
        run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              sys.executable, "-m", "drivesync", "push", src, dst, "--delete",
                              "--yes"], capture_output=True, text=True, env=env, cwd=work)
        assert run.returncode == EXIT_PARTIAL, run.stderr
        assert "Permission denied" in run.stderr
        assert os.path.exists(os.path.join(dst, "sub/a.txt"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- remote read errors ------------------------------------------------------------
def test_one_failing_page_of_a_remote_listing_is_never_empty(tmp_path, emulator, token,
                                                            capsys):
    """Page 2 of `big/`'s listing keeps failing (500): nothing in big/ is deleted or
    uploaded again (that would duplicate); the rest of the push goes on; exit 4."""
    src = tmp_path / "src"
    for i in range(5):
        write(src / f"big/f{i}.txt", str(i))
    write(src / "ok/keep.txt", "k")
    write(src / "ok/old.txt", "o")
    assert cli(emulator, "push", src, "drive:space_Colab/ds", "-q") == 0
    for i in range(3):
        (src / f"big/f{i}.txt").unlink()
    write(src / "big/new.txt", "n")
    (src / "ok/old.txt").unlink()
    emulator.configure(max_page=2)  # ds/ holds 2 items, ok/ 2: one page; big/ needs three
    emulator.inject("500", count=10_000, path_contains="pageToken")
    code = cli(emulator, "push", src, "drive:space_Colab/ds", "--delete", "--yes")
    out, err = capsys.readouterr()
    assert code == EXIT_PARTIAL
    assert "big: cannot list this remote folder" in err and "nothing below it" in err
    assert "1 deleted" in out  # ok/old.txt: its folder was listed whole
    files = live(emulator)
    assert files == {**{f"f{i}.txt": 1 for i in range(5)}, "keep.txt": 1}


def test_dedupe_leaves_a_folder_it_cannot_list(tmp_path, emulator, token, drive_settings,
                                               capsys):
    with open_remote("drive:space_Colab/ds", settings=drive_settings) as remote:
        for i in range(3):
            src = write(tmp_path / f"w{i}.pt", "same")
            remote.upload(src, "sub/w.pt")
    emulator.configure(max_page=2)
    emulator.inject("500", count=10_000, path_contains="pageToken")
    code = cli(emulator, "dedupe", "drive:space_Colab/ds", "--yes")
    err = capsys.readouterr().err
    assert code == EXIT_PARTIAL and "sub: cannot list" in err
    assert live(emulator) == {"w.pt": 3}


def test_prune_never_deletes_after_a_failed_listing(tmp_path, emulator, drive_settings):
    with open_remote("drive:space_Colab/runs", settings=drive_settings) as remote:
        for run in ("a", "b"):
            for i in range(1, 5):
                remote.upload(write(tmp_path / f"{run}{i}", f"{run}{i}" * 10),
                              f"{run}/w/yolo_{i}000.weights")
        folder_a = remote.stat("a/w").id
    policy = PrunePolicy(keep_last=1, min_age=0)
    emulator.inject("500", count=10_000, path_contains=folder_a)
    with open_remote("drive:space_Colab/runs", settings=drive_settings) as remote:
        with pytest.raises(Unreadable, match="nothing was deleted"):
            prune(remote, "a/w", policy=policy, permanent=True, lock_dir=tmp_path / "locks")
        res = prune(remote, "", policy=policy, permanent=True, recursive=True,
                    lock_dir=tmp_path / "locks")
    assert [p.path for p in res.unreadable] == ["a/w"]
    assert sorted(e.path for e in res.deleted) == [f"b/w/yolo_{i}000.weights" for i in (1, 2, 3)]
    assert sum(1 for f in emulator.state.all_files() if not f["trashed"]
               and f["name"].endswith(".weights")) == 5


def test_prune_cli_exits_4_when_a_subfolder_cannot_be_listed(tmp_path, emulator, token,
                                                              drive_settings, capsys):
    with open_remote("drive:space_Colab/runs", settings=drive_settings) as remote:
        for i in range(1, 4):
            remote.upload(write(tmp_path / f"a{i}", f"a{i}" * 10), f"a/w/yolo_{i}000.weights")
        folder_a = remote.stat("a/w").id
    emulator.inject("500", count=10_000, path_contains=folder_a)
    code = cli(emulator, "prune", "drive:space_Colab/runs", "-r", "--keep-last", "1", "--yes",
               "--min-age", "0")
    assert code == EXIT_PARTIAL and "a/w: not pruned" in capsys.readouterr().err


def test_local_remote_listing_error_is_unreadable_not_empty(tmp_path, monkeypatch):
    """A local folder (the Colab mount) whose listing fails raises Unreadable (exit 4)."""
    from drivesync.remotes.local import LocalRemote

    root = tmp_path / "mnt"
    write(root / "w/yolo_1000.weights")
    remote = LocalRemote(root)
    os.mkfifo(root / "w/fifo")  # never read (it would block), never listed
    assert [e.name for e in remote.list("w")] == ["yolo_1000.weights"]
    import drivesync.remotes.local as local_module

    def scandir(path):
        raise OSError(5, "Input/output error", str(path))

    monkeypatch.setattr(local_module.os, "scandir", scandir)
    with pytest.raises(Unreadable, match="Input/output error"):
        remote.list("w")


# ---- confirmation ------------------------------------------------------------------
def test_push_delete_and_dedupe_need_yes_without_a_terminal(tmp_path, emulator, token, capsys):
    src = write(tmp_path / "src/a.txt").parent
    assert cli(emulator, "push", src, "drive:space_Colab/ds", "-q") == 0
    (src / "a.txt").unlink()
    assert cli(emulator, "push", src, "drive:space_Colab/ds", "--delete") == EXIT_USAGE
    assert "--yes" in capsys.readouterr().err
    assert cli(emulator, "dedupe", "drive:space_Colab/ds") == EXIT_USAGE
    assert "--yes" in capsys.readouterr().err
    assert cli(emulator, "push", src, "drive:space_Colab/ds", "--delete", "--dry-run") == 0
    assert live(emulator) == {"a.txt": 1}


@pytest.mark.parametrize("answer,left", [("n\n", {"a.txt": 1}), ("y\n", {})])
def test_push_delete_asks_on_a_terminal(tmp_path, emulator, token, monkeypatch, capsys,
                                        answer, left):
    src = write(tmp_path / "src/a.txt").parent
    assert cli(emulator, "push", src, "drive:space_Colab/ds", "-q") == 0
    (src / "a.txt").unlink()
    monkeypatch.setattr(sys, "stdin", FakeTerminal(answer))
    assert cli(emulator, "push", src, "drive:space_Colab/ds", "--delete") == 0
    out = capsys.readouterr().out
    assert "delete   ds/a.txt" in out or "delete   a.txt" in out
    assert live(emulator) == left


def test_dedupe_asks_on_a_terminal(tmp_path, emulator, token, drive_settings, monkeypatch,
                                   capsys):
    with open_remote("drive:space_Colab/ds", settings=drive_settings) as remote:
        for i in range(2):
            remote.upload(write(tmp_path / f"w{i}.pt", "same"), "w.pt")
    monkeypatch.setattr(sys, "stdin", FakeTerminal("n\n"))
    assert cli(emulator, "dedupe", "drive:space_Colab/ds") == 0
    assert "nothing changed" in capsys.readouterr().out and live(emulator) == {"w.pt": 2}
    monkeypatch.setattr(sys, "stdin", FakeTerminal("y\n"))
    assert cli(emulator, "dedupe", "drive:space_Colab/ds") == 0
    assert live(emulator) == {"w.pt": 1}
