"""The pure prune policy: table tests, quota arithmetic with trash, and properties."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivesync.checkpoints.families import NAMED_ROLES, parse_checkpoint
from drivesync.checkpoints.latest import complete_checkpoints
from drivesync.checkpoints.policy import PrunePolicy, parse_size, select_prunable
from drivesync.errors import UsageError
from drivesync.types import Entry, Quota

MB = 1_000_000


def E(path, size=100, modified=0.0, md5=None, id=""):  # noqa: N802, A002
    return Entry(path, size=size, modified=modified, md5=md5 or f"md5-{path}", id=id or path)


def paths(decisions):
    return sorted(d.entry.path for d in decisions)


def darknet(n=10, size=100, step=1000):
    """y_1000..y_N000 plus a newer _last and an older _best."""
    out = [E(f"y_{i * step}.weights", size=size, modified=i) for i in range(1, n + 1)]
    out += [E("y_last.weights", size=size, modified=n + 0.5),
            E("y_best.weights", size=size, modified=3.5)]
    return out


# ---- sizes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("1048576", 1048576), ("15G", 15 * 2 ** 30), ("500MiB", 500 * 2 ** 20),
    ("1.5GB", 1_500_000_000), ("2k", 2048), ("10 MB", 10 ** 7), ("7b", 7), ("1T", 2 ** 40),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "15X", "-5G", "1.2.3G", "ten"])
def test_parse_size_rejects_garbage_with_a_clear_message(text):
    with pytest.raises(UsageError, match="--max-bytes: expected a size like 15G"):
        parse_size(text, what="--max-bytes")


def test_policy_validates_its_numbers():
    with pytest.raises(UsageError, match="keep_last"):
        PrunePolicy(keep_last=-1)
    with pytest.raises(UsageError, match="keep_every"):
        PrunePolicy(keep_every=0)
    for bad in (-1.0, float("nan")):
        with pytest.raises(UsageError, match="min_age"):
            PrunePolicy(min_age=bad)


# ---- min_age: a checkpoint still being written -----------------------------------------------
def test_min_age_keeps_young_checkpoints_out_of_the_plan():
    """A trainer writing into the folder: y_10000 and _last were modified within a minute."""
    entries = darknet()                      # y_N000 at t=N, _last at 10.5, _best at 3.5
    now = 69.0
    unsafe = select_prunable(entries, PrunePolicy(keep_last=0), now=now)
    assert "y_10000.weights" in paths(unsafe.delete)   # what min_age is there to prevent
    plan = select_prunable(entries, PrunePolicy(keep_last=0, min_age=60), now=now)
    reasons = {d.entry.path: d.reason for d in plan.keep}
    assert reasons["y_10000.weights"] == ("modified 59s ago, younger than --min-age 60s: "
                                          "may still be being written")
    assert "younger than --min-age" in reasons["y_last.weights"]
    # the settled files are planned as if the young ones were not there yet
    assert reasons["y_9000.weights"] == "newest complete checkpoint of family 'y'"
    assert paths(plan.delete) == sorted(f"y_{i}000.weights" for i in range(1, 9))
    # ... but their bytes still count towards a budget
    tight = select_prunable(entries, PrunePolicy(keep_last=0, min_age=60, max_bytes=300),
                            now=now)
    assert not tight.budget_met and "protected and young" in tight.notes[0]
    assert {"y_10000.weights", "y_last.weights"} <= set(paths(tight.keep))


def test_min_age_a_modified_time_in_the_future_is_young():
    entries = [E("m_1.pt", modified=0.0), E("m_2.pt", modified=10.0), E("m_3.pt", modified=500.0)]
    plan = select_prunable(entries, PrunePolicy(keep_last=0, min_age=60), now=100.0)
    reasons = {d.entry.path: d.reason for d in plan.keep}
    assert "400s in the future" in reasons["m_3.pt"]
    assert paths(plan.delete) == ["m_1.pt"]    # m_2 is the newest settled complete one


# ---- rules -----------------------------------------------------------------------------------
def test_keep_last_and_keep_every_without_budget_delete_the_rest():
    plan = select_prunable(darknet(), PrunePolicy(keep_last=2, keep_every=4000))
    assert paths(plan.keep) == ["y_10000.weights", "y_4000.weights", "y_8000.weights",
                                "y_9000.weights", "y_best.weights", "y_last.weights"]
    assert paths(plan.delete) == sorted(f"y_{i}000.weights" for i in (1, 2, 3, 5, 6, 7))
    assert plan.bytes_freed == 600 and plan.budget_met
    reasons = {d.entry.path: d.reason for d in plan.keep + plan.delete}
    assert reasons["y_last.weights"] == "newest last of family 'y'"
    assert "multiple of 4000" in reasons["y_8000.weights"]
    assert "older than the newest 2 numbered" in reasons["y_1000.weights"]


def test_other_files_are_ignored_and_never_deleted():
    entries = darknet(4) + [E("yolov3.weights"), E("obj.data"), E("sub", size=0)]
    entries[-1] = Entry("sub", kind="folder")
    plan = select_prunable(entries, PrunePolicy(keep_last=0))
    assert sorted(e.path for e in plan.ignored) == ["obj.data", "sub", "yolov3.weights"]
    assert not {"obj.data", "yolov3.weights", "sub"} & set(paths(plan.delete))


def test_max_bytes_deletes_oldest_only_until_it_fits():
    plan = select_prunable(darknet(), PrunePolicy(keep_last=2, max_bytes=900))
    # 12 files x 100 = 1200 -> delete the 3 oldest unprotected ones
    assert paths(plan.delete) == ["y_1000.weights", "y_2000.weights", "y_3000.weights"]
    assert plan.checkpoint_bytes_after == 900 and plan.budget_met
    assert "--max-bytes" in plan.delete[0].reason


def test_unreachable_budget_deletes_every_unprotected_file_and_says_so():
    plan = select_prunable(darknet(5), PrunePolicy(keep_last=3, max_bytes=100))
    assert paths(plan.keep) == ["y_3000.weights", "y_4000.weights", "y_5000.weights",
                                "y_best.weights", "y_last.weights"]
    assert not plan.budget_met
    assert "not reachable" in plan.notes[0]


def test_incomplete_files_go_first_under_a_budget():
    entries = darknet(5)
    entries[3] = E("y_4000.weights", size=10, modified=4)  # truncated, newer than 1000..3000
    plan = select_prunable(entries, PrunePolicy(keep_last=1, max_bytes=550))  # holds 610
    assert [d.entry.path for d in plan.delete] == ["y_4000.weights", "y_1000.weights"]
    assert "incomplete" in [d for d in plan.delete if d.entry.path == "y_4000.weights"][0].reason


def test_newest_complete_is_protected_when_the_newest_files_are_truncated():
    entries = [E("y_1000.weights", modified=1), E("y_2000.weights", modified=2),
               E("y_3000.weights", size=7, modified=3), E("y_last.weights", size=0, modified=4)]
    plan = select_prunable(entries, PrunePolicy(keep_last=1))
    assert paths(plan.keep) == ["y_2000.weights", "y_3000.weights", "y_last.weights"]
    why = {d.entry.path: d.reason for d in plan.keep}
    assert why["y_2000.weights"] == "newest complete checkpoint of family 'y'"
    assert "incomplete" in why["y_3000.weights"]


def test_identical_copies_are_kept_once_but_protected_names_stay():
    entries = [E("y_1000.weights", md5="same", modified=1), E("y_2000.weights", modified=2),
               E("copy_of_y_1000.weights", md5="same", modified=5),
               E("w/best.pt", md5="bp", modified=8), E("w/last.pt", md5="bp", modified=9),
               E("y_2000.weights", md5="md5-y_2000.weights", modified=2, id="dup-id")]
    plan = select_prunable(entries, PrunePolicy(keep_last=5))
    deleted = {d.entry.path: d.reason for d in plan.delete}
    # y_1000 is only retained (keep_last), its twin is its family's newest: the twin stays
    assert deleted["y_1000.weights"].startswith("identical copy of copy_of_y_1000.weights")
    # a same-named duplicate upload (Drive allows them) is kept once
    assert deleted["y_2000.weights"].startswith("identical copy of y_2000.weights")
    assert len(plan.delete) == 2
    # best.pt == last.pt: both protected names stay (trainers resume from last.pt by name)
    assert {"copy_of_y_1000.weights", "w/best.pt", "w/last.pt", "y_2000.weights"} == set(
        paths(plan.keep))
    assert "kept for its name" in next(d.reason for d in plan.keep if d.entry.path == "w/best.pt")


def test_identical_unprotected_copy_is_deleted_even_without_pressure():
    entries = darknet(6)
    entries.append(E("y_7000.weights", md5="md5-y_5000.weights", modified=7))
    plan = select_prunable(entries, PrunePolicy(keep_last=10))
    assert [d.entry.path for d in plan.delete] == ["y_5000.weights"]
    assert plan.delete[0].reason.startswith("identical copy of y_7000.weights")


# ---- quota arithmetic with the trash ------------------------------------------------
def ckpts_for_quota():
    return [E(f"m_{i}.pt", size=10 * MB, modified=i) for i in range(1, 11)]  # 100 MB


def test_min_free_needs_the_quota():
    with pytest.raises(UsageError, match="quota"):
        select_prunable(ckpts_for_quota(), PrunePolicy(min_free=1))


def test_min_free_with_permanent_delete_counts_the_freed_bytes():
    quota = Quota(limit=1000 * MB, usage=975 * MB, trash=0)  # 25 MB free
    plan = select_prunable(ckpts_for_quota(), PrunePolicy(keep_last=1, min_free=50 * MB),
                           quota=quota, permanent=True)
    assert len(plan.delete) == 3 and plan.budget_met      # 25 + 30 >= 50
    assert plan.free_before == 25 * MB and plan.free_after == 55 * MB


def test_min_free_deleting_to_trash_frees_nothing_so_nothing_is_deleted():
    quota = Quota(limit=1000 * MB, usage=975 * MB, trash=0)
    plan = select_prunable(ckpts_for_quota(), PrunePolicy(keep_last=1, min_free=50 * MB),
                           quota=quota, permanent=False)
    assert plan.delete == [] and not plan.budget_met
    assert "trash frees nothing" in plan.notes[0]


def test_emptying_the_trash_counts_what_it_already_held():
    quota = Quota(limit=1000 * MB, usage=975 * MB, trash=20 * MB)
    plan = select_prunable(ckpts_for_quota(), PrunePolicy(keep_last=1, min_free=50 * MB),
                           quota=quota, empty_trash=True)
    assert len(plan.delete) == 1 and plan.budget_met       # 25 + 20 (trash) + 10
    assert plan.free_after == 55 * MB
    roomy = select_prunable(ckpts_for_quota(), PrunePolicy(keep_last=1, min_free=40 * MB),
                            quota=quota, empty_trash=True)
    assert roomy.delete == [] and roomy.budget_met          # the trash alone is enough


def test_unlimited_quota_always_meets_min_free():
    plan = select_prunable(ckpts_for_quota(), PrunePolicy(keep_last=1, min_free=10 ** 15),
                           quota=Quota(limit=None, usage=5), permanent=True)
    assert plan.delete == [] and plan.budget_met


def test_max_bytes_and_min_free_together_both_count():
    quota = Quota(limit=1000 * MB, usage=990 * MB)
    plan = select_prunable(ckpts_for_quota(), PrunePolicy(keep_last=1, max_bytes=80 * MB,
                                                          min_free=40 * MB),
                           quota=quota, permanent=True)
    assert len(plan.delete) == 3 and plan.budget_met        # min_free needs 3, max_bytes 2


# ---- properties ------------------------------------------------------------------------
FAMILIES = ["yolov3", "tiny", "model"]
OTHERS = ["yolov3.weights", "obj.data", "notes.txt", "yolov5s.pt", "train_100.txt"]


@st.composite
def folders(draw):
    """A random folder: a few families with sizes, duplicates, truncations and other files."""
    entries: list[Entry] = []
    times = iter(draw(st.permutations(range(200))))
    md5_pool = [f"h{i}" for i in range(draw(st.integers(3, 40)))]
    for fam in draw(st.lists(st.sampled_from(FAMILIES + ["w/"]), min_size=1, max_size=3,
                             unique=True)):
        size = draw(st.sampled_from([100, 1000]))
        names = []
        if fam == "w/":
            names += [f"w/epoch{n}.pt" for n in draw(st.sets(st.integers(1, 30), max_size=8))]
            names += [f"w/{r}.pt" for r in draw(st.sets(st.sampled_from(["last", "best"])))]
        else:
            names += [f"{fam}_{n * 100}.weights"
                      for n in draw(st.sets(st.integers(1, 60), max_size=10))]
            names += [f"{fam}_{r}.weights" for r in draw(st.sets(st.sampled_from(NAMED_ROLES)))]
            if draw(st.booleans()):
                names.append(f"{fam}.backup")
        if names and draw(st.booleans()):
            names.append(draw(st.sampled_from(names)))  # a same-named duplicate
        for i, name in enumerate(names):
            s = draw(st.sampled_from([size, size, size, size, 0, size // 2, size - 1]))
            md5 = draw(st.sampled_from(md5_pool + [None])) if draw(st.booleans()) else None
            entries.append(Entry(name, size=s, md5=md5 or f"u-{name}-{i}",
                                 modified=float(next(times)), id=f"{name}#{i}"))
    for name in draw(st.sets(st.sampled_from(OTHERS))):
        entries.append(Entry(name, size=500, md5="other", modified=float(next(times)), id=name))
    return draw(st.permutations(entries))


policies = st.builds(
    PrunePolicy,
    keep_last=st.integers(0, 4),
    keep_every=st.one_of(st.none(), st.sampled_from([2, 5, 10, 1000])),
    max_bytes=st.one_of(st.none(), st.integers(0, 20000)),
    min_free=st.one_of(st.none(), st.integers(0, 20000)),
    min_age=st.sampled_from([0.0, 0.0, 20.0, 150.0]),
)
NOW = 200.0   # folder times are 0..199
quotas = st.builds(lambda used, trash, limit: Quota(limit=limit, usage=used + trash,
                                                    trash=trash),
                   st.integers(0, 30000), st.integers(0, 3000),
                   st.one_of(st.none(), st.just(40000)))

PROPS = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def key(e: Entry):
    return (e.path, e.id)


def run(entries, policy, quota, permanent, empty_trash):
    return select_prunable(entries, policy, quota=quota, permanent=permanent,
                           empty_trash=empty_trash, now=NOW)


@PROPS
@given(folders(), policies, quotas, st.booleans(), st.booleans())
def test_invariants(entries, policy, quota, permanent, empty_trash):
    plan = run(entries, policy, quota, permanent, empty_trash)
    deleted = {key(d.entry) for d in plan.delete}
    kept = {key(d.entry) for d in plan.keep}
    remaining = [e for e in entries if key(e) not in deleted]
    ckpts = [(e, parse_checkpoint(e)) for e in entries]

    # every item is decided exactly once; non-checkpoints are never deleted
    assert not deleted & kept
    assert {key(e) for e in plan.ignored} == {key(e) for e, c in ckpts if c is None}
    assert all(parse_checkpoint(d.entry) is not None for d in plan.delete)
    assert all(d.reason for d in plan.delete + plan.keep)
    # nothing modified within min_age of now is ever deleted
    assert all(NOW - d.entry.modified >= policy.min_age for d in plan.delete)

    by_family: dict = {}
    for e, c in ckpts:
        if c is not None:
            by_family.setdefault(c.key, []).append((e, c))
    for fam, members in by_family.items():
        # protected: the newest (by mtime; all mtimes differ) of each named role
        for role in NAMED_ROLES:
            of_role = [e for e, c in members if c.role == role]
            if of_role:
                assert key(max(of_role, key=lambda e: e.modified)) in kept, (fam, role)
        # never a family without a complete checkpoint, if it had one
        before = complete_checkpoints([e for e, _ in members])
        after = complete_checkpoints([e for e, _ in members if key(e) not in deleted])
        assert bool(after) == bool(before), fam
        # retained numbers survive, unless an identical copy of them survives
        numbers = sorted({c.number for _, c in members if c.role == "numbered"}, reverse=True)
        retained = set(numbers[:policy.keep_last]) | {
            n for n in numbers if policy.keep_every and n % policy.keep_every == 0}
        survivors = {(e.md5, e.size) for e in remaining}
        for e, c in members:
            if c.role == "numbered" and c.number in retained and key(e) in deleted:
                assert (e.md5, e.size) in survivors
                assert "identical copy" in next(d.reason for d in plan.delete
                                                if key(d.entry) == key(e))

    # identical content is kept once, except under protected names (young files are
    # outside the plan until they settle)
    seen: dict = {}
    for d in plan.keep:
        if d.entry.size > 0 and "younger than --min-age" not in d.reason:
            seen.setdefault((d.entry.md5, d.entry.size), []).append(d)
    for copies in seen.values():
        assert len(copies) == 1 or sum(not d.reason.startswith("newest ") for d in copies) <= 1

    # a budget only ever deletes what the no-budget policy would delete too,
    # and is met whenever it can be met without breaking the rules above
    loose = run(entries, replace(policy, max_bytes=None, min_free=None), quota, permanent,
                empty_trash)
    deletable = {key(d.entry) for d in loose.delete}
    assert deleted <= deletable
    frees = permanent or empty_trash
    ckpt_bytes_after = sum(d.entry.size for d in plan.keep)
    free_after = None
    if quota.limit is not None:
        free_after = (quota.limit - quota.usage + (quota.trash if empty_trash else 0)
                      + (plan.bytes_freed if frees else 0))
    assert plan.free_after == free_after
    bytes_ok = policy.max_bytes is None or ckpt_bytes_after <= policy.max_bytes
    free_ok = policy.min_free is None or free_after is None or free_after >= policy.min_free
    assert plan.budget_met == (bytes_ok and free_ok)
    if not bytes_ok or (not free_ok and frees):
        assert deleted == deletable
    if not policy.has_budget:
        assert deleted == deletable

    # idempotent: planning again on what is left deletes nothing
    if quota.limit is None:
        quota2 = quota
    elif frees:
        quota2 = Quota(limit=quota.limit,
                       usage=quota.usage - plan.bytes_freed - (quota.trash if empty_trash else 0),
                       trash=0 if empty_trash else quota.trash)
    else:
        quota2 = Quota(limit=quota.limit, usage=quota.usage, trash=quota.trash + plan.bytes_freed)
    again = run(remaining, policy, quota2, permanent, empty_trash)
    assert again.delete == []


def test_a_kept_number_is_never_dropped_for_a_copy_kept_only_by_its_place():
    """Hypothesis found it: epoch20 (--keep-every 10) was deleted as a copy of epoch27, kept
    only as the newest complete checkpoint; a later pass then deleted epoch27 too, and the
    bytes of a checkpoint the policy keeps were gone."""
    entries = [E("w/epoch1.pt", modified=53), E("w/epoch3.pt", md5="h0", modified=199),
               E("w/epoch20.pt", md5="h0", modified=35), E("w/epoch27.pt", md5="h0", modified=94),
               E("w/epoch30.pt", size=50, modified=69), E("w/last.pt", md5="h1", modified=166),
               E("w/best.pt", md5="h1", modified=195)]
    policy = PrunePolicy(keep_last=0, keep_every=10)
    plan = select_prunable(entries, policy)
    assert "w/epoch20.pt" in paths(plan.keep)          # kept for its number
    again = select_prunable([d.entry for d in plan.keep], policy)
    assert again.delete == []                           # and the next run keeps it too
