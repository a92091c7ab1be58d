"""Where Drive credentials come from, and the cached user token.

Order (first that is configured wins): a raw access token (``settings.token``:
DRIVESYNC_TOKEN or ``token =``), a service-account key file, the user token cached by
``drivesync auth login``, Application Default Credentials (what Colab's
``auth.authenticate_user()`` sets up). Tokens are never printed or logged; the
cache file is written atomically with mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from .config import Settings
from .errors import AuthError, ConfigError, TransientError

log = logging.getLogger(__name__)

SCOPES = ["https://www.googleapis.com/auth/drive"]
NEXT_STEP = ("no Drive credentials found: run `drivesync auth login` (desktop), "
             "`from google.colab import auth; auth.authenticate_user()` (Colab), "
             "set DRIVESYNC_SERVICE_ACCOUNT to a service-account key file, "
             "or DRIVESYNC_TOKEN to an access token (see 'Credentials' in the README)")
# The console flow redirects the browser to this loopback address; nothing
# listens there, so the user copies the address bar (or the code) back to us.
CONSOLE_REDIRECT = "http://127.0.0.1:1/"


@dataclass(frozen=True)
class CredentialSource:
    """Credentials plus a human description of where they came from (no secrets)."""

    credentials: Any
    kind: str          # "token", "service_account", "user", "adc"
    description: str


def get_credentials(settings: Settings) -> Any:
    """The google.auth credentials DriveRemote builds its client with."""
    return resolve_credentials(settings).credentials


def resolve_credentials(settings: Settings) -> CredentialSource:
    """Try every source in order; AuthError naming the next step when none works.

    ``settings`` are resolved (:func:`drivesync.config.resolve_settings`): this
    module reads no environment variable itself.
    """
    token = settings.token
    if token:
        from google.oauth2.credentials import Credentials

        return CredentialSource(Credentials(token=token.strip()), "token",
                                "raw access token (DRIVESYNC_TOKEN / settings.token)")
    key = settings.service_account
    if key:
        return _service_account(Path(key).expanduser())
    cached = settings.resolved_token_file()
    if cached.exists() and not cached.is_file():
        raise AuthError(f"{cached}: the cached token is a folder, not a file; remove it and run "
                        "`drivesync auth login` (or set token_file)")
    if cached.is_file():
        return CredentialSource(load_user_token(cached), "user",
                                f"user token cached by `drivesync auth login` at {cached}")
    adc = _application_default()
    if adc is not None:
        return adc
    raise AuthError(NEXT_STEP)


def _service_account(path: Path) -> CredentialSource:
    from google.oauth2 import service_account

    if not path.is_file():
        raise AuthError(f"{path}: service-account key file not found")
    info = read_token_json(path)
    try:
        creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthError(f"{path}: not a service-account key file ({type(exc).__name__})"
                        ) from None
    return CredentialSource(creds, "service_account",
                            f"service account {creds.service_account_email} ({path})")


def _application_default() -> Optional[CredentialSource]:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        creds, project = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError:
        return None
    where = f" (project {project})" if project else ""
    return CredentialSource(creds, "adc", f"Application Default Credentials{where}")


@functools.cache
def _saving_credentials_class() -> Any:
    """google.oauth2 user Credentials that write themselves back after a refresh.

    google-auth refreshes an expired access token by itself in the middle of a
    run (every hour); without this the next run would refresh again, and a
    rotated refresh token would be lost.
    """
    from google.oauth2.credentials import Credentials

    class SavingCredentials(Credentials):
        token_file: Optional[Path] = None

        def refresh(self, request: Any) -> None:
            super().refresh(request)
            if self.token_file is not None:
                try:
                    save_user_token(self, self.token_file)
                except OSError as exc:  # the run goes on with the token in memory
                    log.warning("could not save the refreshed token to %s: %s",
                                self.token_file, exc.strerror or exc)

    return SavingCredentials


def load_user_token(path: Path) -> Any:
    """The cached user credentials, refreshed (and rewritten) when expired, and
    rewritten again whenever they are refreshed later in the run."""
    from google.auth.exceptions import RefreshError, TransportError

    info = read_token_json(Path(path))
    try:
        creds = _saving_credentials_class().from_authorized_user_info(info, SCOPES)
        creds.token_file = Path(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthError(f"{path}: the cached token is unreadable ({type(exc).__name__}); "
                        "run `drivesync auth login` again") from None
    if creds.expired and creds.refresh_token:
        from google.auth.transport.requests import Request

        try:
            creds.refresh(Request())
        except RefreshError:
            raise AuthError(f"the token cached at {path} was revoked or expired; "
                            "run `drivesync auth login` again") from None
        except TransportError as exc:
            raise TransientError(f"cannot reach the Google token server to refresh "
                                 f"the cached token: {type(exc).__name__}") from None
    return creds


def read_token_json(path: Path) -> dict:
    """The JSON object in a token file, after making sure only its owner can read it.

    A token readable by others (0644: copied around, or written by another tool)
    gets a warning and is tightened to 0600. A folder, binary bytes, or JSON that
    is not an object is an AuthError naming the file (exit 5).
    """
    again = "; run `drivesync auth login` again"
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("%s: the token file was readable by others (mode %04o); tightened to "
                        "0600", path, mode & 0o777)
        raw = Path(path).read_bytes()
    except IsADirectoryError:
        raise AuthError(f"{path}: the token file is a folder, not a file{again}") from None
    except OSError as exc:
        raise AuthError(f"{path}: cannot read the token file: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise AuthError(f"{path}: the token file is not JSON (binary or damaged){again}"
                        ) from None
    if not isinstance(doc, dict):
        raise AuthError(f"{path}: the token file holds a JSON {type(doc).__name__}, not the "
                        f"object `drivesync auth login` writes{again}")
    return doc


def save_user_token(creds: Any, path: Path) -> Path:
    """Write ``creds`` as authorized-user JSON: atomically, 0600, directory 0700."""
    path = Path(path)
    parent = path.parent
    if not parent.exists():
        parent.mkdir(parents=True, mode=0o700)
    tmp = parent / f".drivesync-token-{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(creds.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # umask could only have narrowed it; be explicit anyway
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("saved the user token to %s", path)
    return path


def delete_user_token(path: Path) -> bool:
    """Remove the cached token; False when there was none."""
    try:
        Path(path).unlink()
    except FileNotFoundError:
        return False
    return True


# ---- auth login -----------------------------------------------------------

def client_secrets_file(explicit: Optional[str], settings: Settings) -> Path:
    """The OAuth desktop-client JSON to log in with; AuthError saying how to get one."""
    raw = explicit or settings.credentials
    if not raw:
        raise AuthError("no OAuth client file: pass --client-secrets FILE (a Desktop-app "
                        "client JSON from Google Cloud console; see 'Credentials' in the README)")
    path = Path(raw).expanduser()
    if not path.is_file():
        raise AuthError(f"{path}: OAuth client file not found (see 'Credentials' in the README)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not ({"installed", "web"} & set(doc)):
        raise ConfigError(f"{path}: expected a client secret JSON with an \"installed\" "
                          "section (create an OAuth client of type Desktop app)")
    return path


def code_from_pasted(pasted: str, *, state: Optional[str]) -> str:
    """The authorization code from what the user pasted: the redirect URL or the code."""
    text = pasted.strip()
    if not text:
        raise AuthError("nothing was pasted; run `drivesync auth login --console` again")
    if "://" not in text and "code=" not in text:
        return text
    query = urllib.parse.urlsplit(text).query if "://" in text else text.lstrip("?")
    params = urllib.parse.parse_qs(query)
    if "error" in params:
        raise AuthError(f"Google refused the login: {params['error'][0]}")
    if "code" not in params:
        raise AuthError("the pasted address has no code= parameter; paste the whole "
                        "address from the browser's address bar")
    if state is not None and params.get("state", [state])[0] != state:
        raise AuthError("the pasted address belongs to another login attempt (state differs)")
    return params["code"][0]


@contextlib.contextmanager
def _quiet_oauth_logs() -> Iterator[None]:
    """requests-oauthlib logs the token response at DEBUG; keep it out of any log."""
    loggers = [logging.getLogger(n) for n in ("requests_oauthlib", "oauthlib", "urllib3")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def login(secrets_file: Path, *, console: bool, token_file: Path,
          ask: Callable[[str], str], tell: Callable[[str], None]) -> Path:
    """Run the installed-app flow and cache the resulting user token.

    ``console`` uses the copy-paste flow (headless machines): ``tell`` shows the
    URL, ``ask`` reads back the redirect address. Otherwise a loopback server on
    a free port catches the redirect and a browser is opened if there is one.
    """
    if not console and not _has_browser():
        tell("no web browser found here; using the copy-paste flow (--console)")
        console = True
    with _quiet_oauth_logs():
        creds = _run_flow(secrets_file, console=console, ask=ask, tell=tell)
    return save_user_token(creds, token_file)


def _has_browser() -> bool:
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def _run_flow(secrets_file: Path, *, console: bool, ask: Callable[[str], str],
              tell: Callable[[str], None]) -> Any:
    from google_auth_oauthlib.flow import InstalledAppFlow

    flow = InstalledAppFlow.from_client_secrets_file(str(secrets_file), scopes=SCOPES)
    if console:
        flow.redirect_uri = CONSOLE_REDIRECT
        url, state = flow.authorization_url(access_type="offline", prompt="consent")
        tell("Open this address in a browser, allow access, then copy the address the "
             "browser ends on (it will fail to load; that is expected) and paste it here:")
        tell(url)
        code = code_from_pasted(ask("address or code: "), state=state)
        try:
            flow.fetch_token(code=code)
        except Exception as exc:  # noqa: BLE001 - oauthlib raises many types
            raise AuthError(f"the code was not accepted ({type(exc).__name__}); "
                            "run `drivesync auth login --console` again") from None
        creds = flow.credentials
    else:
        creds = flow.run_local_server(
            host="localhost", port=0, open_browser=True,
            authorization_prompt_message="Open this address to allow drivesync: {url}",
            success_message="drivesync is authorised; you can close this window.")
    return creds
