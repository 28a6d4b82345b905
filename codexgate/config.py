"""The frozen settings of one codexgate instance, read from flags and the environment."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from yarl import URL

WebSocketMode = Literal["relay", "refuse"]

ENV_PREFIX = "CODEXGATE_"
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Visible ASCII only: the token travels in a URL query and an Authorization header.
_ADMIN_TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{16,}")
DEFAULT_UPSTREAM: Final = URL("https://chatgpt.com")


class ConfigError(Exception):
    """A setting has a value codexgate cannot use; the message names the setting."""

    def __init__(self, setting: str, message: str) -> None:
        flag = "--" + setting.replace("_", "-")
        env = ENV_PREFIX + setting.upper()
        super().__init__(f"invalid {flag} ({env}): {message}")
        self.setting = setting


@dataclass(frozen=True, slots=True)
class Config:
    """Everything that shapes one running instance."""

    host: str = "127.0.0.1"
    port: int = 8787
    upstream: URL = DEFAULT_UPSTREAM
    db: Path = Path("./data/codexgate.db")
    admin_prefix: str = "codexgate"
    upstream_proxy: URL | None = None
    log_level: str = "INFO"
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0  # the Codex CLI's own stream idle timeout is 5 minutes
    capture: bool = True
    websocket: WebSocketMode = "relay"
    queue_size: int = 10_000
    history_heartbeat: float = 300.0
    shutdown_grace: float = 30.0
    admin_token: str | None = field(default=None, repr=False)  # never in a repr or a log line
    no_auth: bool = False
    warn_percent: float = 50.0  # the dashboard's bars turn amber from here
    critical_percent: float = 80.0  # and red from here; also what "near the limit" means

    def __post_init__(self) -> None:
        """Refuse --no-auth on an address other machines can reach, and crossed thresholds."""
        if not 0 < self.warn_percent < self.critical_percent <= 100:
            raise ConfigError(
                "critical_percent",
                "needs 0 < --warn-percent < --critical-percent <= 100, got "
                f"{self.warn_percent:g} and {self.critical_percent:g}",
            )
        if self.no_auth and not is_loopback(self.host):
            raise ConfigError(
                "no_auth",
                "only allowed with a loopback --host (127.0.0.0/8, ::1 or localhost), "
                f"got --host {self.host!r}",
            )

    @property
    def public_base(self) -> str:
        """The base URL a client on this machine uses to reach the gateway."""
        # A wildcard bind is reached through the loopback address of its own family.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class _Setting:
    name: str
    help: str
    metavar: str = "VALUE"
    is_flag: bool = False


SETTINGS: tuple[_Setting, ...] = (
    _Setting("host", "address to listen on (default 127.0.0.1)", "HOST"),
    _Setting("port", "port to listen on (default 8787)", "PORT"),
    _Setting(
        "upstream",
        "upstream origin; paths are forwarded as they come (default https://chatgpt.com)",
        "URL",
    ),
    _Setting("db", "SQLite database file (default ./data/codexgate.db)", "PATH"),
    _Setting(
        "admin_prefix", "path prefix of codexgate's own pages and API (default codexgate)", "PREFIX"
    ),
    _Setting(
        "upstream_proxy",
        "HTTP(S) proxy for the upstream connection (default: HTTPS_PROXY/NO_PROXY)",
        "URL",
    ),
    _Setting("log_level", "DEBUG, INFO, WARNING or ERROR (default INFO)", "LEVEL"),
    _Setting(
        "connect_timeout", "seconds to wait for the upstream connection (default 10)", "SECONDS"
    ),
    _Setting(
        "idle_timeout",
        "seconds a response may stay silent before it is cut (default 300)",
        "SECONDS",
    ),
    _Setting("capture", "record usage from responses: on or off (default on)", "on|off"),
    _Setting(
        "websocket",
        "relay WebSocket upgrades, or refuse them with 426 so clients use HTTP (default relay)",
        "relay|refuse",
    ),
    _Setting("queue_size", "snapshots that may wait for the database (default 10000)", "N"),
    _Setting(
        "history_heartbeat",
        "seconds after which an unchanged window gets a new history row (default 300)",
        "SECONDS",
    ),
    _Setting(
        "shutdown_grace",
        "seconds in-flight streams get to finish on shutdown (default 30)",
        "SECONDS",
    ),
    _Setting(
        "admin_token",
        "token for the admin pages and API, at least 16 characters "
        "(default: generated on first start and logged once)",
        "TOKEN",
    ),
    _Setting(
        "no_auth",
        "on turns authentication off; only with a loopback --host (default off)",
        "on|off",
    ),
    _Setting(
        "warn_percent",
        "used percent from which the dashboard shows a window amber (default 50)",
        "PERCENT",
    ),
    _Setting(
        "critical_percent",
        "used percent from which a window shows red and counts as near its limit (default 80)",
        "PERCENT",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare one flag per setting; unset flags stay None so the environment can fill them."""
    for setting in SETTINGS:
        parser.add_argument(
            "--" + setting.name.replace("_", "-"),
            dest=setting.name,
            default=None,
            metavar=setting.metavar,
            help=f"{setting.help} [env {ENV_PREFIX}{setting.name.upper()}]",
        )


def _number(setting: str, raw: str, *, minimum: float, integer: bool = False) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(setting, f"must be {kind}, got {raw!r}") from None
    if not value >= minimum or value == float("inf"):
        raise ConfigError(setting, f"must be at least {minimum:g}, got {raw!r}")
    return value


def _origin(setting: str, raw: str) -> URL:
    try:
        url = URL(raw.strip())
    except ValueError:
        raise ConfigError(setting, f"not a URL: {raw!r}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(setting, f"must be an http:// or https:// URL, got {raw!r}")
    return url


def _upstream(raw: str) -> URL:
    url = _origin("upstream", raw)
    if url.path not in ("", "/") or url.query_string or url.fragment or url.user or url.password:
        raise ConfigError(
            "upstream",
            "must be an origin such as https://chatgpt.com (no path, query or credentials), "
            f"got {raw!r}",
        )
    return url.origin()


def _switch(setting: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("on", "true", "1", "yes"):
        return True
    if lowered in ("off", "false", "0", "no"):
        return False
    raise ConfigError(setting, f"must be on or off, got {raw!r}")


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1) or localhost."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _convert(name: str, raw: str) -> object:
    match name:
        case "host":
            if not raw.strip():
                raise ConfigError(name, "must not be empty")
            return raw.strip()
        case "port":
            port = int(_number(name, raw, minimum=1, integer=True))
            if port > 65535:
                raise ConfigError(name, f"must be 1-65535, got {raw!r}")
            return port
        case "upstream":
            return _upstream(raw)
        case "db":
            if not raw.strip():
                raise ConfigError(name, "must not be empty")
            path = Path(raw).expanduser()
            if path.is_dir():
                raise ConfigError(name, f"{raw!r} is a folder; give a file path")
            return path
        case "admin_prefix":
            prefix = raw.strip().strip("/")
            if not _PREFIX_PATTERN.fullmatch(prefix):
                raise ConfigError(name, f"use 1-64 letters, digits, '_' or '-', got {raw!r}")
            return prefix
        case "upstream_proxy":
            return _origin(name, raw)
        case "log_level":
            level = raw.strip().upper()
            if level not in _LOG_LEVELS:
                raise ConfigError(name, f"must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
            return level
        case "connect_timeout" | "idle_timeout" | "history_heartbeat" | "shutdown_grace":
            return _number(name, raw, minimum=0.001 if name != "shutdown_grace" else 0)
        case "capture" | "no_auth":
            return _switch(name, raw)
        case "websocket":
            mode = raw.strip().lower()
            if mode not in ("relay", "refuse"):
                raise ConfigError(name, f"must be relay or refuse, got {raw!r}")
            return mode
        case "warn_percent" | "critical_percent":
            percent = _number(name, raw, minimum=0.001)
            if percent > 100:
                raise ConfigError(name, f"must be at most 100, got {raw!r}")
            return percent
        case "queue_size":
            return int(_number(name, raw, minimum=1, integer=True))
        case "admin_token":
            if not _ADMIN_TOKEN_PATTERN.fullmatch(raw):
                # The message never repeats the value: it is a secret.
                raise ConfigError(
                    name, "must be at least 16 visible ASCII characters, without spaces"
                )
            return raw
    raise AssertionError(f"unhandled setting {name}")


def load(flags: Mapping[str, str | None], environ: Mapping[str, str] | None = None) -> Config:
    """Build the config: a flag beats its CODEXGATE_ variable, which beats the default."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for setting in SETTINGS:
        raw = flags.get(setting.name)
        if raw is None:
            raw = env.get(ENV_PREFIX + setting.name.upper())
        if raw is not None:
            values[setting.name] = _convert(setting.name, raw)
    return Config(**values)  # type: ignore[arg-type]


def from_argv(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse serve-style arguments (used by tests and tools that start an instance)."""
    parser = argparse.ArgumentParser(prog="codexgate")
    add_arguments(parser)
    return load(vars(parser.parse_args(list(argv))), environ)


def log_level_number(config: Config) -> int:
    """The logging module's number for the configured level."""
    return logging.getLevelNamesMapping()[config.log_level]
