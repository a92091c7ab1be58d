"""Settings: command-line flags, then DRIVESYNC_* environment, then a config file.

The config file is INI (stdlib on every Python we support) at
``$XDG_CONFIG_HOME/drivesync/config.ini`` (or ``DRIVESYNC_CONFIG``), section
``[drivesync]``, keys named like the fields below.
"""

from __future__ import annotations

import ast
import configparser
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, Optional

from .errors import ConfigError

DEFAULT_FOLDER = "space_Colab"
#: Files per folder, images plus labels: Colab's Drive mount times out above a few thousand.
#: Written only here; every other default (prepare, shard, check, push) reads it.
DEFAULT_MAX_FILES = 2000


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "drivesync"


def default_config_file() -> Path:
    """The config file read when neither --config nor DRIVESYNC_CONFIG names one."""
    return config_dir() / "config.ini"


@dataclass(frozen=True)
class Settings:
    """Every tuning knob in one place (documented in README "Configuration")."""

    api_endpoint: Optional[str] = None      # a Drive-v3-compatible server, e.g. the emulator
    token: Optional[str] = None             # a raw OAuth access token (never logged)
    credentials: Optional[str] = None       # OAuth client secret JSON (installed app)
    service_account: Optional[str] = None   # service-account key JSON
    token_file: Optional[str] = None        # where `auth login` caches the user token (0600)
    folder: str = DEFAULT_FOLDER            # top Drive folder launch links by default
    jobs: int = 4                           # parallel transfers
    write_rate: float = 2.8                 # new Drive files per second (Drive allows ~3)
    chunk_size: int = 8 * 1024 * 1024       # resumable chunk, a multiple of 256 KiB
    resumable_threshold: int = 5 * 1024 * 1024
    max_tries: int = 8                      # attempts per request before giving up
    outage_window: float = 60.0             # seconds with no success and failing connections
                                            # before a command stops (exit 7); 0: never
    backoff_base: float = 1.0
    backoff_cap: float = 32.0
    max_files_per_folder: int = DEFAULT_MAX_FILES
    state_dir: Optional[str] = None         # md5 cache and sync state
    log_file: Optional[str] = None          # --log-file: timestamped record of each run (0600)

    def resolved_token_file(self) -> Path:
        return Path(self.token_file) if self.token_file else config_dir() / "token.json"

    def resolved_state_dir(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir)
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        return Path(base) / "drivesync"


_TYPES = {f.name: f.type for f in fields(Settings)}


_KIND_WORDS = {int: "a whole number", float: "a number"}
# Lower bounds; a value below one was silently clamped or ignored (jobs=-3, write_rate=-1).
# 0 is allowed where it means "no limit" (write_rate) or "none" (thresholds, backoff).
_MINIMUM: dict[str, float] = {
    "jobs": 1, "max_tries": 1, "max_files_per_folder": 1, "chunk_size": 1,
    "write_rate": 0, "resumable_threshold": 0, "backoff_base": 0, "backoff_cap": 0,
    "outage_window": 0,
}


def _coerce(name: str, value: Any, source: str = "") -> Any:
    """Convert ``value`` to the setting's type; ``source`` (file or variable) names it in errors."""
    default = getattr(Settings(), name)
    kind = type(default) if default is not None else str
    if value is None:
        return value
    where = f"{source}: " if source else ""
    least = _MINIMUM.get(name)
    expected = _KIND_WORDS.get(kind, kind.__name__) + (f" >= {least}" if least is not None else "")
    try:
        result = value if isinstance(value, kind) else kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}setting {name}: expected {expected}, got {value!r}") from exc
    if least is not None and not result >= least:      # NaN fails too
        raise ConfigError(f"{where}setting {name}: expected {expected}, got {value!r}")
    return result


def _ini_error(path: Path, exc: configparser.Error) -> str:
    """One line naming the file and line, not configparser's multi-line repr."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return (f"{path}, line {exc.lineno}: expected a section header such as [drivesync], "
                f"got {exc.line.strip()!r}")
    if isinstance(exc, configparser.ParsingError):
        lineno, line = exc.errors[0] if exc.errors else (0, "")
        if isinstance(line, str) and line[:1] in "'\"":     # configparser stores repr(line)
            try:
                line = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                pass
        return f"{path}, line {lineno}: expected 'key = value', got {str(line).strip()!r}"
    if isinstance(exc, (configparser.DuplicateOptionError, configparser.DuplicateSectionError)):
        if isinstance(exc, configparser.DuplicateOptionError):
            what = f"setting {exc.option!r} in [{exc.section}]"
        else:
            what = f"section [{exc.section}]"
        return f"{path}, line {exc.lineno}: {what} appears twice"
    lineno = getattr(exc, "lineno", None)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{path}" + (f", line {lineno}" if lineno else "") + f": not a valid INI file: {first}"


def _read_config(path: Path, explicit: bool) -> configparser.ConfigParser:
    """Parse the config file; a missing default file is no config, a missing named one an error."""
    parser = configparser.ConfigParser(interpolation=None)   # a '%' in a token or path is literal
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path}: no such file")
        return parser
    if not path.is_file():
        raise ConfigError(f"config file {path}: not a file (expected an INI file)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {exc.start}); "
                          "expected an INI file") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror or exc}") from exc
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise ConfigError(_ini_error(path, exc)) from exc
    return parser


def load_settings(flags: Optional[Mapping[str, Any]] = None, *,
                  env: Optional[Mapping[str, str]] = None,
                  config_file: Optional[Path] = None) -> Settings:
    """Merge the three sources; flags whose value is None do not override."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    explicit = config_file is not None or bool(env.get("DRIVESYNC_CONFIG"))
    path = config_file or Path(env.get("DRIVESYNC_CONFIG") or default_config_file())
    parser = _read_config(path, explicit)
    if parser.has_section("drivesync"):
        for key, raw in parser.items("drivesync"):
            if key not in _TYPES:
                raise ConfigError(f"{path}: unknown setting {key!r} in [drivesync]")
            values[key] = _coerce(key, raw, str(path))
    for name in _TYPES:
        var = "DRIVESYNC_" + name.upper()
        raw = env.get(var)
        if raw not in (None, ""):
            values[name] = _coerce(name, raw, var)
    for name, raw in (flags or {}).items():
        if name in _TYPES and raw is not None:
            values[name] = _coerce(name, raw)
    return replace(Settings(), **values)


#: Credentials a caller's own Settings leave unset still come from the environment,
#: as they always have: a secret belongs in DRIVESYNC_TOKEN, not in the code that
#: builds ``Settings(jobs=8)``.
_CREDENTIALS = ("token", "service_account", "credentials")


def resolve_settings(settings: Optional[Settings] = None, /, *,
                     env: Optional[Mapping[str, str]] = None, **flags: Any) -> Settings:
    """The one settings resolution of the CLI and of every public function.

    Given ``settings`` are used as they are (the caller resolved them), except
    that credentials they leave unset (token, service_account, credentials) come
    from their DRIVESYNC_* variables; else ``flags`` (None: not given), then
    DRIVESYNC_* environment, then the config file, as :func:`load_settings`
    merges them. Flags also override given settings, so
    ``push(..., jobs=8, settings=s)`` means what it says.
    """
    if settings is None:
        return load_settings(flags, env=env)
    env = os.environ if env is None else env
    known = {k: _coerce(k, v) for k, v in flags.items() if k in _TYPES and v is not None}
    for name in _CREDENTIALS:
        raw = env.get("DRIVESYNC_" + name.upper())
        if getattr(settings, name) is None and name not in known and raw:
            known[name] = raw
    return replace(settings, **known) if known else settings
