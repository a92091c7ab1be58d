"""``drivesync emulator``: run the Drive v3 emulator in the foreground.

For trying drivesync without a Google account, and for benchmarks that drive
the emulator in a subprocess through its ``/_emulator/`` control plane.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from ..errors import UsageError
from . import add_verb
from .context import Context


def register(sub: Any, common: Any) -> None:
    p = add_verb(
        sub, common, "emulator", drive=False,
        help="run a local Drive v3 emulator (no Google account needed)",
        example=("drivesync emulator --port 8765 --write-rate 3 --quota 1000000000\n"
                 "DRIVESYNC_API_ENDPOINT=http://127.0.0.1:8765/ DRIVESYNC_TOKEN=demo "
                 "drivesync ls drive:"),
    )
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0 = any free one)")
    p.add_argument("--token", default=None,
                   help='bearer token clients must send (default: the token setting, '
                        'env DRIVESYNC_TOKEN, or "demo")')
    p.add_argument("--data-dir", default=None,
                   help="keep files here across restarts (default: a temp dir removed on exit)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")
    p.add_argument("--bandwidth", type=float, default=None, metavar="BYTES_PER_S",
                   help="per-connection cap on uploads and downloads")
    p.add_argument("--write-rate", dest="limit_write_rate", type=float, default=None,
                   metavar="N",
                   help="creates per second before 403 userRateLimitExceeded (Drive: ~3)")
    p.add_argument("--quota", type=int, default=None, metavar="BYTES",
                   help="storage quota; uploads beyond it get 403 storageQuotaExceeded")
    p.add_argument("--fail-rate", type=float, default=0.0, metavar="F",
                   help="probability (0..1) of a random 5xx/429/403/dropped connection")
    p.set_defaults(func=run)


def run(args: Any, ctx: Context) -> int:
    from ..emulator import Emulator

    configured = ctx.settings.token     # DRIVESYNC_TOKEN, or token = in the config file
    token_from_env = args.token is None and bool(configured)
    token = args.token or configured or "demo"
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be within 0..65535, got {args.port}")
    emu = Emulator(token=token, data_dir=args.data_dir, port=args.port)
    try:
        emu.configure(latency=args.latency, bandwidth=args.bandwidth,
                      write_rate=args.limit_write_rate, quota_limit=args.quota,
                      fail_rate=args.fail_rate)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        url = emu.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}"
                         ) from None
    # Never echo a real token that came from the settings (environment or config file);
    # DRIVESYNC_TOKEN="" in the hint falls back to the config file's, as this one did.
    shown = '"$DRIVESYNC_TOKEN"' if token_from_env else token
    if ctx.json:
        ctx.emit({"url": url, "data_dir": str(emu.data_dir) if args.data_dir else None})
    ctx.say(f"Drive v3 emulator listening on {url}",
            "try, in another shell:",
            f"  DRIVESYNC_API_ENDPOINT={url} DRIVESYNC_TOKEN={shown} drivesync ls drive:",
            "Ctrl-C stops it.")
    ctx.out.flush()
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        emu.stop()
    ctx.say("emulator stopped")
    return 0
