"""The trainer's output: kept whole in a log file, read for progress, shown condensed.

darknet prints five lines and a screen-clear code (``ESC[H ESC[J``) per
iteration; in a notebook that scrolls thousands of lines and hides what
matters. :class:`TrainerLog` writes every byte to a log file (mirrored to
Drive), parses what the user needs (iteration or epoch, loss, mAP, rate, ETA;
darknet's ``mean_average_precision (mAP@0.50) = X`` and ``New best mAP!`` lines,
see ``src/detector.c``), and returns a condensed line at most every
``every`` seconds plus the lines that must never be hidden (mAP, errors).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

# " 120: 1.523400, 1.610000 avg loss, 0.001000 rate, 0.8 seconds, 7680 images, 0.3 hours left"
_DARKNET_IT = re.compile(
    r"^\s*(\d+): ([-\w.]+), ([-\w.]+) avg loss, ([-\w.]+) rate, ([-\w.]+) seconds, (\d+) images"
    r"(?:, ([-\w.]+) hours left)?")
# "120/2000: loss=1.5 hours left=0.3" (printed after the screen clear)
_DARKNET_TOTAL = re.compile(r"(\d+)/(\d+): loss=")
# "\n mean_average_precision (mAP@0.50) = 0.005210 \n" (train loop) and
# " mean average precision (mAP@0.50) = 0.005210, or 0.52 % " (validate_detector_map)
_DARKNET_MAP = re.compile(r"mean[_ ]average[_ ]precision \(mAP@([\d.]+)\) = ([-\w.]+)")
_NEW_BEST = "New best mAP!"
# Ultralytics: "      3/100      2.1G      1.234 ..." (epoch/total, then losses)
_ULTRA_EPOCH = re.compile(r"^\s*(\d+)/(\d+)\s+\S+G?\s+([\d.]+)")
_ALWAYS = re.compile(r"cannot load image|error|not found|warning|resum|saving weights"
                     r"|new best|mean.average.precision|killed", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x07")


def _float(s: Optional[str]) -> Optional[float]:
    try:
        return float(s) if s is not None else None
    except ValueError:
        return None


@dataclass
class Progress:
    """What the output said so far (None: not seen yet)."""

    iteration: Optional[int] = None
    total: Optional[int] = None
    loss: Optional[float] = None
    avg_loss: Optional[float] = None
    rate: Optional[float] = None
    hours_left: Optional[float] = None
    map: Optional[float] = None          # the last mAP computed (0..1)
    best_map: Optional[float] = None     # the mAP of the newest "New best mAP!" (this process)
    map_iou: Optional[str] = None
    started: float = 0.0
    first_iteration: Optional[int] = None


class TrainerLog:
    """Feed it the trainer's output; it logs, parses and condenses.

    ``feed`` returns the text to show: everything when ``verbose``, else one
    condensed progress line at most every ``every`` seconds and the lines that
    match errors/mAP. ``on_best(map)`` is called when darknet says it beat its best.
    """

    def __init__(self, path: Optional[Path], *, kind: str = "darknet", verbose: bool = False,
                 every: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 on_best: Callable[[float], None] = lambda m: None):
        self.path = path
        self.kind = kind
        self.verbose = verbose
        self.every = every
        self.clock = clock
        self.on_best = on_best
        self.progress = Progress(started=clock())
        self._partial = ""
        self._nan_said = False
        self._notes: list[str] = []
        self._last_shown = float("-inf")
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def feed(self, text: str) -> str:
        if self._file is not None:
            self._file.write(text)
        if self.verbose:
            self._parse_all(text)
            return text
        shown = []
        for line in self._parse_all(text):
            clean = _ANSI.sub("", line).strip()
            if clean and _ALWAYS.search(clean) and not self._is_progress(clean):
                shown.append(clean)
        shown += self._notes
        self._notes = []
        now = self.clock()
        if self.progress.iteration is not None and now - self._last_shown >= self.every:
            self._last_shown = now
            shown.append(self.summary())
        return "".join(s + "\n" for s in shown)

    def final(self) -> str:
        """The last partial line and a closing summary (after the trainer stopped)."""
        out = self.feed("\n") if self._partial else ""
        if self.progress.iteration is not None and not self.verbose:
            out += self.summary() + "\n"
        self.flush()
        return out

    def _is_progress(self, clean: str) -> bool:
        return bool(_DARKNET_IT.match(clean) or _DARKNET_TOTAL.search(clean)
                    and "map=" not in clean)

    def _parse_all(self, text: str) -> list[str]:
        text = self._partial + text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._parse(_ANSI.sub("", line))
        return lines

    def _parse(self, line: str) -> None:
        p = self.progress
        m = _DARKNET_IT.match(line)
        if m:
            p.iteration = int(m.group(1))
            p.loss, p.avg_loss, p.rate = _float(m.group(2)), _float(m.group(3)), _float(m.group(4))
            p.hours_left = _float(m.group(7))
            if p.first_iteration is None:
                p.first_iteration, p.started = p.iteration, self.clock()
            if p.loss is not None and p.loss != p.loss and not self._nan_said:
                self._nan_said = True
                self._notes.append(f"warning: loss is nan at iteration {p.iteration}: the "
                                   "weights it saves now are useless (images it cannot load? "
                                   "see the log); drivesync will not mirror them")
            return
        m = _DARKNET_TOTAL.search(line)
        if m:
            p.total = int(m.group(2))
        m = _DARKNET_MAP.search(line)
        if m:
            value = _float(m.group(2))
            if value is not None:
                p.map, p.map_iou = value, m.group(1)
            return
        if _NEW_BEST in line and p.map is not None:
            p.best_map = p.map
            self.on_best(p.map)
            return
        if self.kind != "darknet":
            m = _ULTRA_EPOCH.match(line)
            if m:
                p.iteration, p.total, p.loss = int(m.group(1)), int(m.group(2)), _float(m.group(3))
                if p.first_iteration is None:
                    p.first_iteration, p.started = p.iteration, self.clock()

    def summary(self) -> str:
        p = self.progress
        what = "iteration" if self.kind == "darknet" else "epoch"
        parts = [f"{what} {p.iteration}" + (f"/{p.total}" if p.total else "")]
        if p.loss is not None:
            parts.append(f"loss {p.loss:.3f}" + (f" (avg {p.avg_loss:.3f})"
                                                 if p.avg_loss is not None else ""))
        if p.map is not None:
            parts.append(f"mAP@{p.map_iou} {100 * p.map:.2f}%"
                         + (f" (best {100 * p.best_map:.2f}%)" if p.best_map is not None else ""))
        if p.rate is not None:
            parts.append(f"lr {p.rate:g}")
        done = (p.iteration or 0) - (p.first_iteration or 0)
        elapsed = self.clock() - p.started
        if done > 0 and elapsed > 0:
            speed = done / elapsed
            parts.append(f"{speed:.2f} {what}s/s" if speed >= 1 else f"{1 / speed:.1f} s/{what}")
            if p.total and p.iteration is not None:
                parts.append(f"ETA {_hms((p.total - p.iteration) / speed)}")
        elif p.hours_left is not None:
            parts.append(f"ETA {_hms(p.hours_left * 3600)}")
        return "progress: " + ", ".join(parts)


def _hms(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"
