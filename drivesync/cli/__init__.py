"""The command line: a thin argparse shell over the library.

Each verb group lives in its own module with a ``register(sub, common)``
function that adds subparsers and sets ``func`` to a handler
``handler(args, ctx) -> int``. Only this package prints or exits.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from .. import __version__
from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, DriveSyncError
from .context import Context, make_context

log = logging.getLogger("drivesync")

VERB_MODULES = ["demo", "prepare", "sync", "remote", "checkpoints", "launch", "auth", "emulator"]

EPILOG = """\
exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 partial failure,
5 auth failure, 6 quota / daily limit, 7 network (unreachable or retries exhausted),
8 locked by another run, 130 interrupted.

example:
  drivesync demo                       # no Google account needed
  drivesync prepare VOC/ out/ --format voc
  drivesync push out/ drive:space_Colab/data
"""


def common_parser() -> argparse.ArgumentParser:
    """Flags every verb accepts (placed after the verb)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log output (-vv for each request)")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars, errors only (for cron)")
    g.add_argument("--json", action="store_true", help="print one machine-readable JSON document")
    g.add_argument("--endpoint", dest="api_endpoint", metavar="URL",
                   help="a Drive-v3-compatible server, e.g. the emulator "
                        "(env DRIVESYNC_API_ENDPOINT)")
    g.add_argument("--config", metavar="FILE",
                   help="config file (default ~/.config/drivesync/config.ini)")
    return p


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


def add_verb(sub, common, name: str, *, help: str, example: str, description: str = ""):
    """Add one verb with the shared options and an example in its --help."""
    return sub.add_parser(
        name, parents=[common], help=help, description=description or help,
        epilog="example:\n" + "\n".join("  " + line for line in example.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.verb is None else 2
    ctx: Optional[Context] = None
    try:
        ctx = make_context(args)
        return int(args.func(args, ctx) or 0)
    except DriveSyncError as exc:
        _report(ctx, exc, exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        _report(ctx, "interrupted; re-run the same command to finish the job", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except OSError as exc:
        _report(ctx, f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), EXIT_ERROR)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a bug must still end in one line
        if getattr(args, "verbose", 0) >= 2:
            log.exception("internal error")
        _report(ctx, f"internal error: {type(exc).__name__}: {exc} (run with -vv for the "
                     "traceback, and please report it)", EXIT_ERROR)
        return EXIT_ERROR


def _report(ctx: Optional[Context], exc: object, code: int) -> None:
    message = str(exc) or type(exc).__name__
    if ctx is not None and ctx.json:
        ctx.emit({"ok": False, "error": message, "exit_code": code})
    print(f"drivesync: error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
