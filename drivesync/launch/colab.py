"""The runtime's environment: Colab detection, Drive mount, the root link, the darknet binary.

Everything takes its paths as arguments so tests use temporary folders; the
only Colab-specific import (``google.colab``) happens lazily, inside
:func:`ensure_drive_mounted`, and only when the mount is missing.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from ..errors import ConfigError, DriveSyncError, UsageError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
DEFAULT_MOUNT = "/content/drive"
CUDA_LIBS = ("libcuda.so", "libcudart.so", "libcublas.so", "libcudnn.so")


def in_colab() -> bool:
    """True inside a Colab runtime (the module is importable or Colab's env is set)."""
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def drive_folder(mount_point: PathLike = DEFAULT_MOUNT) -> Path:
    """The user's "My Drive" under the mount point."""
    return Path(mount_point) / "MyDrive"


def ensure_drive_mounted(mount_point: PathLike = DEFAULT_MOUNT, *,
                         mount: Optional[Callable[[str], None]] = None) -> Path:
    """Mount Drive unless ``MOUNT/MyDrive`` is already there; returns My Drive's path."""
    my_drive = drive_folder(mount_point)
    if my_drive.is_dir():
        return my_drive
    if mount is None:
        try:
            from google.colab import drive  # type: ignore[import-not-found]
        except ImportError:
            raise UsageError(
                f"{my_drive} is not mounted and this is not Colab; mount Drive yourself "
                "or pass --root/--drive-dir pointing at a local folder") from None
        mount = drive.mount
    log.info("mounting Google Drive at %s", mount_point)
    mount(str(mount_point))
    if not my_drive.is_dir():
        raise DriveSyncError(f"Drive mount finished but {my_drive} does not exist")
    return my_drive


@dataclass(frozen=True)
class LinkResult:
    link: Path
    target: Path
    action: str  # "created" | "exists" | "replaced"


def ensure_link(link: PathLike, target: PathLike, *, force: bool = False) -> LinkResult:
    """Make ``link`` a symlink to ``target``; idempotent.

    A real file or folder at ``link``, or a link pointing elsewhere, is left
    alone (an error says so) unless ``force``; even then a non-empty real folder
    is never removed, because it may hold the user's data.
    """
    link, target = Path(link), Path(target).expanduser().absolute()
    if not target.exists():
        raise ConfigError(f"root link target {target} does not exist")
    if link.is_symlink():
        current = Path(os.readlink(link))
        current = current if current.is_absolute() else (link.parent / current)
        if os.path.realpath(current) == os.path.realpath(target):
            return LinkResult(link, target, "exists")
        if not force:
            raise UsageError(f"{link} already links to {current}, not {target}; "
                             "pass --force-link to re-point it")
        link.unlink()
        _symlink(target, link)
        return LinkResult(link, target, "replaced")
    if link.exists():
        if not force:
            raise UsageError(f"{link} exists and is not a link; refusing to replace it "
                             "(move it away or pass --force-link if it is an empty folder)")
        if link.is_dir() and not any(link.iterdir()):
            link.rmdir()
        else:
            raise UsageError(f"{link} is a non-empty folder or a file; refusing to remove it "
                             "even with --force-link")
        _symlink(target, link)
        return LinkResult(link, target, "replaced")
    link.parent.mkdir(parents=True, exist_ok=True)
    _symlink(target, link)
    return LinkResult(link, target, "created")


def _symlink(target: Path, link: Path) -> None:
    try:
        link.symlink_to(target, target_is_directory=True)
    except PermissionError:
        raise UsageError(f"no permission to create {link}; choose another --root "
                         "or run with the needed rights") from None


@dataclass(frozen=True)
class DarknetBinary:
    path: Path
    gpu: Optional[bool]  # None when it could not be told (no ldd)
    detail: str


def prepare_darknet(path: PathLike) -> DarknetBinary:
    """Check the darknet binary exists, make it executable, and tell if it has CUDA.

    A bare name (``darknet``) is the file in the working directory when there is
    one, else the command on PATH; the path returned is absolute, which is what
    the trainer is started with. Binaries copied from Drive lose their executable
    bit; a build without
    ``GPU=1`` runs on the CPU ~100x slower, which users notice only hours later.
    """
    p = Path(path).expanduser()
    if not p.exists() and os.sep not in str(path):
        found = shutil.which(str(path))  # a bare name not in the working directory: PATH
        if found:
            p = Path(found)
    # absolute: subprocess looks a bare name ("darknet") up on PATH, never in the cwd
    p = p.absolute()
    if not p.exists():
        raise ConfigError(
            f"darknet binary {p} not found; build it (git clone AlexeyAB/darknet, set GPU=1 "
            "CUDNN=1 in the Makefile, make) or pass --darknet PATH")
    if p.is_dir():
        raise ConfigError(f"darknet binary {p} is a folder; pass the executable file")
    mode = p.stat().st_mode
    want = mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    if want != mode:
        try:
            p.chmod(want)
            log.info("made %s executable", p)
        except PermissionError:
            raise ConfigError(f"{p} is not executable and chmod +x was refused") from None
    gpu, detail = _cuda_linked(p)
    return DarknetBinary(p, gpu, detail)


def _cuda_linked(p: Path) -> tuple[Optional[bool], str]:
    ldd = shutil.which("ldd")
    if not ldd:
        return None, "ldd not available; GPU support not checked"
    try:
        out = subprocess.run([ldd, str(p)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"ldd failed: {exc}"
    text = out.stdout + out.stderr
    if out.returncode != 0 or "not a dynamic executable" in text:
        return None, "not a dynamic ELF executable; GPU support not checked"
    libs = [lib for lib in CUDA_LIBS if lib in text]
    if libs:
        return True, "linked with " + ", ".join(libs)
    return False, ("built without GPU support (ldd shows no libcuda/libcudart); rebuild with "
                   "GPU=1 CUDNN=1 in the Makefile, or training runs on the CPU")
