"""The frozen settings of one codexgate instance, read from flags, the environment and a file."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import ipaddress
import itertools
import logging
import os
import re
import ssl
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from yarl import URL

from codexgate.core.refresh import DEFAULT_REFRESH_AFTER_MINUTES, MIN_REFRESH_AFTER_MINUTES
from codexgate.paths import NoStateFolder, default_database
from codexgate.storage.location import DatabaseLocation, parse_database

WebSocketMode = Literal["relay", "refuse"]

ENV_PREFIX = "CODEXGATE_"
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# First path segments Codex clients use (/backend-api/codex/responses, /api/codex/usage without
# /backend-api in chatgpt_base_url, /v1/responses with an API key, /wham/usage): an admin prefix
# equal to one would take those requests away from the upstream. Compared in lower case.
CODEX_PATH_ROOTS: Final = frozenset({"backend-api", "api", "v1", "wham"})
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Visible ASCII only: the token travels in a URL query and an Authorization header.
_ADMIN_TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{16,}")
DEFAULT_UPSTREAM: Final = URL("https://chatgpt.com")
DEFAULT_CONFIG_FILE: Final = Path("codexgate.toml")
# Where a setting's value came from, strongest first ("env_file": CODEXGATE_<NAME>_FILE, which
# beats CODEXGATE_<NAME>).
Source = Literal["flag", "env_file", "env", "file", "default"]
# Settings that may hold a secret and so may also be read from a file named by
# CODEXGATE_<NAME>_FILE: container and compose secrets are files (/run/secrets/...), and a file
# keeps the value out of the process environment, which `docker inspect` shows.
SECRET_FILE_SETTINGS: Final = ("admin_token", "metrics_token", "db", "upstream_proxy")
SECRET_FILE_SUFFIX: Final = "_FILE"  # noqa: S105 (a variable name, not a secret)
_SECRET_FILE_MAX_BYTES: Final = 64 * 1024
# The settings each check in Config.__post_init__ compares, by the setting its error names.
_CROSS_CHECKED: Final = MappingProxyType(
    {"critical_percent": ("warn_percent", "critical_percent"), "no_auth": ("no_auth", "host")}
)
WebhookFormat = Literal[
    "json", "slack", "discord", "telegram", "feishu", "dingtalk", "wecom", "ntfy", "email"
]
WEBHOOK_FORMATS: Final[tuple[str, ...]] = get_args(WebhookFormat)
# The keys every webhook may have, then those that only some formats take.
_WEBHOOK_COMMON: Final = ("url", "format", "name", "ca_file")
_WEBHOOK_ONLY: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "chat_id": ("telegram",),
        "secret": ("feishu", "dingtalk"),
        "token": ("ntfy",),
        **{key: ("email",) for key in ("to", "from", "smtp", "username", "password", "starttls")},
    }
)
_WEBHOOK_KEYS: Final = (*_WEBHOOK_COMMON, *_WEBHOOK_ONLY)
# Telegram: a numeric chat id (groups are negative) or a public @channelusername.
_TELEGRAM_CHAT = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}")
_NTFY_TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")
TELEGRAM_CHAT_HELP: Final = (
    "is required: the chat's number (-1001234567890) or a channel's @username"
)
SMTP_PORT: Final = 587  # the submission port, where STARTTLS is the rule
_ALERT_KEYS: Final = (
    "thresholds",
    "limit_hit",
    "limit_reset",
    "forecast",
    "stale_minutes",
    "webhooks",
)


@dataclass(frozen=True, slots=True)
class EmailConfig:
    """Where and how an `email` webhook sends: one SMTP server, STARTTLS unless turned off."""

    host: str
    port: int
    sender: str  # the file's `from`
    to: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr or a log line
    starttls: bool = True


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One alert destination from the config file's `[[alerts.webhooks]]`."""

    # Webhook URLs carry their secret in the path or query: never printed whole. An email
    # webhook's is smtp://host:port, for the logs and the API to name it.
    url: URL = field(repr=False)
    format: WebhookFormat = "json"
    name: str | None = None
    chat_id: str | None = None  # telegram
    secret: str | None = field(default=None, repr=False)  # feishu and dingtalk signing
    token: str | None = field(default=None, repr=False)  # ntfy access token
    ca_file: Path | None = None  # extra trusted certificates (PEM), for a private CA
    email: EmailConfig | None = None

    @property
    def display(self) -> str:
        """The URL without its secret parts: scheme://host/…."""
        return mask_url(self.url)


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """When codexgate raises alerts and where it sends them (config file only)."""

    thresholds: tuple[float, ...] = (75.0, 90.0, 95.0)  # used percents, sorted, unique
    limit_hit: bool = True
    limit_reset: bool = True
    forecast: bool = True  # alert when a forecast says the window runs out before its reset
    stale_minutes: float = 60.0  # alert when an account's newest data is older; 0 turns it off
    webhooks: tuple[WebhookConfig, ...] = ()


def mask_url(url: URL) -> str:
    """Show a URL as scheme://host[:port]/… so a token in its path or query stays hidden."""
    return f"{url.scheme}://{url.host_port_subcomponent or ''}/…"


def mask_credentials(url: URL) -> str:
    """Show a URL whole but for its user and password, which become *** (proxy URLs)."""
    if url.user is None and url.password is None:
        return str(url)
    return str(url.with_user(None).with_user("***"))


class ConfigError(Exception):
    """A setting has a value codexgate cannot use; the message names the setting."""

    def __init__(self, setting: str, message: str, *, where: str | None = None) -> None:
        if where is None:
            flag = "--" + setting.replace("_", "-")
            env = ENV_PREFIX + setting.upper()
            super().__init__(f"invalid {flag} ({env}): {message}")
        else:
            super().__init__(f"invalid {setting} in {where}: {message}")
        self.setting = setting
        self.message = message


def default_database_path(environ: Mapping[str, str]) -> Path:
    """The database file when no --db, CODEXGATE_DB or file `db` is given."""
    try:
        return default_database(environ).path
    except NoStateFolder as exc:
        raise ConfigError("db", f"{exc}: give one") from None


def default_database_why(
    db: DatabaseLocation, environ: Mapping[str, str] | None = None
) -> str | None:
    """Why the database is where it is when that is the default location, else None."""
    try:
        default = default_database(os.environ if environ is None else environ)
    except NoStateFolder:
        return None
    return default.why if db == default.path else None


@dataclass(frozen=True, slots=True)
class Config:
    """Everything that shapes one running instance."""

    host: str = "127.0.0.1"
    port: int = 8787
    reuse_port: bool = False  # SO_REUSEPORT: a new process may bind the port while this one drains
    upstream: URL = DEFAULT_UPSTREAM
    # A SQLite file, or a PostgreSQL URL whose repr and str hide its password. Unset, it depends
    # on how codexgate runs (paths.default_database): every command gets it from here.
    db: DatabaseLocation = field(default_factory=lambda: default_database_path(os.environ))
    db_pool_size: int = 10  # connections in the PostgreSQL pool (SQLite ignores it)
    db_connect_timeout: float = 30.0  # start-up gives PostgreSQL this long before it fails
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
    history_retention_days: float = 90.0  # 0 keeps history forever
    request_retention_days: float = 30.0  # 0 keeps the request log forever
    downsample_history: bool = False  # older than 7 days: one row per account, limit, 10 min
    metrics_token: str | None = field(default=None, repr=False)  # never in a repr or a log line
    # The URL people use to reach the gateway when it is behind a (TLS) reverse proxy.
    public_url: URL | None = None
    websocket_max_message_mib: int = 32  # one WebSocket message, either way; above: close 1009
    request_head_timeout: float = 10.0  # a connection must send a whole request head by then
    keepalive_timeout: float = 75.0  # a kept-alive connection may stay quiet this long
    max_connections: int = 8192  # open client connections at once; more wait for the kernel
    max_connections_per_address: int = 1024  # from one client address; 0 turns the cap off
    max_feed_subscribers: int = 256  # live-feed streams open at once; more answer 503
    max_accounts: int = 1000  # accounts that traffic may create; beyond, new seats are counted
    # Ask the upstream for the usage of accounts idle longer than refresh_after minutes, with
    # the token last seen accepted in traffic (kept in memory only); off unless asked for.
    refresh_idle: bool = False
    refresh_after: float = DEFAULT_REFRESH_AFTER_MINUTES
    alerts: AlertConfig = field(default_factory=AlertConfig)
    config_file: Path | None = None  # the TOML file that was read, if any

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
        "reuse_port",
        "on lets another codexgate started with it listen on the same port, so a new one can "
        "take over while this one drains (SO_REUSEPORT; default off)",
        "on|off",
    ),
    _Setting(
        "upstream",
        "upstream origin; paths are forwarded as they come (default https://chatgpt.com)",
        "URL",
    ),
    _Setting(
        "db",
        "SQLite database file or postgresql:// URL (default ./data/codexgate.db in a source "
        "checkout, else $XDG_STATE_HOME/codexgate/codexgate.db or "
        "~/.local/state/codexgate/codexgate.db)",
        "PATH|URL",
    ),
    _Setting("db_pool_size", "connections in the PostgreSQL pool (default 10)", "N"),
    _Setting(
        "db_connect_timeout",
        "how long start-up waits for PostgreSQL before it fails, in seconds (default 30)",
        "SECONDS",
    ),
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
    _Setting(
        "history_retention_days",
        "days of usage history to keep; 0 keeps it forever (default 90)",
        "DAYS",
    ),
    _Setting(
        "request_retention_days",
        "days of the request log to keep; 0 keeps it forever (default 30)",
        "DAYS",
    ),
    _Setting(
        "downsample_history",
        "on keeps history older than 7 days as one row per account, limit and 10 minutes "
        "(default off)",
        "on|off",
    ),
    _Setting(
        "metrics_token",
        "a separate bearer token for the metrics endpoint, at least 16 characters (default none)",
        "TOKEN",
    ),
    _Setting(
        "public_url",
        "the URL people reach codexgate at, e.g. behind a TLS reverse proxy (default none)",
        "URL",
    ),
    _Setting(
        "websocket_max_message_mib",
        "largest WebSocket message relayed either way, in MiB; larger closes with 1009 "
        "(default 32)",
        "MIB",
    ),
    _Setting(
        "request_head_timeout",
        "seconds a client connection has to send a whole request head (default 10)",
        "SECONDS",
    ),
    _Setting(
        "keepalive_timeout",
        "seconds a kept-alive client connection may stay quiet between requests (default 75)",
        "SECONDS",
    ),
    _Setting("max_connections", "client connections open at once (default 8192)", "N"),
    _Setting(
        "max_connections_per_address",
        "client connections open at once from one address; 0 is no cap (default 1024)",
        "N",
    ),
    _Setting("max_feed_subscribers", "live-feed streams open at once (default 256)", "N"),
    _Setting(
        "max_accounts",
        "accounts that proxied traffic may create; more seats are counted, not recorded "
        "(default 1000)",
        "N",
    ),
    _Setting(
        "refresh_idle",
        "on asks the upstream for the usage of idle accounts with the token last seen in "
        "their traffic, kept in memory only (default off)",
        "on|off",
    ),
    _Setting(
        "refresh_after",
        "minutes without new usage data after which --refresh-idle asks, jittered by 20%, "
        f"at least {MIN_REFRESH_AFTER_MINUTES:g} (default {DEFAULT_REFRESH_AFTER_MINUTES:g})",
        "MINUTES",
    ),
)


def _kind(name: str) -> str:
    """The TOML type a setting takes in the file, from its Config annotation."""
    annotation = str(next(f.type for f in dataclasses.fields(Config) if f.name == name))
    return {"int": "integer", "float": "number", "bool": "boolean"}.get(annotation, "string")


# The TOML type of each setting in the file: "integer", "number", "boolean" or "string".
_KINDS: Final = MappingProxyType({setting.name: _kind(setting.name) for setting in SETTINGS})


def flag_of(name: str) -> str:
    """The command-line flag of a setting: db is --db, admin_token is --admin-token."""
    return "--" + name.replace("_", "-")


def add_arguments(
    parser: argparse.ArgumentParser,
    names: Collection[str] | None = None,
    *,
    dest_prefix: str = "",
    suppress: bool = False,
) -> None:
    """Declare --config and one flag per setting (or per setting in names).

    Unset flags stay None for the other sources, or absent with suppress (so that a subcommand's
    parser does not overwrite what was given before it); each lands in dest_prefix + its name.
    """
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config",
        dest=dest_prefix + "config",
        default=default,
        metavar="PATH",
        help=f"TOML settings file (default ./{DEFAULT_CONFIG_FILE} if it exists) "
        f"[env {ENV_PREFIX}CONFIG]",
    )
    for setting in SETTINGS:
        if names is not None and setting.name not in names:
            continue
        parser.add_argument(
            flag_of(setting.name),
            dest=dest_prefix + setting.name,
            default=default,
            metavar=setting.metavar,
            # argparse formats help with %: a literal one ("20%") must be doubled.
            help=f"{setting.help} [env {ENV_PREFIX}{setting.name.upper()}]".replace("%", "%%"),
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


def _public_url(raw: str) -> URL:
    url = _origin("public_url", raw)
    if url.query_string or url.fragment or url.user or url.password:
        raise ConfigError(
            "public_url",
            "must be a URL such as https://codex.example.com (no query or credentials), "
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
            try:
                return parse_database(raw)
            except ValueError as exc:
                # The reason never quotes a URL, which may hold a password.
                raise ConfigError(name, str(exc)) from None
        case "admin_prefix":
            prefix = raw.strip().strip("/")
            if not _PREFIX_PATTERN.fullmatch(prefix):
                raise ConfigError(name, f"use 1-64 letters, digits, '_' or '-', got {raw!r}")
            if prefix.lower() in CODEX_PATH_ROOTS:
                raise ConfigError(
                    name,
                    f"{prefix!r} is where Codex clients send their own requests "
                    f"(/{prefix}/...), which codexgate must proxy; choose another prefix",
                )
            return prefix
        case "upstream_proxy":
            return _origin(name, raw)
        case "public_url":
            return _public_url(raw)
        case "log_level":
            level = raw.strip().upper()
            if level not in _LOG_LEVELS:
                raise ConfigError(name, f"must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
            return level
        case (
            "connect_timeout"
            | "idle_timeout"
            | "history_heartbeat"
            | "shutdown_grace"
            | "request_head_timeout"
            | "keepalive_timeout"
            | "db_connect_timeout"
        ):
            return _number(name, raw, minimum=0.001 if name != "shutdown_grace" else 0)
        case "history_retention_days" | "request_retention_days":
            return _number(name, raw, minimum=0)
        case "refresh_after":
            return _number(name, raw, minimum=MIN_REFRESH_AFTER_MINUTES)
        case "capture" | "no_auth" | "downsample_history" | "refresh_idle" | "reuse_port":
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
        case (
            "queue_size"
            | "websocket_max_message_mib"
            | "max_connections"
            | "max_feed_subscribers"
            | "max_accounts"
            | "db_pool_size"
        ):
            return int(_number(name, raw, minimum=1, integer=True))
        case "max_connections_per_address":
            return int(_number(name, raw, minimum=0, integer=True))
        case "admin_token" | "metrics_token":
            # The messages never repeat the value: it is a secret.
            if not _ADMIN_TOKEN_PATTERN.fullmatch(raw):
                raise ConfigError(
                    name, "must be at least 16 visible ASCII characters, without spaces"
                )
            # Runs and repeats ("aaaa...", "1234...", "abcd...") step by -1, 0 or +1.
            steps = sum(abs(ord(a) - ord(b)) <= 1 for a, b in itertools.pairwise(raw))
            if len(set(raw)) < 8 or 2 * steps > len(raw) - 1:
                raise ConfigError(
                    name,
                    "is too easy to guess: use at least 8 different characters, not a run or "
                    "a repeat (for example the output of: python -c "
                    '"import secrets; print(secrets.token_urlsafe(24))")',
                )
            return raw
    raise AssertionError(f"unhandled setting {name}")


def read_secret_file(name: str, raw_path: str) -> str:
    """The value of CODEXGATE_<NAME>_FILE's file: its text without surrounding whitespace."""
    variable = ENV_PREFIX + name.upper() + SECRET_FILE_SUFFIX
    path = Path(raw_path).expanduser()
    try:
        with path.open("rb") as handle:
            data = handle.read(_SECRET_FILE_MAX_BYTES + 1)
    except FileNotFoundError:
        problem = "does not exist"
    except IsADirectoryError:
        problem = "is a folder"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    else:
        if len(data) > _SECRET_FILE_MAX_BYTES:
            problem = f"is larger than {_SECRET_FILE_MAX_BYTES // 1024} KiB"
        else:
            try:
                text = data.decode("utf-8").strip()
            except UnicodeDecodeError:
                problem = "is not UTF-8 text"
            else:
                if text:
                    return text
                problem = "is empty"
    raise ConfigError(name, f"{path} {problem}", where=variable)


def config_path(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Path | None:
    """The settings file to read: --config, else CODEXGATE_CONFIG, else ./codexgate.toml if any."""
    raw = flags.get("config")
    if raw is None:
        raw = environ.get(ENV_PREFIX + "CONFIG")
    if raw is None:
        return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None
    if not raw.strip():
        raise ConfigError("config", "must not be empty")
    path = Path(raw).expanduser()
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError("config", f"{raw!r} {problem}; give a TOML file")
    return path


def read_file(path: Path) -> dict[str, Any]:
    """The parsed TOML of a settings file; syntax errors name the line."""
    where = str(path)
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("TOML", str(exc), where=where) from None
    except UnicodeDecodeError:
        raise ConfigError("TOML", "the file is not UTF-8 text", where=where) from None
    except OSError as exc:
        raise ConfigError("config", f"cannot read {where}: {exc.strerror}") from None


def _toml_type(value: object) -> str:
    """How TOML calls the type of a parsed value, with its article."""
    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a float"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "a table"
    return "a date or time"


def _unknown(key: str, known: Sequence[str], where: str, what: str) -> ConfigError:
    """The error for a key the file must not have, with the nearest known key as a hint."""
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name.replace("-", "_"), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"key {key!r}", f"not {what}{hint}", where=where)


def _file_text(name: str, value: object, where: str) -> str:
    """A file value as the text a flag would carry, if its TOML type is the setting's."""
    kind = _KINDS.get(name, "string")
    if kind == "boolean" and isinstance(value, bool):
        return "on" if value else "off"
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if (kind == "integer" and numeric and isinstance(value, int)) or (kind == "number" and numeric):
        return str(value)
    if kind == "string" and isinstance(value, str):
        return value
    expected = {"boolean": "true or false", "string": "a string"}.get(kind, f"a TOML {kind}")
    raise ConfigError(name, f"must be {expected}, got {_toml_type(value)}", where=where)


def _file_setting(name: str, value: object, where: str) -> object:
    """Convert one top-level file value with the same rules and messages as its flag."""
    text = _file_text(name, value, where)
    try:
        return _convert(name, text)
    except ConfigError as exc:
        message = exc.message
        if not isinstance(value, str):
            # A TOML number became a string on the way: show it as the file has it.
            message = message.replace(repr(text), text)
        raise ConfigError(name, message, where=where) from None


def _percents(key: str, value: object, where: str) -> tuple[float, ...]:
    """alerts.thresholds: used percents in (0, 100], returned sorted and without repeats."""
    if not isinstance(value, list):
        raise ConfigError(key, f"must be an array of numbers, got {_toml_type(value)}", where=where)
    percents: set[float] = set()
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ConfigError(key, f"must hold numbers, got {_toml_type(item)}", where=where)
        if not 0 < item <= 100:
            raise ConfigError(key, f"each must be above 0 and at most 100, got {item}", where=where)
        percents.add(float(item))
    return tuple(sorted(percents))


def _webhook_text(key: str, value: object, where: str, *, limit: int = 1000) -> str:
    """A webhook's string setting: not empty, at most `limit` characters, no control character."""
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {_toml_type(value)}", where=where)
    text = value.strip()
    if not 1 <= len(text) <= limit or any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ConfigError(
            key, f"must be 1 to {limit} characters without control characters", where=where
        )
    return text


def _address(key: str, value: object, where: str) -> str:
    """One email address (`ops@example.com` or `Ops <ops@example.com>`); never a header break."""
    text = _webhook_text(key, value, where, limit=320)
    _, address = parseaddr(text)
    local, _, domain = address.rpartition("@")
    if not local or ("." not in domain and domain != "localhost"):
        raise ConfigError(key, "must be an email address such as ops@example.com", where=where)
    return text


def _ca_file(key: str, value: object, where: str) -> Path:
    """A PEM file of certificates to trust besides the system's; read once here to check it."""
    path = Path(_webhook_text(key, value, where, limit=4096))
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        # SSLError is an OSError too, whose strerror is OpenSSL's jargon.
        reason = "not PEM" if isinstance(exc, ssl.SSLError) else exc.strerror or "unreadable"
        message = f"cannot use {str(path)!r} as certificates: {reason}"
        raise ConfigError(key, message, where=where) from None
    return path


def _email(key: str, value: dict[str, Any], where: str) -> EmailConfig:
    """The SMTP part of an `email` webhook."""
    raw_to = value.get("to")
    targets = raw_to if isinstance(raw_to, list) else [raw_to]
    if raw_to is None or not 1 <= len(targets) <= 50:
        raise ConfigError(
            f"{key}.to", "must be an address or an array of 1 to 50 addresses", where=where
        )
    to = tuple(_address(f"{key}.to", item, where) for item in targets)
    if "from" not in value:
        raise ConfigError(f"{key}.from", "is required: the sender address", where=where)
    sender = _address(f"{key}.from", value["from"], where)
    if "smtp" not in value:
        raise ConfigError(
            f"{key}.smtp", "is required: the server as host or host:port", where=where
        )
    server = _webhook_text(f"{key}.smtp", value["smtp"], where, limit=300)
    try:
        parsed = URL(f"smtp://{server}")
        port = parsed.explicit_port or SMTP_PORT
    except ValueError:
        parsed, port = URL(), 0
    if not parsed.host or parsed.path not in ("", "/") or parsed.user or parsed.query_string:
        raise ConfigError(
            f"{key}.smtp", "must be host or host:port, such as smtp.example.com:587", where=where
        )
    starttls = value.get("starttls", True)
    if not isinstance(starttls, bool):
        got = _toml_type(starttls)
        raise ConfigError(f"{key}.starttls", f"must be true or false, got {got}", where=where)
    username = value.get("username")
    password = value.get("password")
    if (username is None) != (password is None):
        raise ConfigError(
            f"{key}.{'password' if password is None else 'username'}",
            "username and password go together",
            where=where,
        )
    if username is not None:
        username = _webhook_text(f"{key}.username", username, where, limit=320)
        if not isinstance(password, str) or not password:
            raise ConfigError(f"{key}.password", "must be a string", where=where)
        if not starttls:
            raise ConfigError(
                f"{key}.starttls",
                "must be true when a password is set: it would go in clear",
                where=where,
            )
    return EmailConfig(parsed.host, port, sender, to, username, password, starttls)


def webhook_url_problem(url: URL, kind: str) -> str | None:
    """What is wrong with `url` as a `kind` webhook's URL (never quoting it), or None."""
    if url.scheme not in ("http", "https") or not url.host:
        return "must be an http:// or https:// URL"
    if kind == "telegram" and url.name.lower() != "sendmessage":
        return (
            "must be the Bot API's sendMessage URL: https://api.telegram.org/bot<token>/sendMessage"
        )
    if kind == "ntfy" and not _NTFY_TOPIC.fullmatch(url.name):
        return "must be the topic's URL, such as https://ntfy.sh/mytopic"
    return None


def telegram_chat(value: object) -> str | None:
    """A Telegram chat id as sent (`-1001234567890`, `@channel`), or None when it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _TELEGRAM_CHAT.fullmatch(value.strip()):
        return None
    return value.strip()


def _webhook_url(key: str, raw_url: object, kind: str, where: str) -> URL:
    """An http(s) URL, shaped as the format needs; its text is never repeated in a message."""
    if not isinstance(raw_url, str):
        got = "nothing" if raw_url is None else _toml_type(raw_url)
        raise ConfigError(f"{key}.url", f"must be a string, got {got}", where=where)
    try:
        url = URL(raw_url.strip())
    except ValueError:
        url = URL()
    problem = webhook_url_problem(url, kind)
    if problem is not None:
        raise ConfigError(f"{key}.url", problem, where=where)
    return url


def _webhook(key: str, value: object, where: str) -> WebhookConfig:
    """One [[alerts.webhooks]] table; URLs and secrets are checked but never repeated."""
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a table, got {_toml_type(value)}", where=where)
    for item in value:
        if item not in _WEBHOOK_KEYS:
            raise _unknown(f"{key}.{item}", _WEBHOOK_KEYS, where, "a webhook setting")
    kind = value.get("format", "json")
    if kind not in WEBHOOK_FORMATS:
        shown = repr(kind) if isinstance(kind, str) else _toml_type(kind)
        raise ConfigError(
            f"{key}.format",
            f"must be one of {', '.join(WEBHOOK_FORMATS)}, got {shown}",
            where=where,
        )
    for item, formats in _WEBHOOK_ONLY.items():
        if item in value and kind not in formats:
            raise ConfigError(
                f"{key}.{item}", f"applies only to format {' or '.join(formats)}", where=where
            )
    name = value.get("name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 100):
        raise ConfigError(f"{key}.name", "must be a string of 1 to 100 characters", where=where)
    ca_file = None
    if "ca_file" in value:
        ca_file = _ca_file(f"{key}.ca_file", value["ca_file"], where)
    if kind == "email":
        if "url" in value:
            raise ConfigError(
                f"{key}.url", "an email webhook has smtp, from and to instead", where=where
            )
        email = _email(key, value, where)
        url = URL.build(scheme="smtp", host=email.host, port=email.port)
        return WebhookConfig(url=url, format=kind, name=name, ca_file=ca_file, email=email)
    url = _webhook_url(key, value.get("url"), kind, where)
    chat_id = None
    if kind == "telegram":
        chat_id = telegram_chat(value.get("chat_id"))
        if chat_id is None:
            raise ConfigError(f"{key}.chat_id", TELEGRAM_CHAT_HELP, where=where)
    secret = None
    if "secret" in value:
        secret = _webhook_text(f"{key}.secret", value["secret"], where, limit=200)
    token = None
    if "token" in value:
        token = _webhook_text(f"{key}.token", value["token"], where, limit=200)
    return WebhookConfig(
        url=url,
        format=kind,
        name=name,
        chat_id=chat_id,
        secret=secret,
        token=token,
        ca_file=ca_file,
    )


def _alerts(value: object, where: str) -> AlertConfig:
    """The [alerts] table, every key checked."""
    if not isinstance(value, dict):
        raise ConfigError("alerts", f"must be a table, got {_toml_type(value)}", where=where)
    fields: dict[str, Any] = {}
    for key, item in value.items():
        name = f"alerts.{key}"
        match key:
            case "thresholds":
                fields[key] = _percents(name, item, where)
            case "limit_hit" | "limit_reset" | "forecast":
                if not isinstance(item, bool):
                    got = _toml_type(item)
                    raise ConfigError(name, f"must be true or false, got {got}", where=where)
                fields[key] = item
            case "stale_minutes":
                if isinstance(item, bool) or not isinstance(item, int | float):
                    got = _toml_type(item)
                    raise ConfigError(name, f"must be a number, got {got}", where=where)
                if not 0 <= item < float("inf"):
                    raise ConfigError(name, f"must be 0 (off) or more, got {item}", where=where)
                fields[key] = float(item)
            case "webhooks":
                if not isinstance(item, list):
                    raise ConfigError(
                        name, "must be an array of tables: write [[alerts.webhooks]]", where=where
                    )
                fields[key] = tuple(
                    _webhook(f"{name}[{i}]", hook, where) for i, hook in enumerate(item)
                )
            case _:
                raise _unknown(name, _ALERT_KEYS, where, "an alerts setting")
    return AlertConfig(**fields)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A config and where each of its settings came from."""

    config: Config
    # Every SETTINGS name, "alerts" and "config_file": flag, env, file or default.
    sources: Mapping[str, Source]


def resolve(flags: Mapping[str, str | None], environ: Mapping[str, str] | None = None) -> Loaded:
    """Build the config per setting: flag, else CODEXGATE_ variable, else file, else default."""
    env = os.environ if environ is None else environ
    path = config_path(flags, env)
    sources: dict[str, Source] = {"config_file": "default", "alerts": "default"}
    if flags.get("config") is not None:
        sources["config_file"] = "flag"
    elif env.get(ENV_PREFIX + "CONFIG") is not None:
        sources["config_file"] = "env"
    values: dict[str, object] = {"config_file": path}
    file_values: dict[str, Any] = {}
    if path is not None:
        where = str(path)
        for key, value in read_file(path).items():
            if key == "alerts":
                values["alerts"] = _alerts(value, where)
                sources["alerts"] = "file"
            elif key in _KINDS:
                file_values[key] = value
            else:
                raise _unknown(key, (*_KINDS, "alerts"), where, "a codexgate setting")
    for setting in SETTINGS:
        name = setting.name
        raw = flags.get(name)
        sources[name] = "flag"
        if raw is None:
            raw = env.get(ENV_PREFIX + name.upper())
            sources[name] = "env"
        if name in SECRET_FILE_SETTINGS:
            secret_file = env.get(ENV_PREFIX + name.upper() + SECRET_FILE_SUFFIX)
            # The file beats the plain variable: an image sets CODEXGATE_DB=/data/... as its
            # default, and compose cannot unset it for a service that gives CODEXGATE_DB_FILE.
            if secret_file is not None and sources[name] == "env":
                raw = read_secret_file(name, secret_file)
                sources[name] = "env_file"
        if raw is not None and sources[name] == "env_file":
            try:
                values[name] = _convert(name, raw)
            except ConfigError as exc:
                variable = ENV_PREFIX + name.upper() + SECRET_FILE_SUFFIX
                raise ConfigError(name, exc.message, where=variable) from None
        elif raw is not None:
            values[name] = _convert(name, raw)
        elif name in file_values:
            values[name] = _file_setting(name, file_values[name], str(path))
            sources[name] = "file"
        else:
            sources[name] = "default"
    if sources["db"] == "default":
        values["db"] = default_database_path(env)
    try:
        config = Config(**values)  # type: ignore[arg-type]
    except ConfigError as exc:
        # Name the file when one of the settings the check compares came from it.
        if all(sources.get(name) != "file" for name in _CROSS_CHECKED.get(exc.setting, ())):
            raise
        raise ConfigError(exc.setting, exc.message, where=str(path)) from None
    return Loaded(config, sources)


def load(flags: Mapping[str, str | None], environ: Mapping[str, str] | None = None) -> Config:
    """Build the config: a flag beats its CODEXGATE_ variable, which beats the file's value."""
    return resolve(flags, environ).config


def from_argv(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse serve-style arguments (used by tests and tools that start an instance)."""
    parser = argparse.ArgumentParser(prog="codexgate")
    add_arguments(parser)
    return load(vars(parser.parse_args(list(argv))), environ)


def log_level_number(config: Config) -> int:
    """The logging module's number for the configured level."""
    return logging.getLevelNamesMapping()[config.log_level]
