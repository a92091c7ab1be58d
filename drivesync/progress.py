"""The one channel from library code to the user: progress, status, events, warnings, questions.

Library code never prints; it calls a :class:`Progress` subscriber. The default
is a no-op object (no ``if progress:`` branches anywhere): events are dropped,
warnings go to the ``drivesync`` logger, questions are answered yes (a library
call does what it was asked). The CLI passes one that draws tqdm bars on a
terminal or notebook, prints events and warnings where its flags say, and asks
on a terminal.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Callable, Optional, Protocol, Sequence

log = logging.getLogger("drivesync")


class Progress(Protocol):
    def on_start(self, *, files: int, bytes: int, desc: str = "") -> None: ...

    def on_progress(self, *, files: int = 0, bytes: int = 0) -> None: ...

    def on_done(self) -> None: ...

    def on_status(self, text: str) -> None:
        """What is going wrong right now ("retrying: ...; next try in 4s"); "" clears it."""

    def on_event(self, text: str) -> None:
        """A line of news ("resumed from yolov4_last.weights"); dropped under --quiet."""

    def on_warning(self, text: str) -> None:
        """Something the user must see even under --quiet ("not mirroring ...: NaN")."""

    def on_output(self, text: str) -> None:
        """A chunk of a child process's output (the trainer's log), passed through."""

    def confirm(self, question: str, items: Sequence[str] = ()) -> bool:
        """Ask before a destructive step; ``items`` are what it will do, one per line."""


class NullProgress:
    """Accepts every call: drops progress and events, logs warnings, answers yes."""

    def on_start(self, *, files: int, bytes: int, desc: str = "") -> None:
        pass

    def on_progress(self, *, files: int = 0, bytes: int = 0) -> None:
        pass

    def on_done(self) -> None:
        pass

    def on_status(self, text: str) -> None:
        pass

    def on_event(self, text: str) -> None:
        pass

    def on_warning(self, text: str) -> None:
        log.warning("%s", text)

    def on_output(self, text: str) -> None:
        pass

    def confirm(self, question: str, items: Sequence[str] = ()) -> bool:
        return True


NULL_PROGRESS = NullProgress()


class TqdmProgress(NullProgress):
    """Two tqdm bars (files, bytes) with rate and ETA; thread-safe.

    Events and warnings are left to the subscriber that owns the output (the
    CLI subclasses this); alone it inherits NullProgress's behaviour for them.
    """

    def __init__(self, *, file=None, leave: bool = True,
                 label: Callable[[str], str] = str):
        self._label = label  # makes a description (often a file name) safe to show
        self._file = file or sys.stderr
        self._leave = leave
        self._lock = threading.Lock()
        self._files = None
        self._bytes = None

    def on_start(self, *, files: int, bytes: int, desc: str = "") -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return
        with self._lock:
            self.on_done()
            self._files = tqdm(total=files or None, desc=self._label(desc or "files"),
                               unit="file", file=self._file, leave=self._leave, position=0)
            # a step that moves no bytes (convert, shard, check) gets no empty 0 B bar
            self._bytes = tqdm(total=bytes, desc="bytes", unit="B", unit_scale=True,
                               unit_divisor=1024, file=self._file, leave=self._leave,
                               position=1) if bytes > 0 else None

    def on_progress(self, *, files: int = 0, bytes: int = 0) -> None:
        with self._lock:
            if self._files is not None and files:
                self._files.update(files)
            if self._bytes is not None and bytes:
                self._bytes.update(bytes)

    def on_status(self, text: str) -> None:
        """On the files bar while one is shown; else a line of its own."""
        with self._lock:
            if self._files is not None:
                self._files.set_postfix_str(text, refresh=True)
            elif text:
                print(f"drivesync: {text}", file=self._file, flush=True)

    def on_done(self) -> None:
        for bar in (self._files, self._bytes):
            if bar is not None:
                bar.close()
        self._files = self._bytes = None


def status_listener(progress: Progress):
    """``progress.on_status``, or None for a subscriber written before it existed."""
    return getattr(progress, "on_status", None)


def make_progress(*, quiet: bool, stream=None, label: Callable[[str], str] = str) -> Progress:
    """tqdm when someone is watching (a TTY or a notebook), else the no-op.

    ``label`` cleans each description (the CLI escapes control characters).
    """
    stream = stream or sys.stderr
    if quiet:
        return NULL_PROGRESS
    interactive = getattr(stream, "isatty", lambda: False)() or _in_notebook()
    return TqdmProgress(file=stream, label=label) if interactive else NULL_PROGRESS


def _in_notebook() -> bool:
    return "ipykernel" in sys.modules or "google.colab" in sys.modules


def human_bytes(n: Optional[float]) -> str:
    if n is None:
        return "unlimited"
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    v = float(n)
    for u in units:
        if abs(v) < 1024 or u == units[-1]:
            return f"{v:.0f} {u}" if u == "B" else f"{v:.1f} {u}"
        v /= 1024
    return f"{n} B"  # pragma: no cover


def columns(rows: Sequence[Sequence[object]], header: Optional[Sequence[str]] = None
            ) -> list[str]:
    """Rows as lines of left-aligned columns (two spaces apart), the header first."""
    cells = [[str(c) for c in r] for r in rows]
    if header:
        cells.insert(0, list(header))
    if not cells:
        return []
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(cells[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
