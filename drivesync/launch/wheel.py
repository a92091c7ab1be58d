"""A wheel of the installed drivesync, so a fresh Colab runtime installs it from Drive.

drivesync is not on PyPI; a new Colab VM has neither it nor network access to a
private repository. ``drivesync colab-cell --upload`` builds this wheel from the
package that is running (its ``.py`` files and package data) and puts it on
Drive; the notebook's first cell pip-installs it from the mount. Built here,
offline and deterministic: a wheel is a zip with the package, a ``METADATA``,
``WHEEL``, ``entry_points.txt`` and a ``RECORD`` of sha256 digests (PEP 427).
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
_FALLBACK_REQUIRES = ["google-api-python-client>=2.100", "google-auth>=2.20",
                      "google-auth-oauthlib>=1.0", "tqdm>=4.60", "requests>=2.28"]


def _requires() -> list[str]:
    try:
        from importlib.metadata import PackageNotFoundError, requires
    except ImportError:  # pragma: no cover - Python < 3.8
        return list(_FALLBACK_REQUIRES)
    try:
        found = requires("drivesync") or []
    except PackageNotFoundError:
        return list(_FALLBACK_REQUIRES)
    return [r for r in found if "extra ==" not in r] or list(_FALLBACK_REQUIRES)


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_name(version: str) -> str:
    return f"drivesync-{version}-py3-none-any.whl"


def build_wheel(dest_dir: Path) -> Path:
    """Write ``drivesync-<version>-py3-none-any.whl`` of the running package into dest_dir."""
    import drivesync

    pkg = Path(drivesync.__file__).resolve().parent
    version = drivesync.__version__
    files: list[tuple[str, bytes]] = []
    for p in sorted(pkg.rglob("*")):
        rel = p.relative_to(pkg.parent)
        if not p.is_file() or set(rel.parts) & _SKIP_DIRS or p.suffix in _SKIP_SUFFIXES:
            continue
        files.append((rel.as_posix(), p.read_bytes()))
    info = f"drivesync-{version}.dist-info"
    meta = "".join([
        "Metadata-Version: 2.1\n", "Name: drivesync\n", f"Version: {version}\n",
        "Summary: YOLO datasets and checkpoints between a desktop, Google Drive and Colab\n",
        "Requires-Python: >=3.9\n", *(f"Requires-Dist: {r}\n" for r in _requires())])
    files += [
        (f"{info}/METADATA", meta.encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: drivesync\n"
                          b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{info}/entry_points.txt", b"[console_scripts]\ndrivesync = drivesync.cli:main\n"),
    ]
    record = "".join(f"{name},{_digest(data)},{len(data)}\n" for name, data in files)
    record += f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / wheel_name(version)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            zi = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    tmp.replace(out)
    return out
