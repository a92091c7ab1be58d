"""`drivesync auth login|status|logout`: get, check and forget Drive credentials.

Tokens are never printed: status names the credential source and the account.
"""

from __future__ import annotations

import sys

from .. import auth
from ..errors import AuthError
from . import add_verb


def register(sub, common) -> None:
    group = add_verb(
        sub, common, "auth", help="log in to Google Drive, check or forget credentials",
        example="drivesync auth login --client-secrets client_secret.json\n"
                "drivesync auth status\ndrivesync auth logout")
    group.set_defaults(func=lambda args, ctx: _usage(group))
    verbs = group.add_subparsers(dest="auth_verb", metavar="ACTION")

    p = add_verb(
        verbs, common, "login", help="authorise drivesync with your Google account (OAuth)",
        description="Run Google's installed-app OAuth flow and cache the token (mode 0600). "
                    "A browser opens when there is one; --console prints an address to open "
                    "elsewhere and reads back the address the browser ends on.",
        example="drivesync auth login --client-secrets ~/client_secret.json\n"
                "drivesync auth login --client-secrets ~/client_secret.json --console")
    p.add_argument("--client-secrets", metavar="FILE",
                   help="OAuth Desktop-app client JSON (env DRIVESYNC_CREDENTIALS)")
    p.add_argument("--console", action="store_true",
                   help="copy-paste flow for machines without a browser")
    p.set_defaults(func=run_login)

    p = add_verb(
        verbs, common, "status", help="which credentials are in use and whether Drive accepts them",
        example="drivesync auth status\ndrivesync auth status --json")
    p.set_defaults(func=run_status)

    p = add_verb(verbs, common, "logout", help="delete the token cached by `auth login`",
                 example="drivesync auth logout")
    p.set_defaults(func=run_logout)


def _usage(parser) -> int:
    parser.print_usage(sys.stderr)
    return 2


def run_login(args, ctx) -> int:
    secrets = auth.client_secrets_file(args.client_secrets, ctx.settings)
    path = auth.login(secrets, console=args.console,
                      token_file=ctx.settings.resolved_token_file(),
                      ask=_ask,
                      tell=lambda line: ctx.write(line, err=True))
    if ctx.json:
        ctx.emit({"ok": True, "token_file": str(path)})
    else:
        ctx.say(f"logged in; token cached at {path} (mode 0600)")
    return 0


def _ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:  # stdin closed: nothing pasted
        return ""


def run_status(args, ctx) -> int:
    from ..remotes.drive import DriveRemote

    source = auth.resolve_credentials(ctx.settings)
    doc = {"source": source.kind, "description": source.description,
           "endpoint": ctx.settings.api_endpoint or "https://www.googleapis.com/"}
    remote = DriveRemote(ctx.settings.folder, settings=ctx.settings,
                         credentials=source.credentials)
    try:
        user = remote.account()
    except AuthError as exc:
        if ctx.json:  # one JSON document: ours, with the error in it
            ctx.emit(dict(doc, ok=False, accepted=False, error=str(exc),
                          exit_code=exc.exit_code))
            ctx.error(exc)
            return exc.exit_code
        ctx.say(f"credentials: {source.description}")
        raise
    finally:
        remote.close()
    if ctx.json:
        ctx.emit(dict(doc, ok=True, accepted=True, account=user))
    else:
        ctx.say(f"credentials: {source.description}",
                f"Drive accepts them: {user.get('email') or 'unknown account'}"
                + (f" ({user['name']})" if user.get("name") else ""))
    return 0


def run_logout(args, ctx) -> int:
    path = ctx.settings.resolved_token_file()
    removed = auth.delete_user_token(path)
    if ctx.json:
        ctx.emit({"ok": True, "removed": removed, "token_file": str(path)})
    else:
        ctx.say(f"removed the cached token {path}" if removed else f"no cached token at {path}")
    return 0
