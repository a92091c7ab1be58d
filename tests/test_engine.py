"""The one plan/apply engine (issue 11 item 1): a dry run and a real run walk the same
code up to ``apply_plan``, which alone decides whether anything acts; deletes are
batched there; the confirmation goes through the progress channel.

Requests are counted by the emulator (the real google-api-python-client talks to it).
"""

from __future__ import annotations

import json

from conftest import TOKEN

from drivesync.checkpoints import PrunePolicy, prune
from drivesync.cli import main
from drivesync.errors import EXIT_PARTIAL, DiskFull
from drivesync.hashing import HashCache
from drivesync.progress import NullProgress
from drivesync.sync import SyncOptions, dedupe, push
from drivesync.sync.apply import Ask, apply_plan
from drivesync.sync.plan import DELETE, EMPTY_TRASH, MKDIR, UPLOAD, Action, Plan

#: emulator operations that change something
CHANGES = ("files.create", "files.update", "files.delete", "files.copy", "files.emptyTrash",
           "batch")


def changes(emulator, before: dict) -> dict:
    ops = emulator.counters["ops"]
    return {k: ops[k] - before.get(k, 0) for k in CHANGES if ops.get(k, 0) != before.get(k, 0)}


def live(emulator) -> list[str]:
    return sorted(f["name"] for f in emulator.state.all_files()
                  if not f.get("trashed") and f["mimeType"] != "application/vnd.google-apps.folder")


class Asked(NullProgress):
    """A channel that records the question and answers ``answer``."""

    def __init__(self, answer: bool):
        self.answer, self.asked = answer, []

    def confirm(self, question, items=()):
        self.asked.append((question, list(items)))
        return self.answer


def _tree(root, names):
    for name, data in names.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_push_dry_run_and_real_run_plan_the_same_and_only_the_real_one_writes(
        tmp_path, emulator, drive_remote):
    old = _tree(tmp_path / "old", {"keep.txt": b"k", "changed.txt": b"v1", "gone.txt": b"g",
                                  "sub/gone2.txt": b"g2"})
    push(old, remote=drive_remote, path="ds", hash_cache=HashCache(None))
    src = _tree(tmp_path / "src", {"keep.txt": b"k", "changed.txt": b"v2", "new/a.txt": b"a"})
    opts = SyncOptions(delete=True, state_dir=tmp_path / "st")
    before = dict(emulator.counters["ops"])
    dry = push(src, remote=drive_remote, path="ds", options=SyncOptions.of(opts, dry_run=True),
               hash_cache=HashCache(None))
    assert changes(emulator, before) == {}                 # nothing created, changed or deleted
    assert dry.uploaded == dry.deleted == 0 and dry.dry_run
    real = push(src, remote=drive_remote, path="ds", options=opts, hash_cache=HashCache(None))
    assert real.actions == dry.actions and real.plan == dry.plan
    assert {a.kind for a in real.actions} == {MKDIR, UPLOAD, "replace", DELETE}
    assert real.uploaded == 2 and real.deleted >= 2
    assert live(emulator) == ["a.txt", "changed.txt", "keep.txt"]


def test_push_delete_asks_through_the_channel_and_a_no_changes_nothing(
        tmp_path, emulator, drive_remote):
    src = _tree(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b"})
    push(src, remote=drive_remote, path="ds", hash_cache=HashCache(None))
    (src / "b.txt").unlink()
    (src / "c.txt").write_bytes(b"c")
    before = dict(emulator.counters["ops"])
    no = Asked(False)
    res = push(src, remote=drive_remote, path="ds", delete=True, progress=no,
               hash_cache=HashCache(None))
    assert no.asked == [("trash 1 remote item(s) absent locally?", ["  delete   ds/b.txt"])]
    assert not res.confirmed and changes(emulator, before) == {}    # not even c.txt went up
    yes = Asked(True)
    res = push(src, remote=drive_remote, path="ds", delete=True, progress=yes,
               hash_cache=HashCache(None))
    assert res.confirmed and res.deleted == 1 and res.uploaded == 1
    assert live(emulator) == ["a.txt", "c.txt"]
    dry = Asked(True)        # a dry run asks nobody: nothing will happen
    push(src, remote=drive_remote, path="ds", delete=True, dry_run=True, progress=dry,
         hash_cache=HashCache(None))
    assert dry.asked == []


def test_prune_dry_run_sends_no_delete_and_plans_what_the_real_run_deletes(
        tmp_path, emulator, drive_remote):
    src = _tree(tmp_path / "w", {f"m_{i}.pt": b"%015d" % i for i in range(1, 8)})
    push(src, remote=drive_remote, path="w", hash_cache=HashCache(None))
    before = dict(emulator.counters["ops"])
    dry = prune(drive_remote, "w", policy=PrunePolicy(keep_last=2), dry_run=True,
                empty_trash=True, lock_dir=tmp_path / "l")
    assert changes(emulator, before) == {}                 # no delete, no emptied trash
    assert dry.deleted == [] and not dry.trash_emptied and len(dry.plan.delete) == 5
    asked = Asked(True)
    real = prune(drive_remote, "w", policy=PrunePolicy(keep_last=2), empty_trash=True,
                 lock_dir=tmp_path / "l", progress=asked)
    assert sorted(e.path for e in real.deleted) == sorted(d.entry.path for d in dry.plan.delete)
    assert changes(emulator, before) == {"batch": 1, "files.update": 5, "files.emptyTrash": 1}
    assert real.trash_emptied and asked.asked[0][0] == "delete 5 files (75 B) to the trash?"
    assert asked.asked[0][1][0].split() == ["ACTION", "SIZE", "PATH", "REASON"]


def test_prune_declined_deletes_nothing(tmp_path, local_remote):
    _tree(local_remote.root / "w", {f"m_{i}.pt": b"%d" % i for i in range(1, 5)})
    res = prune(local_remote, "w", policy=PrunePolicy(keep_last=1), lock_dir=tmp_path / "l",
                progress=Asked(False))
    assert not res.confirmed and res.deleted == [] and len(res.plan.delete) == 3
    assert len(list((local_remote.root / "w").iterdir())) == 4


def test_dedupe_dry_run_changes_nothing_and_plans_what_the_real_run_does(
        tmp_path, emulator, drive_remote):
    for i in range(3):
        drive_remote.upload(_tree(tmp_path / f"c{i}", {"w.pt": b"same"}) / "w.pt", "d/w.pt")
    before = dict(emulator.counters["ops"])
    dry = dedupe(drive_remote, "d", dry_run=True)
    assert changes(emulator, before) == {} and dry.deleted == 0
    real = dedupe(drive_remote, "d")
    assert real.actions == dry.actions and real.plan == dry.plan and real.deleted == 2
    assert changes(emulator, before) == {"batch": 1, "files.update": 2}   # trashed in one batch


def test_apply_plan_alone_decides_whether_anything_runs(tmp_path, local_remote):
    (local_remote.root / "old.txt").write_bytes(b"o")
    old = local_remote.stat("old.txt")
    plan = Plan([Action(MKDIR, "new"), Action(UPLOAD, "new/a.txt", size=1),
                 Action(DELETE, "old.txt", targets=(old,)), Action(EMPTY_TRASH, "")])
    ran: list[str] = []

    def run(a: Action) -> int:
        ran.append(a.kind)
        return a.size

    asked = Asked(True)
    blocked = [("/x", DiskFull("no room"))]
    dry = apply_plan(plan, run, remote=local_remote, dry_run=True, progress=asked,
                     ask=Ask("go?"), blockers=blocked)
    assert ran == [] and asked.asked == [] and local_remote.exists("old.txt")
    assert [(p.path, p.reason) for p in dry.warnings] == [("/x", "no room")]
    real = apply_plan(plan, run, remote=local_remote, progress=asked, ask=Ask("go?"))
    assert ran == [MKDIR, UPLOAD, EMPTY_TRASH] and asked.asked == [("go?", [])]
    assert not local_remote.exists("old.txt") and [e.path for _, e in real.removed] == ["old.txt"]
    assert real.done[UPLOAD] == 1 and real.bytes == 1


def test_push_json_with_a_problem_is_one_document_then_exit_4(tmp_path, emulator,
                                                              monkeypatch, capsys):
    monkeypatch.setenv("DRIVESYNC_TOKEN", TOKEN)
    monkeypatch.setenv("DRIVESYNC_WRITE_RATE", "0")
    src = _tree(tmp_path / "src", {"a.txt": b"a", "bad\x01name.txt": b"b"})
    code = main(["push", str(src), "drive:space_Colab/ds", "--endpoint", emulator.url,
                 "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)                         # exactly one document
    assert code == EXIT_PARTIAL and doc["ok"] is False and doc["uploaded"] == 1
    assert [p["path"] for p in doc["problems"]] == ["bad\x01name.txt"]
    assert "drivesync: error: push: 1 item(s) failed" in captured.err


def test_latest_default_min_age_reads_the_remotes_features_not_its_address(local_remote):
    from dataclasses import replace

    from drivesync.checkpoints.latest import DEFAULT_LOCAL_MIN_AGE, default_min_age

    assert default_min_age(local_remote) == DEFAULT_LOCAL_MIN_AGE      # a folder: live writes
    local_remote.features = replace(local_remote.features, live_writes=False)
    assert local_remote.address.startswith("local:") and default_min_age(local_remote) == 0.0
