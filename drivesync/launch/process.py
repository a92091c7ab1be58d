"""The trainer's process: started, its output streamed, signals forwarded, its files found.

The runner starts the trainer here and polls the mirror while it runs;
SIGINT/SIGTERM are passed on to the trainer (:class:`SignalForwarder`), its
output goes to the one channel as it arrives (``on_output``), and its process
tree tells the mirror which files it still has open (Linux ``/proc``).
"""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from ..errors import ConfigError, DriveSyncError
from ..progress import NULL_PROGRESS, Progress
from .trainer_log import TrainerLog

if TYPE_CHECKING:
    from .mirror import Mirror


def _stream(proc: subprocess.Popen, progress: Progress,
            view: Optional[TrainerLog] = None) -> threading.Thread:
    """Pass the trainer's output on as it arrives: whole to the log, condensed to the
    channel (everything with ``view=None`` or a verbose view)."""

    def show(text: str) -> None:
        shown = view.feed(text) if view is not None else text
        if shown:
            progress.on_output(shown)

    def pump() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        while True:
            try:
                block = os.read(fd, 65536)
            except OSError:
                break
            if not block:
                break
            show(decoder.decode(block))
        tail = decoder.decode(b"", final=True)
        if tail:
            show(tail)

    t = threading.Thread(target=pump, name="trainer-output", daemon=True)
    t.start()
    return t


def _trainer_env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SignalForwarder:
    """SIGINT/SIGTERM handling for one launch, from the trainer's start to our exit.

    While the trainer runs, a signal is passed on to it (darknet dies, Ultralytics
    stops) and the launch goes on to mirror the newest checkpoint. Once the
    trainer is gone, a signal stops at once (KeyboardInterrupt, exit 130) unless
    an upload is in flight: then the first only warns that it is being finished
    and a second one stops: the checkpoints already on the remote are complete
    either way.
    """

    def __init__(self, *, progress: Progress = NULL_PROGRESS):
        self.progress = progress
        self.proc: Optional[subprocess.Popen] = None
        self.got: list[int] = []
        self.wake = threading.Event()
        self.finishing = False
        self.uploading: Callable[[], bool] = lambda: False  # the mirror's upload in flight
        self._late = 0
        self._previous: dict = {}

    def __call__(self, signum: int, _frame: object) -> None:
        self.got.append(signum)
        self.wake.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
            return
        if self.finishing:
            self._late += 1
            if self._late >= 2 or not self.uploading():
                raise KeyboardInterrupt
            self.progress.on_warning("finishing the upload of the newest checkpoint; "
                               "signal again to stop now (Drive keeps the complete ones)")

    def __enter__(self) -> SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def first(self) -> Optional[int]:
        return self.got[0] if self.got else None


def run_trainer(argv: list, *, mirror: Optional[Mirror], interval: float, progress: Progress,
                on_start: Callable[[int], None] = lambda pid: None,
                signals: Optional[SignalForwarder] = None,
                view: Optional[TrainerLog] = None) -> tuple[int, Optional[int]]:
    """Start the trainer, mirror while it runs, forward SIGINT/SIGTERM; (code, signal)."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=_trainer_env(), bufsize=0)
    except FileNotFoundError:
        raise ConfigError(f"trainer command not found: {argv[0]}") from None
    except PermissionError:
        raise ConfigError(f"trainer command not executable: {argv[0]}") from None
    on_start(proc.pid)
    pump = _stream(proc, progress, view)
    own = signals is None
    fwd = signals if signals is not None else SignalForwarder(progress=progress)
    fwd.proc = proc
    if own:
        fwd.__enter__()
    try:
        while proc.poll() is None:
            if mirror is not None:
                try:
                    mirror.poll()
                except DriveSyncError as exc:  # a network hiccup must not stop training
                    progress.on_warning(f"mirroring: {exc} (will retry)")
            # wake on a signal, or as soon as the trainer exits (it may die at once)
            until = time.monotonic() + interval
            while proc.poll() is None and not fwd.wake.is_set():
                left = until - time.monotonic()
                if left <= 0:
                    break
                fwd.wake.wait(min(left, 0.1))
            fwd.wake.clear()
        code = proc.wait()
    finally:
        if own:
            fwd.__exit__()
    pump.join(timeout=5)
    if view is not None:
        tail = view.final()
        if tail:
            progress.on_output(tail)
    if code < 0:
        code = 128 - code
    return code, fwd.first


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants (Linux /proc; just the root elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return [root_pid]
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, queue = [], [root_pid]
    while queue:
        pid = queue.pop()
        out.append(pid)
        queue.extend(children.get(pid, []))
    return out


def open_by(pids: Iterable[int], path: Path) -> bool:
    """True when one of ``pids`` has ``path`` open (best effort; False without /proc)."""
    target = os.path.realpath(path)
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    return True
            except OSError:
                continue
    return False
