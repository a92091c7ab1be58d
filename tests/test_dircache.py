"""The folder-id cache (remotes/dircache.py) against a small in-memory store: our own
seam, so a fake is fine here; the Drive remote's use of it runs against the emulator
in test_drive_remote.py, test_remote_contract.py and test_trust_reads.py."""

from __future__ import annotations

import threading
import time

import pytest

from drivesync.errors import AuthError, NotAFolder, NotFound
from drivesync.remotes.dircache import DirCache, FileInTheWay, LeafIsFile


class Store:
    """Folders and files by (parent id, name); counts calls; can fail reads."""

    def __init__(self) -> None:
        self.folders: dict[tuple[str, str], str] = {}
        self.files: set[tuple[str, str]] = set()
        self.finds = 0
        self.makes = 0
        self.fail: Exception | None = None
        self._n = 0
        self._lock = threading.Lock()

    def find_leaf(self, parent: str, parts: tuple[str, ...]) -> str | None:
        with self._lock:
            self.finds += 1
        if self.fail is not None:
            raise self.fail
        time.sleep(0.001)  # let threads interleave
        found = self.folders.get((parent, parts[-1]))
        if found is None and (parent, parts[-1]) in self.files:
            raise LeafIsFile()
        return found

    def make_leaf(self, parent: str, parts: tuple[str, ...]) -> str:
        with self._lock:
            self.makes += 1
            self._n += 1
            folder_id = f"id{self._n}"
        time.sleep(0.002)
        self.folders[(parent, parts[-1])] = folder_id
        return folder_id

    def cache(self) -> DirCache:
        return DirCache(base=lambda: "ROOT", find_leaf=self.find_leaf, make_leaf=self.make_leaf,
                        where=lambda parts: "drive:" + "/".join(parts))


def test_threads_creating_one_path_make_each_folder_once():
    store = Store()
    dirs = store.cache()
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(dirs.find(("a", "b", "c"), create=True)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.makes == 3 and len(set(got)) == 1
    assert dirs.find(("a", "b")) == store.folders[(store.folders[("ROOT", "a")], "b")]


def test_answers_are_cached_and_flush_drops_a_subtree():
    store = Store()
    dirs = store.cache()
    dirs.find(("a", "b"), create=True)
    dirs.find(("x",), create=True)
    finds = store.finds
    assert dirs.find(("a", "b")) and dirs.find(("x",))
    assert store.finds == finds                      # no request for a known path
    dirs.flush(("a",))
    assert dirs.get(("a",)) is None and dirs.get(("a", "b")) is None
    assert dirs.get(("x",)) is not None
    dirs.flush()
    assert dirs.get(("x",)) is None


def test_offer_never_replaces_a_known_id():
    dirs = Store().cache()
    dirs.put(("a",), "first")
    dirs.offer(("a",), "second")
    dirs.offer(("b",), "other")
    assert dirs.get(("a",)) == "first" and dirs.get(("b",)) == "other"


def test_absent_is_not_found_naming_the_whole_path():
    dirs = Store().cache()
    with pytest.raises(NotFound, match="drive:a/b: no such folder"):
        dirs.existing(("a", "b"))
    assert dirs.find(()) == "ROOT"


def test_a_read_error_is_never_read_as_absent():
    store = Store()
    dirs = store.cache()
    store.fail = AuthError("token revoked")
    with pytest.raises(AuthError):
        dirs.existing(("a",))
    with pytest.raises(AuthError):
        dirs.find(("a",), create=True)
    assert store.makes == 0                          # nothing made on a failed read


def test_a_file_in_the_way():
    store = Store()
    store.files.add(("ROOT", "f"))
    dirs = store.cache()
    with pytest.raises(FileInTheWay, match="is a file, not a folder") as info:
        dirs.existing(("f", "sub"))
    assert isinstance(info.value, NotFound) and info.value.exit_code == NotAFolder.exit_code
    with pytest.raises(NotAFolder, match="exists and is not a folder"):
        dirs.find(("f", "sub"), create=True)
    assert store.makes == 0
