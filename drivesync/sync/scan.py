"""What a push finds locally: a stat-only walk of the folder, and the folder-size rule.

Names are turned into remote names here (``names.remote_part``); a name that
cannot travel (not UTF-8, a control character), a folder that cannot be listed
and a file that cannot be stat'ed are recorded as unreadable: their remote
copies are kept by every decision. Links that leave the folder, loops and
special files are skipped with a warning.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from ..errors import UsageError
from ..outcome import Problem
from ..types import is_internal
from .names import ControlCharacterName, printable, remote_part
from .plan import excluded

#: how scan lists a folder (a seam: tests, which run as root, make a folder unreadable here)
_scandir = os.scandir


@dataclass
class LocalTree:
    """What a push found locally: files (with stat), folders, shard folders."""

    root: str
    files: dict[str, os.stat_result] = field(default_factory=dict)   # rel -> stat
    sources: dict[str, str] = field(default_factory=dict)            # rel -> absolute path
    dirs: set[str] = field(default_factory=set)
    children: dict[str, list[str]] = field(default_factory=dict)     # dir rel -> file rels
    subdirs: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    #: rel -> why: could not be listed or read (a problem: exit 4)
    unreadable: dict[str, str] = field(default_factory=dict)
    #: rel -> why: skipped on purpose (a link leaving the tree, a FIFO): only a warning
    skipped: dict[str, str] = field(default_factory=dict)

    def kept(self) -> set[str]:
        """Local paths whose remote counterparts no decision may delete or replace."""
        return set(self.unreadable) | set(self.skipped)

    def shards(self) -> list[str]:
        """Folders whose direct children are only files (leaf folders of `drivesync shard`)."""
        return sorted(d for d in self.dirs
                      if d and self.children.get(d) and not self.subdirs.get(d))


def scan(root: Union[str, Path], *, excludes: Sequence[str] = ()) -> LocalTree:
    """Stat every file below ``root``; skip internal files and links leaving the tree."""
    root = os.path.abspath(root)
    if os.path.isfile(root):
        raise UsageError(f"{root}: is a file; push copies the files of a folder (put the "
                         "file in a folder of its own and push that)")
    if not os.path.isdir(root):
        raise UsageError(f"{root}: no such folder")
    tree = LocalTree(root=root)
    tree.dirs.add("")
    seen_dirs = {os.path.realpath(root)}
    stack = [("", root)]
    while stack:
        rel_dir, abs_dir = stack.pop()
        tree.children.setdefault(rel_dir, [])
        tree.subdirs.setdefault(rel_dir, [])
        try:
            items = sorted(_scandir(abs_dir), key=lambda d: d.name)
        except OSError as exc:
            if not rel_dir:
                raise UsageError(f"{root}: cannot list: {exc.strerror or exc}") from None
            tree.unreadable[rel_dir] = f"cannot list: {exc.strerror or exc}"
            continue
        for d in items:
            rel = _scan_name(tree, rel_dir, d.name, excludes)
            if rel is not None and _scan_link(tree, rel, d, seen_dirs):
                _scan_entry(tree, rel_dir, rel, d, seen_dirs, stack)
    tree.warnings += [Problem(*kv) for kv in sorted(tree.skipped.items())]
    return tree


def _scan_name(tree: LocalTree, rel_dir: str, name: str,
               excludes: Sequence[str]) -> Optional[str]:
    """The remote path of local ``name``; None when it is not pushed (said in ``tree``)."""
    try:
        part = remote_part(name)  # "a\\b.txt" -> "a＼b.txt": one name, not a folder
    except (UnicodeEncodeError, ControlCharacterName) as exc:
        shown = posixpath.join(rel_dir, printable(name)) if rel_dir else printable(name)
        tree.unreadable[shown] = (
            "the name is not valid UTF-8, which Drive names must be: rename it"
            if isinstance(exc, UnicodeEncodeError) else
            f"{exc}, which pull could not give back as it is: rename it")
        return None
    rel = posixpath.join(rel_dir, part) if rel_dir else part
    return None if is_internal(name) or excluded(rel, excludes) else rel


def _scan_link(tree: LocalTree, rel: str, d: os.DirEntry, seen_dirs: set[str]) -> bool:
    """False for a symlink that leaves the tree or loops (skipped, said in ``tree``)."""
    if not d.is_symlink():
        return True
    target = os.path.realpath(d.path)
    real_root = os.path.realpath(tree.root)
    if os.path.commonpath([real_root, target]) != real_root:
        tree.skipped[rel] = "symlink leaves the folder; skipped"
        return False
    if os.path.isdir(target) and target in seen_dirs:
        tree.skipped[rel] = "symlink loop; skipped"
        return False
    return True


def _scan_entry(tree: LocalTree, rel_dir: str, rel: str, d: os.DirEntry,
                seen_dirs: set[str], stack: list[tuple[str, str]]) -> None:
    try:
        if d.is_dir():
            seen_dirs.add(os.path.realpath(d.path))
            tree.dirs.add(rel)
            tree.subdirs[rel_dir].append(rel)
            stack.append((rel, d.path))
        elif d.is_file():
            tree.files[rel] = d.stat()
            tree.sources[rel] = d.path
            tree.children[rel_dir].append(rel)
        elif d.is_symlink():
            tree.unreadable[rel] = "broken symlink: cannot read its target"
        else:
            tree.skipped[rel] = "not a regular file; skipped"
    except OSError as exc:
        tree.unreadable[rel] = f"cannot stat: {exc.strerror or exc}"


def check_folder_sizes(tree: LocalTree, shards: Sequence[str], *, limit: int) -> None:
    """UsageError when one remote folder would get more than ``limit`` files."""
    packed = set(shards)
    too_big = []
    for d in sorted(tree.dirs):
        if d in packed:
            continue
        n = len(tree.children.get(d, [])) + 2 * sum(1 for s in tree.subdirs.get(d, [])
                                                     if s in packed)
        if n > limit:
            too_big.append(f"{d or '.'} ({n} files)")
    if too_big:
        raise UsageError(
            f"these folders would put more than {limit} files into one Drive folder: "
            f"{', '.join(too_big[:5])}{' ...' if len(too_big) > 5 else ''}. Drive and Colab "
            "slow down on big folders: split them with `drivesync shard`, push with --pack, "
            "or override with --allow-big-folders")
