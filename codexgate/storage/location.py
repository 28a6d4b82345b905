"""Where the data lives: a SQLite file or a PostgreSQL URL, and how messages name it."""

from __future__ import annotations

import getpass
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeAlias

SCHEMES: Final = ("postgresql", "postgres")
MASK: Final = "***"
HINT: Final = "use a file path or a postgresql:// URL"
# What names the host when neither the URL nor PGHOST does: libpq then tries its socket folders.
LOCAL_SOCKET: Final = "local socket"
DEFAULT_PORT: Final = "5432"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# "postgresql:host/db" or "postgres:/db": meant as a URL, not as a file of that odd name.
_SCHEME_WITHOUT_SLASHES = re.compile(r"postgres(?:ql)?:(?!//)", re.IGNORECASE)
_BRACKETED = re.compile(r"\[([^\]]+)\](?::(.*))?")
_PORT = re.compile(r"[0-9]{1,5}")
_ENCODE_HINT: Final = (
    "a user name or password needs '@', '/', '?' and '#' percent-encoded (%40, %2F, %3F, %23)"
)


@dataclass(frozen=True, slots=True)
class PostgresURL:
    """A PostgreSQL connection URL, checked; its text is only for the driver."""

    # Exactly as given, password included: messages use masked or where instead.
    dsn: str = field(repr=False)

    def __post_init__(self) -> None:
        """Refuse what the driver could not use, with a message that never quotes the URL."""
        _check(self.dsn)

    @property
    def masked(self) -> str:
        """The URL with its password (user:password@ or ?password=) shown as ***."""
        return _masked(self.dsn)

    @property
    def where(self) -> str:
        """host:port/dbname, filling what the URL lacks as libpq does (PGHOST, ..., defaults)."""
        return _where(self.dsn, os.environ)

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"PostgresURL({self.masked!r})"


DatabaseLocation: TypeAlias = Path | PostgresURL


def parse_database(raw: str) -> DatabaseLocation:
    """A --db value: a postgresql:// (or postgres://) URL, else a SQLite file path.

    Raises ValueError with a one-line reason that never repeats a password.
    """
    text = raw.strip()
    if not text:
        raise ValueError("must not be empty")
    if _SCHEME.match(text) or _SCHEME_WITHOUT_SLASHES.match(text):
        return PostgresURL(text)
    path = Path(raw).expanduser()
    if path.is_dir():
        raise ValueError(f"{raw!r} is a folder; give a file path")
    return path


def describe(location: DatabaseLocation) -> str:
    """The database as a message names it: the file path, or the URL without its password."""
    return location.masked if isinstance(location, PostgresURL) else str(location)


def _check(dsn: str) -> None:
    """Raise ValueError when dsn is not a postgresql:// URL asyncpg can read."""
    scheme = _SCHEME.match(dsn)
    if scheme is None:
        raise ValueError(f"write the URL as postgresql://user@host:5432/dbname; {HINT}")
    if scheme.group(1).lower() not in SCHEMES:
        raise ValueError(f"{scheme.group(1)}:// is not a database codexgate supports; {HINT}")
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        # Unbalanced brackets or a bracketed host that is no IPv6 address.
        raise ValueError("an IPv6 host goes in brackets, such as [::1]:5432") from None
    userinfo, at, hostspec = parts.netloc.partition("@")
    if not at:
        hostspec = userinfo
    # A password with a raw '/', '?', '#' or '@' would move part of itself out of the userinfo,
    # into the host or the database name, where messages show it.
    if "@" in hostspec or (not at and "@" in parts.path + parts.fragment):
        raise ValueError(_ENCODE_HINT)
    if hostspec:
        for spec in hostspec.split(","):
            _check_host(spec)
    if parts.query:
        try:
            query = urllib.parse.parse_qs(parts.query, strict_parsing=True)
        except ValueError:
            raise ValueError(
                f"the part after ? must be name=value pairs joined by & ({_ENCODE_HINT})"
            ) from None
        for port in query.get("port", [])[-1:]:
            for item in port.split(","):
                _check_port(item)


def _check_host(spec: str) -> None:
    """Raise ValueError when one entry of the URL's host list is not host[:port] or [v6][:port]."""
    if not spec:
        raise ValueError("the host list has an empty entry: write host1:5432,host2:5432")
    if spec.startswith("[") and _BRACKETED.fullmatch(spec) is None:
        raise ValueError("an IPv6 host goes in brackets, such as [::1]:5432")
    _, port = _split_host(spec)
    if port:
        _check_port(port)


def _split_host(spec: str) -> tuple[str, str]:
    """host[:port], [v6]:port or a socket folder as (host, port or ""), percent-decoded."""
    if spec.startswith("/"):
        return spec, ""
    bracketed = _BRACKETED.fullmatch(spec)
    if bracketed is not None:
        host, port = bracketed.group(1), bracketed.group(2) or ""
    else:
        host, _, port = spec.partition(":")
    return urllib.parse.unquote(host), urllib.parse.unquote(port)


def _check_port(port: str) -> None:
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        # Not quoted: a password with a raw '/' puts its first part where the port goes.
        raise ValueError(f"a port must be a number from 1 to 65535 ({_ENCODE_HINT})")


def _masked(dsn: str) -> str:
    """dsn with the userinfo password and every *password query value replaced by ***."""
    scheme, separator, rest = dsn.partition("://")
    # The authority ends where urlsplit ends it: at the first '/', '?' or '#'.
    end = next((i for i, char in enumerate(rest) if char in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostspec = authority.partition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:{MASK}@{hostspec}" if colon else authority
    before_fragment, hash_sign, fragment = tail.partition("#")
    path, question, query = before_fragment.partition("?")
    if question:
        query = "&".join(_masked_pair(pair) for pair in query.split("&"))
    return f"{scheme}{separator}{authority}{path}{question}{query}{hash_sign}{fragment}"


def _masked_pair(pair: str) -> str:
    """name=value, with the value as *** when the name is password, sslpassword and the like."""
    name, equals, _ = pair.partition("=")
    if equals and urllib.parse.unquote_plus(name).lower().endswith("password"):
        return f"{name}={MASK}"
    return pair


def _where(dsn: str, environ: Mapping[str, str]) -> str:
    """host:port[,host:port...]/dbname of dsn, as libpq and asyncpg would connect."""
    parts = urllib.parse.urlsplit(dsn)
    query = {name: values[-1] for name, values in urllib.parse.parse_qs(parts.query).items()}
    userinfo, at, hostspec = parts.netloc.partition("@")
    if not at:
        userinfo, hostspec = "", userinfo
    user = (
        urllib.parse.unquote(userinfo.partition(":")[0])
        or query.get("user")
        or environ.get("PGUSER")
        or _os_user()
    )
    host_list = hostspec or query.get("host") or environ.get("PGHOST") or ""
    hosts = [_split_host(spec) for spec in host_list.split(",") if spec]
    default_ports = (query.get("port") or environ.get("PGPORT") or DEFAULT_PORT).split(",")
    shown = []
    for index, (host, port) in enumerate(hosts or [(LOCAL_SOCKET, "")]):
        port = port or default_ports[index if index < len(default_ports) else 0]
        shown.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    dbname = (
        urllib.parse.unquote(parts.path.lstrip("/"))
        or query.get("dbname")
        or query.get("database")
        or environ.get("PGDATABASE")
        or user
    )
    return f"{','.join(shown)}/{dbname}"


def _os_user() -> str:
    """The login name libpq defaults the user (and the database) to."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name anywhere (a container without a passwd entry)
        return "(user)"
