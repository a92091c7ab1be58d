"""What every handler gets: settings, output helpers and a progress subscriber."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, TextIO

from ..config import Settings, load_settings
from ..errors import PartialFailure
from ..outcome import Outcome, Problem
from ..progress import Progress, columns, make_progress

# C0 controls (ESC, BEL, CR, LF, TAB...), DEL, C1, the Unicode line/paragraph
# separators and bidi overrides, and lone surrogates (undecodable file names)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` safe for a terminal: every control character becomes ``\\xNN``.

    Names from Drive (and from the local disk) are untrusted: raw, an ESC
    sequence could drive the terminal and a newline could forge a line.
    """
    return _UNSAFE.sub(_escape, str(text))


def stdin_is_terminal() -> bool:
    """Whether someone can be asked (push --delete, dedupe, prune without --yes)."""
    stdin = sys.stdin
    return bool(stdin is not None and getattr(stdin, "isatty", lambda: False)())


class _Printable(logging.Formatter):
    """Log lines go through :func:`printable` too (a warning may quote a name)."""

    def __init__(self, fmt: str, *args: Any, lower_level: bool = False, **kw: Any) -> None:
        super().__init__(fmt, *args, **kw)
        self.lower_level = lower_level      # "drivesync: warning:" like Context.warn

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - stdlib name
        if self.lower_level:
            lower = record.levelname.lower()
            record = logging.makeLogRecord({**record.__dict__, "levelname": lower})
        return printable(super().formatMessage(record))


class _Redact(logging.Filter):
    """Belt and braces: never let a bearer token reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "Bearer " in msg or "access_token" in msg:
            record.msg, record.args = "[redacted log line that held a credential]", ()
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (tests swap it between CLI calls)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


@dataclass
class Context:
    settings: Settings
    json: bool = False
    quiet: bool = False
    verbose: int = 0
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    log_handler: Optional[logging.Handler] = None  # --log-file, closed by cli.main
    _warned: set = field(default_factory=set)       # each warning is printed once

    def progress(self, *, yes: bool = False, show: int = 20) -> Progress:
        """The one channel library code talks to: bars (on a terminal), events as
        chatter, warnings, trainer output and confirmation prompts (``yes``: answered)."""
        bars = make_progress(quiet=self.quiet or self.json, stream=self.err, label=printable)
        return CliChannel(self, bars, yes=yes, show=show)

    # ---- the one output channel: every line printed as text passes write() ----
    def write(self, line: object, *, err: bool = False) -> None:
        """Print one line, control characters escaped (see :func:`printable`)."""
        print(printable(line), file=self.err if err else self.out)

    def emit(self, doc: Any) -> None:
        """Print the one JSON document of a --json run (JSON escapes by itself)."""
        print(json.dumps(doc, indent=2, sort_keys=True, default=str), file=self.out)

    def say(self, *lines: object) -> None:
        """Chatter on stdout (plans, summaries); silent under --json and --quiet."""
        if self.json or self.quiet:
            return
        for line in lines:
            self.write(line)

    def result(self, *lines: object) -> None:
        """The answer a verb was asked for (ls names, quota, latest's path): printed
        under --quiet too (``-q`` drops the chatter, never the result)."""
        if self.json:
            return
        for line in lines:
            self.write(line)

    def note(self, line: object) -> None:
        """Chatter on stderr (e.g. which folder ``ls`` lists), so stdout stays the result."""
        if not (self.json or self.quiet):
            self.write(line, err=True)

    def warn(self, message: object) -> None:
        line = f"drivesync: warning: {message}"
        if not self.json and line not in self._warned:
            self._warned.add(line)
            self.write(line, err=True)

    def record(self, line: object) -> None:
        """A line for the --log-file only (e.g. a summary's counts), with a time."""
        if self.log_handler is not None:
            self.log_handler.handle(logging.LogRecord("drivesync", logging.INFO, __file__, 0,
                                                      str(line), None, None))

    def error(self, message: object) -> None:
        self.write(f"drivesync: error: {message}", err=True)

    def finish(self, outcome: Outcome, *, message: str, show: bool = True) -> int:
        """The end of every verb that changes something: 0 when ``outcome.ok``.

        Otherwise each problem is warned (unless ``show`` is False: the verb said
        them its own way) and the run ends with exit 4 (PartialFailure(message)).
        Under --json the document already says ``ok: false`` and stdout holds only
        that one document, so the error line goes to stderr and 4 is returned.
        """
        if outcome.ok:
            return 0
        if show:
            for p in outcome.problems:
                self.warn(Problem(*p).line())
        failure = PartialFailure(message)
        if self.json:
            self.error(failure)
            return failure.exit_code
        raise failure

    def table(self, rows: Iterable[Iterable[Any]], header: Optional[list[str]] = None, *,
              result: bool = False) -> None:
        lines = columns([[printable(c) for c in r] for r in rows], header)
        if lines:
            (self.result if result else self.say)(*lines)


class CliChannel:
    """A :class:`Progress` for the CLI: bars from ``bars``, the rest through the Context.

    Events are chatter (``say``), warnings are printed once even under -q,
    trainer output passes through untouched (it is the trainer's own terminal
    output) except under --json, and ``confirm`` asks on the terminal, showing
    at most ``show`` items (all with -v).
    """

    def __init__(self, ctx: Context, bars: Progress, *, yes: bool = False, show: int = 20):
        self.ctx, self.bars, self.yes, self.show = ctx, bars, yes, show

    def on_start(self, *, files: int, bytes: int, desc: str = "") -> None:
        self.bars.on_start(files=files, bytes=bytes, desc=desc)

    def on_progress(self, *, files: int = 0, bytes: int = 0) -> None:
        self.bars.on_progress(files=files, bytes=bytes)

    def on_done(self) -> None:
        self.bars.on_done()

    def on_status(self, text: str) -> None:
        self.bars.on_status(text)

    def on_event(self, text: str) -> None:
        self.ctx.say(text)

    def on_warning(self, text: str) -> None:
        self.ctx.warn(text)

    def on_output(self, text: str) -> None:
        if not self.ctx.json:
            self.ctx.out.write(text)
            self.ctx.out.flush()

    def confirm(self, question: str, items: Sequence[str] = ()) -> bool:
        if self.yes:
            return True
        shown = list(items) if self.ctx.verbose else list(items)[:self.show]
        self.ctx.say(*shown)
        if len(shown) < len(items):
            self.ctx.say(f"  ... and {len(items) - len(shown)} more (-v for all)")
        try:
            return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
        except EOFError:
            return False


class _Private(logging.FileHandler):
    """Appends to a log file created 0600: paths and names are the user's business."""

    def _open(self):  # type: ignore[override]
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8")


def open_log_file(path: str) -> logging.Handler:
    """Timestamped INFO lines (what was uploaded, deleted, refused; the exit code) for
    unattended runs: cron's own output has no timestamps and ``-q`` keeps it empty."""
    target = os.path.expanduser(path)
    parent = os.path.dirname(target)
    if parent:
        os.makedirs(parent, exist_ok=True)
    handler = _Private(target, encoding="utf-8", delay=False)
    handler.setLevel(logging.INFO)
    handler.setFormatter(_Printable("%(asctime)s %(process)d %(levelname)s %(message)s",
                                    "%Y-%m-%dT%H:%M:%S%z"))
    handler.addFilter(_Redact())
    logging.getLogger("drivesync").addHandler(handler)
    return handler


def close_log_file(handler: logging.Handler) -> None:
    logging.getLogger("drivesync").removeHandler(handler)
    handler.close()


#: Flags that are settings (argparse ``dest`` = Settings field): they join the one
#: resolution, so a verb's remote is built with them and nothing re-sets them later.
SETTING_FLAGS = ("api_endpoint", "log_file", "jobs", "write_rate")


def make_context(args: Any) -> Context:
    level = logging.WARNING     # -q too: it drops chatter, never a warning (README "-q rule")
    if getattr(args, "verbose", 0) >= 2:
        level = logging.DEBUG
    elif getattr(args, "verbose", 0) == 1:
        level = logging.INFO
    root = logging.getLogger("drivesync")
    stderr = next((h for h in root.handlers if getattr(h, "_drivesync", False)), None)
    if stderr is None:
        stderr = _StderrHandler()
        stderr.setFormatter(_Printable("drivesync: %(levelname)s: %(message)s", lower_level=True))
        stderr.addFilter(_Redact())
        stderr._drivesync = True  # type: ignore[attr-defined]
        root.addHandler(stderr)
    stderr.setLevel(level)
    flags = {k: getattr(args, k, None) for k in SETTING_FLAGS}
    config = getattr(args, "config", None)
    settings = load_settings(flags, config_file=Path(config) if config else None)
    file_handler = open_log_file(settings.log_file) if settings.log_file else None
    root.setLevel(min(level, logging.INFO) if file_handler else level)
    return Context(settings=settings, json=bool(getattr(args, "json", False)),
                   quiet=bool(getattr(args, "quiet", False)),
                   verbose=int(getattr(args, "verbose", 0) or 0), log_handler=file_handler)
