"""Pure parts of sync: planning tables, safe local names, the pack format."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesync.errors import DatasetError
from drivesync.sync.names import assign_names, ensure_dir, inside, numbered, safe_part
from drivesync.sync.pack import (
    Member,
    check_member_name,
    members_key,
    parse_manifest,
    tar_size,
    unpack_tar,
    write_tar,
)
from drivesync.sync.plan import (
    DELETE,
    MERGE,
    MKDIR,
    RENAME,
    REPLACE,
    SKIP,
    UPLOAD,
    LocalFile,
    plan_dedupe,
    plan_push,
)
from drivesync.types import FOLDER, Entry


def f(rel, size=3, md5="m1"):
    return LocalFile(rel, size, md5, "/src/" + rel)


def r(path, size=3, md5="m1", modified=1.0, id=None, kind="file"):
    return Entry(path=path, size=size, md5=md5, modified=modified, kind=kind, id=id or path)


def kinds(plan):
    return [(a.kind, a.path) for a in plan.actions]


def test_plan_push_table():
    plan = plan_push([f("a.txt"), f("d/b.txt"), f("c.txt", md5="new"), f("e.txt", size=9)],
                     ["", "d"],
                     [r("c.txt"), r("e.txt", size=3), r("old.txt"), r("a.txt")], delete=True)
    assert kinds(plan) == [(MKDIR, "d"), (SKIP, "a.txt"), (REPLACE, "c.txt"), (UPLOAD, "d/b.txt"),
                           (REPLACE, "e.txt"), (DELETE, "old.txt")]
    assert plan.summary()["bytes"] == 3 + 3 + 9


def test_plan_push_duplicates_keep_the_matching_copy_and_delete_the_rest():
    remote = [r("a", md5="x", id="1", modified=1), r("a", md5="m1", id="2", modified=2),
              r("a", md5="m1", id="3", modified=3)]
    plan = plan_push([f("a")], [""], remote)
    assert kinds(plan) == [(SKIP, "a"), (DELETE, "a")]
    assert plan.actions[0].targets[0].id == "2"
    assert sorted(e.id for e in plan.actions[1].targets) == ["1", "3"]
    assert plan.actions[1].permanent


def test_plan_push_under_a_base_that_does_not_exist_and_delete_respects_excludes():
    plan = plan_push([f("a")], [""], [], base="x/y", base_exists=False)
    assert kinds(plan) == [(MKDIR, "x/y"), (UPLOAD, "x/y/a")]
    plan = plan_push([], [""], [r("x/keep.tmp"), r("x/sub", kind=FOLDER), r("x/sub/z")],
                     base="x", delete=True, excludes=["*.tmp"])
    assert kinds(plan) == [(DELETE, "x/sub")]  # the folder goes whole; its file with it


def test_plan_dedupe_table():
    kids = [r("d/a", md5="1", id="i1", modified=5), r("d/a", md5="1", id="i2", modified=1),
            r("d/a", md5="2", id="i3", modified=3), r("d/b", md5="1"),
            r("d/s", kind=FOLDER, id="f1", modified=2), r("d/s", kind=FOLDER, id="f2", modified=1)]
    plan = plan_dedupe("d", kids)
    assert kinds(plan) == [(DELETE, "d/a"), (MERGE, "d/s")]
    assert plan.actions[0].targets[0].id == "i1"       # the younger twin goes
    assert plan.actions[1].targets[0].id == "f2"       # merge into the oldest
    assert plan.problems and plan.problems[0][0] == "d/a"
    plan = plan_dedupe("d", kids, rename=True)
    ren = plan.of(RENAME)
    assert len(ren) == 1 and ren[0].data == "d/a (2)" and ren[0].targets[0].id == "i3"


@pytest.mark.parametrize("name,expect", [
    ("../evil", ".._evil"), ("a/b", "a_b"), ("CON", "_CON"), ("con.txt", "_con.txt"),
    ("..", "___"), (".", "__"), ("", "_unnamed"), ("x\x00y", "x_y"), ("ok.jpg", "ok.jpg"),
    ("trail. ", "trail"), (".drivesync-state", "_.drivesync-state"), ("COM1", "_COM1"),
])
def test_safe_part_table(name, expect):
    assert safe_part(name) == expect


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_safe_part_never_escapes(name):
    out = safe_part(name)
    assert out and out not in (".", "..")
    assert "/" not in out and "\\" not in out and "\x00" not in out
    assert len(out.encode("utf-8")) <= 255
    assert os.path.normpath(os.path.join("/root", out)).startswith("/root/")


def test_assign_names_keeps_same_named_items_apart_deterministically():
    es = [Entry("d/x.jpg", id="b", modified=2), Entry("d/x.jpg", id="a", modified=2),
          Entry("d/X.JPG", id="c", modified=1)]
    got = assign_names(es, folder="d")
    assert got == {"c": "X.JPG", "a": "x (2).jpg", "b": "x (3).jpg"}
    assert assign_names(list(reversed(es)), folder="d") == got
    assert numbered(".bashrc", 2) == ".bashrc (2)"


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=300), st.integers(2, 10_000))
def test_long_names_are_kept_up_to_255_bytes_and_numbers_stay_distinct(name, n):
    part = safe_part(name)
    assert safe_part(part) == part  # a usable local name is kept as it is
    got, nxt = numbered(part, n), numbered(part, n + 1)
    assert len(got.encode("utf-8")) <= 255 and f" ({n})" in got and got != nxt
    long = "\u00e9" * 102 + ".txt"  # 208 bytes: fine on every file system, so unchanged
    assert safe_part(long) == long


def test_ensure_dir_refuses_links_out(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "a")
    with pytest.raises(ValueError):
        ensure_dir(str(root), ["a", "b"])
    assert not (outside / "b").exists()
    assert ensure_dir(str(root), ["c", "d"]) == os.path.realpath(root / "c" / "d")
    assert inside(str(root), str(root / "c")) and not inside(str(root), str(root / "a"))


def _shard(tmp_path, files):
    d = tmp_path / "shard"
    d.mkdir(exist_ok=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return [Member(n, len(b), None, str(d / n)) for n, b in files.items()]


def test_tar_is_deterministic_and_round_trips(tmp_path):
    members = _shard(tmp_path, {"b.jpg": b"bb" * 100, "a.txt": b"a", "é.jpg": b"x"})
    m1 = write_tar("000", members, tmp_path / "1.tar")
    os.utime(members[0].source, (1, 1))  # mtimes do not matter
    m2 = write_tar("000", members, tmp_path / "2.tar")
    assert m1 == m2 and m1.tar_md5 and m1.tar_size == os.path.getsize(tmp_path / "1.tar")
    assert [m.name for m in m1.members] == ["a.txt", "b.jpg", "é.jpg"]
    assert parse_manifest(m1.to_bytes()) == m1
    assert members_key(list(m1.members)) == members_key(list(reversed(m1.members)))
    out = tmp_path / "out"
    out.mkdir()
    assert unpack_tar(tmp_path / "1.tar", m1, out) == []
    assert (out / "b.jpg").read_bytes() == b"bb" * 100


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",),
                                             blacklist_characters="/\x00"),
                               min_size=1, max_size=60),
                       st.integers(0, 3000), max_size=6))
def test_tar_size_is_known_before_the_tar_is_built(tmp_path_factory, sizes):
    tmp = tmp_path_factory.mktemp("t")
    files = {name: b"x" * size for name, size in sizes.items() if name not in (".", "..")}
    members = _shard(tmp, files)
    assert tar_size(members) == write_tar("000", members, tmp / "s.tar").tar_size


def test_unpack_of_a_matching_archive_refuses_unlisted_twice_and_blocked_members(tmp_path):
    """The archive's own md5 matches its manifest, yet members are refused one by one:
    unlisted, twice, listed but absent, or a folder where a file lands."""
    import dataclasses
    import hashlib
    import io
    import tarfile

    from drivesync.sync.pack import Manifest

    def member(name: str, data: bytes) -> Member:
        return Member(name=name, size=len(data), md5=hashlib.md5(data).hexdigest())

    bad = tmp_path / "crafted.tar"
    with tarfile.open(bad, "w") as tar:
        for name, data in (("a.txt", b"a"), ("extra.txt", b"e"), ("a.txt", b"a"),
                           ("b/c.txt", b"c"), ("d.txt", b"d")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    raw = bad.read_bytes()
    man = Manifest(shard="000", tar_size=len(raw), tar_md5=hashlib.md5(raw).hexdigest(),
                   members=(member("a.txt", b"a"), member("b/c.txt", b"c"),
                            member("d.txt", b"d"), member("gone.txt", b"g")))
    out = tmp_path / "out"
    (out / "d.txt").mkdir(parents=True)          # a folder where d.txt lands
    placed: list[str] = []
    problems = dict(unpack_tar(bad, man, out, on_member=lambda path, md5: placed.append(path)))
    assert problems == {"extra.txt": "not listed in the manifest",
                        "a.txt": "appears twice in the archive",
                        "d.txt": "a folder is in the way",
                        "gone.txt": "listed in the manifest but missing from the archive"}
    assert sorted(os.path.relpath(p, out) for p in placed) == ["a.txt", os.path.join("b", "c.txt")]
    assert (out / "b" / "c.txt").read_bytes() == b"c" and (out / "d.txt").is_dir()
    wrong = dataclasses.replace(man, tar_md5="0" * 32)
    assert "" in dict(unpack_tar(bad, wrong, tmp_path / "out2"))  # the archive's md5
    assert not (tmp_path / "out2").exists()                      # nothing of it landed


def test_unpack_refuses_bad_members_and_wrong_bytes(tmp_path):
    import io
    import tarfile

    members = _shard(tmp_path, {"a.txt": b"hello"})
    man = write_tar("000", members, tmp_path / "good.tar")
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        for name, data in (("../evil", b"x"), ("/abs", b"x"), ("a.txt", b"HELLO")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("lnk")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    out = tmp_path / "out"
    out.mkdir()
    problems = dict(unpack_tar(bad, man, out))
    assert set(problems) == {"../evil", "/abs", "a.txt", "lnk", ""}  # "": the archive's md5
    assert os.listdir(out) == []  # nothing written, not even temp files
    assert not (tmp_path / "evil").exists()
    with pytest.raises(DatasetError):
        check_member_name("a/../../b")
    with pytest.raises(DatasetError):
        parse_manifest(b'{"format": "other"}')
