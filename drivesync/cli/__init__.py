"""The command line: a thin argparse shell over the library.

Each verb group lives in its own module with a ``register(sub, common)``
function that adds subparsers and sets ``func`` to a handler
``handler(args, ctx) -> int``. Only this package prints or exits.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Optional, Sequence

from .. import __version__
from ..config import default_config_file
from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, DriveSyncError
from .context import Context, close_log_file, make_context, printable

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `cat big | head`

log = logging.getLogger("drivesync")

VERB_MODULES = ["demo", "prepare", "sync", "remote", "checkpoints", "launch", "auth", "emulator"]

EPILOG = """\
exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 partial failure,
5 auth failure, 6 quota / daily limit, 7 network (unreachable or retries exhausted),
8 locked by another run, 130 interrupted, 141 output pipe closed (| head).
options -v/-q/--json/--log-file/--endpoint/--config may also come before the verb.

example:
  drivesync demo                       # no Google account needed
  drivesync prepare VOC/ out/ --format voc
  drivesync push out/ drive:space_Colab/data
"""


def common_parser() -> argparse.ArgumentParser:
    """Flags every verb accepts (after the verb, or before it: ``drivesync -q ls``)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log output (-vv for each request)")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars or chatter: errors, warnings and the result "
                        "(ls names, quota, latest's path) only (for cron)")
    g.add_argument("--json", action="store_true", help="print one machine-readable JSON document")
    g.add_argument("--log-file", metavar="FILE",
                   help="append timestamped lines of what was done (and the exit code) to "
                        "FILE, whatever -q says; for cron (env DRIVESYNC_LOG_FILE)")
    return p


def add_drive_options(p: argparse.ArgumentParser) -> None:
    """--endpoint and --config, only on verbs that talk to Drive."""
    g = p.add_argument_group("Drive options")
    g.add_argument("--endpoint", dest="api_endpoint", metavar="URL",
                   help="a Drive-v3-compatible server, e.g. the emulator "
                        "(env DRIVESYNC_API_ENDPOINT)")
    g.add_argument("--config", metavar="FILE",
                   help=f"config file (default {default_config_file()}; env DRIVESYNC_CONFIG)")


# options that may come before the verb: name -> takes a value
_GLOBAL = {"-v": False, "--verbose": False, "-q": False, "--quiet": False, "--json": False,
           "--log-file": True, "--endpoint": True, "--config": True}


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """``drivesync -q ls X`` -> ``drivesync ls X -q``: options given before the verb
    move to the end of the verb's own arguments (before a ``--``)."""
    words, front = list(argv), []
    while words and words[0].startswith("-") and words[0] != "--":
        word = words[0]
        name = word.split("=", 1)[0]
        if name in _GLOBAL:
            front.append(words.pop(0))
            if _GLOBAL[name] and "=" not in word and words:
                front.append(words.pop(0))
        elif len(word) > 2 and word[1] != "-" and all("-" + c in _GLOBAL for c in word[1:]):
            front.append(words.pop(0))  # -qv, -vv
        else:
            break
    if not front or not words:
        return list(front) + words
    cut = words.index("--") if "--" in words else len(words)
    return words[:cut] + front + words[cut:]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drivesync",
        description="YOLO datasets and checkpoints between a desktop, Google Drive and Colab.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"drivesync {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    common = common_parser()
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:  # a verb group not built yet
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub, common)
    return parser


def add_verb(sub, common, name: str, *, help: str, example: str, description: str = "",
             drive: bool = True):
    """Add one verb with the shared options and an example in its --help;
    ``drive=False`` for verbs that never touch Drive (no --endpoint/--config)."""
    p = sub.add_parser(
        name, parents=[common], help=help, description=description or help,
        epilog="example:\n" + "\n".join("  " + line for line in example.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if drive:
        add_drive_options(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    """The reader went away (``drivesync ls --json | head``): stop quietly, as
    ``cat`` does, with the shell's code for SIGPIPE."""
    try:  # later writes (and the interpreter's final flush) go nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests)
        pass
    return EXIT_BROKEN_PIPE


def _main(argv: Optional[Sequence[str]]) -> int:
    parser = build_parser()
    words = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parser.parse_args(hoist_global_options(words))
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.verb is None else 2
    ctx: Optional[Context] = None
    code = EXIT_ERROR
    try:
        ctx = make_context(args)
        if ctx.log_handler is not None:
            log.info("start: drivesync %s", " ".join(_shown_argv(argv)))
        code = int(args.func(args, ctx) or 0)
    except DriveSyncError as exc:
        code = _report(ctx, exc, exc.exit_code)
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        code = _report(ctx, "interrupted; re-run the same command to finish the job",
                       EXIT_INTERRUPTED)
    except OSError as exc:
        code = _report(ctx, f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "),
                       EXIT_ERROR)
    except Exception as exc:  # noqa: BLE001 - a bug must still end in one line
        if getattr(args, "verbose", 0) >= 2:
            log.exception("internal error")
        code = _report(ctx, f"internal error: {type(exc).__name__}: {exc} (run with -vv for "
                            "the traceback, and please report it)", EXIT_ERROR)
    finally:
        if ctx is not None and ctx.log_handler is not None:
            log.info("end: exit code %d", code)
            close_log_file(ctx.log_handler)
    return code


def _shown_argv(argv: Optional[Sequence[str]]) -> list[str]:
    """The command line for the log, with the value of any --token hidden."""
    words = list(sys.argv[1:] if argv is None else argv)
    return ["***" if i and words[i - 1] == "--token" else
            "--token=***" if w.startswith("--token=") else w for i, w in enumerate(words)]


def _report(ctx: Optional[Context], exc: object, code: int) -> int:
    message = str(exc) or type(exc).__name__
    if ctx is not None and ctx.json:
        ctx.emit({"ok": False, "error": message, "exit_code": code})
    if ctx is not None and ctx.log_handler is not None:  # the log file gets it with a time
        ctx.log_handler.handle(logging.LogRecord("drivesync", logging.ERROR, __file__, 0,
                                                 message, None, None))
    if ctx is not None:
        ctx.error(message)
    else:
        print(f"drivesync: error: {printable(message)}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
