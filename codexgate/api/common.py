"""What every JSON route shares: the JSON answer, query parameters, paging cursors, bodies, and
registering a path's methods (any other method answers 405)."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import orjson
from aiohttp import hdrs, web
from multidict import MultiMapping

from codexgate.api.errors import invalid, not_found
from codexgate.core.accounts import (
    MAX_ACCOUNT_ID,
    MAX_NAME,
    MAX_TOKEN,
    UNSAFE_NAME,
    name_fits,
    name_is_safe,
)
from codexgate.core.models import Identity
from codexgate.core.rows import AccountRow
from codexgate.keys import STORE
from codexgate.services.accounts import seat_identity

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The largest page a client may ask for.
MAX_PAGE: Final = 1000
# Ids are SQLite INTEGERs: anything larger cannot name a row.
_MAX_ID: Final = 2**63 - 1
_DIGITS: Final = re.compile(r"[0-9]{1,19}")
_CURSOR_ALPHABET: Final = re.compile(r"[A-Za-z0-9_-]{1,200}")


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """The one way codexgate answers JSON (orjson)."""
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


# -- query parameters -------------------------------------------------------------------------


def query_one(query: MultiMapping[str], name: str) -> str | None:
    """The single value of a query parameter; given twice is an error."""
    values = query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise invalid(name, f"{name} is given {len(values)} times; give it once")
    value: str = values[0]
    return value


def parse_time(query: MultiMapping[str], name: str) -> float | None:
    """A unix-seconds query parameter (a finite number), or None when absent."""
    raw = query_one(query, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise invalid(name, f"{name} must be unix seconds (a number), got {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise invalid(name, f"{name} must be a finite number, got {raw[:40]!r}")
    return value


def parse_range(query: MultiMapping[str]) -> tuple[float | None, float | None]:
    """since and until; until before since is an error."""
    since = parse_time(query, "since")
    until = parse_time(query, "until")
    if since is not None and until is not None and until < since:
        raise invalid("until", "until must not be before since")
    return since, until


def parse_limit(query: MultiMapping[str], default: int) -> int:
    """The page size: 1 to MAX_PAGE."""
    raw = query_one(query, "limit")
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise invalid("limit", f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def parse_id(raw: str | None) -> int | None:
    """A row id from a path or query string, or None when it cannot name a row."""
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= _MAX_ID else None


def parse_account_id(query: MultiMapping[str]) -> int | None:
    """The account_id filter of a list, or None when not given."""
    raw = query_one(query, "account_id")
    if raw is None:
        return None
    account_id = parse_id(raw)
    if account_id is None:
        raise invalid("account_id", "account_id must be a positive whole number")
    return account_id


# -- paging cursors ---------------------------------------------------------------------------


def encode_cursor(*parts: Any) -> str:
    """An opaque page cursor: urlsafe base64 of the JSON parts, without padding."""
    return base64.urlsafe_b64encode(orjson.dumps(parts)).rstrip(b"=").decode("ascii")


def decode_cursor(raw: str, kind: str) -> list[Any]:
    """The parts of a cursor of `kind` ("h" history, "r" requests, "a" accounts); else a 400."""
    bad = invalid("cursor", "cursor is not one this list gave out; start without it")
    if not _CURSOR_ALPHABET.fullmatch(raw):
        raise bad
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(parts, list) or not parts or parts[0] != kind:
        raise bad
    for part in parts[1:]:
        if isinstance(part, bool) or not isinstance(part, int | float):
            raise bad
        if not math.isfinite(part) or not -_MAX_ID <= part <= _MAX_ID:
            raise bad
    return parts[1:]


def id_cursor(query: MultiMapping[str], kind: str) -> int | None:
    """The row id a one-id cursor of `kind` holds, or None when no cursor is given."""
    raw = query_one(query, "cursor")
    if raw is None:
        return None
    parts = decode_cursor(raw, kind)
    if len(parts) != 1 or not isinstance(parts[0], int):
        raise invalid("cursor", "cursor is not one this list gave out; start without it")
    return parts[0]


# -- bodies -----------------------------------------------------------------------------------


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON body, which must be an object."""
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("body", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise invalid("body", "the body must be a JSON object")
    return body


def check_fields(body: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse a body with a field that is not one of allowed."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise invalid(unknown[0], f"unknown field {unknown[0][:40]!r}")


def parse_name(body: Mapping[str, Any], *names: str) -> tuple[bool, str | None]:
    """(given, display name) from the first of names in body: 1 to MAX_NAME characters or null."""
    given = [name for name in names if name in body]
    if not given:
        return False, None
    field = given[0]
    values = {orjson.dumps(body[name]) for name in given}
    if len(values) > 1:
        raise invalid(given[1], f"{' and '.join(given)} disagree; give one of them")
    value = body[field]
    if value is None:
        return True, None
    if not isinstance(value, str) or not name_fits(value):
        raise invalid(field, f"{field} must be a string of 1 to {MAX_NAME} characters, or null")
    if not name_is_safe(value):
        raise invalid(field, f"{field}: {UNSAFE_NAME}")
    return True, value


def parse_token(body: Mapping[str, Any]) -> Identity:
    """The identity of the body's token (and account_id: a ChatGPT-Account-ID), as for traffic."""
    token = body.get("token")
    if token is None:
        raise invalid("token", "token is required: the account's ChatGPT access token")
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise invalid("token", f"token must be a string of at most {MAX_TOKEN} characters")
    account_id = body.get("account_id")
    if account_id is not None and (
        not isinstance(account_id, str) or not 1 <= len(account_id) <= MAX_ACCOUNT_ID
    ):
        raise invalid(
            "account_id", f"account_id must be a string of 1 to {MAX_ACCOUNT_ID} characters"
        )
    identity = seat_identity(token, account_id)
    if identity is None:
        raise invalid("token", "token must not be empty")
    return identity


# -- rows named by the path -------------------------------------------------------------------


async def account_of(request: web.Request, raw: str | None) -> AccountRow:
    """The account an id names, or a 404."""
    account_id = parse_id(raw)
    account = None if account_id is None else await request.app[STORE].account(account_id)
    if account is None:
        raise not_found(f"no account with id {raw!r}"[:120])
    return account


# -- routes -----------------------------------------------------------------------------------


def add_resource(
    app: web.Application, path: str, handlers: Mapping[str, Handler], *, head: bool = True
) -> None:
    """Register path's methods; any other method answers 405 with Allow (not the catch-all)."""
    resource = app.router.add_resource(path)
    allowed = set(handlers)
    for method, handler in handlers.items():
        resource.add_route(method, handler)
        if method == hdrs.METH_GET and head:
            resource.add_route(hdrs.METH_HEAD, handler)
            allowed.add(hdrs.METH_HEAD)

    async def method_not_allowed(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, allowed)

    resource.add_route(hdrs.METH_ANY, method_not_allowed)
