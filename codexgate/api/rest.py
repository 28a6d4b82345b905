"""The REST JSON API under /<prefix>/api/v1/: accounts and their latest usage, history, requests."""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import orjson
from aiohttp import hdrs, web
from multidict import MultiMapping

from codexgate.api.errors import invalid, not_found
from codexgate.capture.headers import identity_from_token
from codexgate.core.forecast import Forecast
from codexgate.core.models import TOKEN_KEY_PREFIX, Identity
from codexgate.core.rows import AccountRow, LatestUsageRow, RequestRow, UsageRow
from codexgate.core.sanitize import has_unsafe
from codexgate.core.text import is_stale, iso
from codexgate.core.windows import FIXED_WINDOWS
from codexgate.keys import ALERTS, EVENT_BUS, FORECASTS, STORE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Page sizes a client may ask for, and what it gets when it does not ask.
MAX_PAGE: Final = 1000
DEFAULT_HISTORY_PAGE: Final = 500
DEFAULT_REQUESTS_PAGE: Final = 100
# Accounts per page when GET accounts is given a limit or cursor (without either: all of them).
DEFAULT_ACCOUNTS_PAGE: Final = 100
# Display names: at most this many characters (code points).
MAX_NAME: Final = 100
# Why a display name with a control or bidi character is refused (API and command line).
UNSAFE_NAME: Final = (
    "the name must not contain control characters or invisible formatting "
    "(such as ESC, BEL, newlines or bidi overrides)"
)
# A bearer token longer than this is not one (ChatGPT access tokens are a few kB).
MAX_TOKEN: Final = 16384
# Ids are SQLite INTEGERs: anything larger cannot name a row.
_MAX_ID: Final = 2**63 - 1
_DIGITS: Final = re.compile(r"[0-9]{1,19}")
_BEARER: Final = re.compile(r"bearer\s+", re.IGNORECASE)
_CURSOR_ALPHABET: Final = re.compile(r"[A-Za-z0-9_-]{1,200}")


# -- JSON -------------------------------------------------------------------------------------


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """The one way codexgate answers JSON (orjson)."""
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def short_fingerprint(fingerprint: str | None) -> str | None:
    """The first 8 hex characters of a token's SHA-256: enough to tell tokens apart."""
    return None if fingerprint is None else fingerprint[:8]


def shown_key(account_key: str) -> str:
    """An account key as shown: a "token:<sha256>" key cut to its first 8 hex digits."""
    if account_key.startswith(TOKEN_KEY_PREFIX):
        return TOKEN_KEY_PREFIX + account_key[len(TOKEN_KEY_PREFIX) :][:8]
    return account_key


def account_row_json(account: AccountRow) -> dict[str, Any]:
    """An account row as the feed shows it: every field, the key and fingerprint shortened."""
    return {
        "id": account.id,
        "account_key": shown_key(account.account_key),
        "chatgpt_account_id": account.chatgpt_account_id,
        "chatgpt_user_id": account.chatgpt_user_id,
        "display_name": account.display_name,
        "email": account.email,
        "plan_type": account.plan_type,
        "token_fingerprint": short_fingerprint(account.token_fingerprint),
        "first_seen_at": account.first_seen_at,
        "last_seen_at": account.last_seen_at,
    }


# -- rendering --------------------------------------------------------------------------------


def window_json(
    used_percent: float | None,
    window_minutes: int | None,
    resets_at: int | None,
    reset_in_seconds: float | None,
) -> dict[str, Any] | None:
    """A latest window, or None when the upstream reported none of its fields."""
    if used_percent is None and window_minutes is None and resets_at is None:
        return None
    return {
        "used_percent": used_percent,
        "window_minutes": window_minutes,
        "resets_at": resets_at,
        "resets_at_iso": iso(resets_at),
        "reset_in_seconds": reset_in_seconds,
    }


def _history_windows(row: UsageRow) -> dict[str, dict[str, Any] | None]:
    """The classified windows of a history row, by label: as reported then, no countdown."""
    windows: dict[str, dict[str, Any] | None] = dict.fromkeys(FIXED_WINDOWS)
    for window in row.windows():
        if window.label in windows:
            windows[window.label] = {
                "used_percent": window.used_percent,
                "window_minutes": window.window_minutes,
                "resets_at": window.resets_at,
                "resets_at_iso": iso(window.resets_at),
            }
    return windows


def _slot(
    label: str | None,
    classified_by: str | None,
    used_percent: float | None,
    window_minutes: int | None,
    resets_at: int | None,
) -> dict[str, Any] | None:
    """A raw primary/secondary slot of a history row, with the label it was classified as."""
    if label is None and used_percent is None and window_minutes is None and resets_at is None:
        return None
    return {
        "window": label,
        "classified_by": classified_by,
        "used_percent": used_percent,
        "window_minutes": window_minutes,
        "resets_at": resets_at,
        "resets_at_iso": iso(resets_at),
    }


def _credits(row: UsageRow) -> dict[str, Any] | None:
    credits = (row.credits_has_credits, row.credits_unlimited, row.credits_balance)
    if all(value is None for value in credits):
        return None
    return {
        "has_credits": row.credits_has_credits,
        "unlimited": row.credits_unlimited,
        "balance": row.credits_balance,
    }


def _limit_hit(row: UsageRow, reset_in_seconds: float | None) -> dict[str, Any] | None:
    if row.limit_hit_type is None:
        return None
    return {
        "type": row.limit_hit_type,
        "resets_at": row.limit_hit_resets_at,
        "resets_at_iso": iso(row.limit_hit_resets_at),
        "reset_in_seconds": reset_in_seconds,
    }


def _spend_control(row: UsageRow, reset_in_seconds: float | None) -> dict[str, Any] | None:
    fields = (
        row.spend_control_reached,
        row.spend_limit,
        row.spend_used,
        row.spend_used_percent,
        row.spend_resets_at,
        row.spend_source,
    )
    if all(value is None for value in fields):
        return None
    return {
        "reached": row.spend_control_reached,
        "limit": row.spend_limit,
        "used": row.spend_used,
        "used_percent": row.spend_used_percent,
        "resets_at": row.spend_resets_at,
        "resets_at_iso": iso(row.spend_resets_at),
        "reset_in_seconds": reset_in_seconds,
        "source": row.spend_source,
    }


def latest_windows(latest: LatestUsageRow) -> dict[str, dict[str, Any] | None]:
    """The classified windows of a latest row, by label; None where nothing was reported."""
    windows: dict[str, dict[str, Any] | None] = dict.fromkeys(FIXED_WINDOWS)
    for window in latest.usage.windows():
        if window.label in windows:
            windows[window.label] = window_json(
                window.used_percent,
                window.window_minutes,
                window.resets_at,
                latest.reset_in_seconds(window.label),
            )
    return windows


def forecast_json(result: Forecast) -> dict[str, Any]:
    """A window's forecast: burn rate, projected exhaustion, and the pace that would last."""
    return {
        "status": result.status,
        "rate_per_hour": _rounded(result.rate_per_hour),
        **_iso_pair("exhausts_at", _rounded(result.exhausts_at)),
        "runs_out_before_reset_seconds": _rounded(result.runs_out_before_reset_seconds),
        "sustainable_rate_per_hour": _rounded(result.sustainable_rate_per_hour),
        **_iso_pair("since_reset", _rounded(result.since_reset)),
        "samples": result.samples,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _iso_pair(name: str, value: float | None) -> dict[str, Any]:
    return {name: value, f"{name}_iso": iso(value)}


def limit_json(
    latest: LatestUsageRow, forecasts: Mapping[str, Forecast] | None = None
) -> dict[str, Any]:
    """One limit family's newest values, with their source, how old they are, and forecasts."""
    row = latest.usage
    windows = latest_windows(latest)
    if forecasts is not None:
        for label, window in windows.items():
            if window is not None:
                found = forecasts.get(label)
                window["forecast"] = None if found is None else forecast_json(found)
    return {
        "limit_id": row.limit_id,
        "limit_name": row.limit_name,
        "source": row.source,
        "captured_at": row.captured_at,
        "captured_at_iso": iso(row.captured_at),
        "confirmed_at": row.confirmed_at,
        "confirmed_at_iso": iso(row.confirmed_at),
        "age_seconds": latest.age_seconds,
        "stale": is_stale(latest.age_seconds),
        "http_status": row.http_status,
        "plan_type": row.plan_type,
        "active_limit": row.active_limit,
        "rate_limit_reached_type": row.rate_limit_reached_type,
        "windows": windows,
        "limit_hit": _limit_hit(row, latest.limit_hit_reset_in_seconds),
        "credits": _credits(row),
        "spend_control": _spend_control(row, latest.spend_reset_in_seconds),
    }


ForecastTable = Mapping[tuple[int, str], Mapping[str, Forecast]]


def account_json(
    account: AccountRow, latest: Iterable[LatestUsageRow], forecasts: ForecastTable
) -> dict[str, Any]:
    """An account with the newest values of each of its limit families (never its token)."""
    return {
        "id": account.id,
        "account_key": shown_key(account.account_key),
        "display_name": account.display_name,
        "email": account.email,
        "plan_type": account.plan_type,
        "token_fingerprint": short_fingerprint(account.token_fingerprint),
        "first_seen_at": account.first_seen_at,
        "first_seen_at_iso": iso(account.first_seen_at),
        "last_seen_at": account.last_seen_at,
        "last_seen_at_iso": iso(account.last_seen_at),
        "limits": [
            limit_json(row, forecasts.get((row.usage.account_id, row.usage.limit_id), {}))
            for row in latest
        ],
    }


def history_json(row: UsageRow) -> dict[str, Any]:
    """One history row: what one report said about one limit family."""
    return {
        "id": row.id,
        "limit_id": row.limit_id,
        "limit_name": row.limit_name,
        "source": row.source,
        "captured_at": row.captured_at,
        "captured_at_iso": iso(row.captured_at),
        "confirmed_at": row.confirmed_at,
        "confirmed_at_iso": iso(row.confirmed_at),
        "http_status": row.http_status,
        "plan_type": row.plan_type,
        "active_limit": row.active_limit,
        "rate_limit_reached_type": row.rate_limit_reached_type,
        "windows": _history_windows(row),
        "slots": {
            "primary": _slot(
                row.primary_window,
                row.primary_classified_by,
                row.primary_used_percent,
                row.primary_window_minutes,
                row.primary_resets_at,
            ),
            "secondary": _slot(
                row.secondary_window,
                row.secondary_classified_by,
                row.secondary_used_percent,
                row.secondary_window_minutes,
                row.secondary_resets_at,
            ),
        },
        "over_secondary_limit_percent": row.over_secondary_limit_percent,
        "limit_hit": None
        if row.limit_hit_type is None
        else {
            "type": row.limit_hit_type,
            "resets_at": row.limit_hit_resets_at,
            "resets_at_iso": iso(row.limit_hit_resets_at),
        },
        "credits": _credits(row),
        "spend_control": _history_spend(row),
    }


def _history_spend(row: UsageRow) -> dict[str, Any] | None:
    spend = _spend_control(row, None)
    if spend is not None:
        del spend["reset_in_seconds"]
    return spend


def request_json(row: RequestRow) -> dict[str, Any]:
    """One request-log row."""
    return {
        "id": row.id,
        "started_at": row.started_at,
        "started_at_iso": iso(row.started_at),
        "account_id": row.account_id,
        "method": row.method,
        "path": row.path,
        "transport": row.transport,
        "status": row.status,
        "model": row.model,
        "upstream_request_id": row.upstream_request_id,
        "response_id": row.response_id,
        "ttfb_ms": row.ttfb_ms,
        "duration_ms": row.duration_ms,
        "bytes_in": row.bytes_in,
        "bytes_out": row.bytes_out,
        "input_tokens": row.input_tokens,
        "cached_input_tokens": row.cached_input_tokens,
        "output_tokens": row.output_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "total_tokens": row.total_tokens,
        "error_code": row.error_code,
    }


# -- input ------------------------------------------------------------------------------------


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


def _range(query: MultiMapping[str]) -> tuple[float | None, float | None]:
    """since and until; until before since is an error."""
    since = parse_time(query, "since")
    until = parse_time(query, "until")
    if since is not None and until is not None and until < since:
        raise invalid("until", "until must not be before since")
    return since, until


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
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME:
        raise invalid(field, f"{field} must be a string of 1 to {MAX_NAME} characters, or null")
    if has_unsafe(value):
        raise invalid(field, f"{field}: {UNSAFE_NAME}")
    return True, value


def parse_token(body: Mapping[str, Any]) -> Identity:
    """The identity of the body's token, by the same rules as a request's bearer token."""
    token = body.get("token")
    if token is None:
        raise invalid("token", "token is required: the account's ChatGPT access token")
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise invalid("token", f"token must be a string of at most {MAX_TOKEN} characters")
    # People paste the header value; the token is what follows "Bearer ".
    token = token.strip()
    scheme = _BEARER.match(token)
    if scheme is not None:
        token = token[scheme.end() :]
    identity = identity_from_token("Bearer " + token, None)
    if identity is None:
        raise invalid("token", "token must not be empty")
    return identity


# -- handlers ---------------------------------------------------------------------------------


def accounts_changed(request: web.Request) -> None:
    """Tell the live feed that an account was written outside the recorder (it reads the log)."""
    bus = request.app.get(EVENT_BUS)
    if bus is not None:
        bus.notify()
    engine = request.app.get(ALERTS)
    if engine is not None:
        engine.names_changed()


async def account_of(request: web.Request, raw: str | None) -> AccountRow:
    """The account an id names, or a 404."""
    account_id = parse_id(raw)
    account = None if account_id is None else await request.app[STORE].account(account_id)
    if account is None:
        raise not_found(f"no account with id {raw!r}"[:120])
    return account


async def render_account(request: web.Request, account: AccountRow) -> dict[str, Any]:
    """An account with its latest usage and forecasts, read now."""
    latest = await request.app[STORE].latest_usage(account.id)
    forecasts = await request.app[FORECASTS].of_rows(latest, time.time())
    return account_json(account, latest, forecasts)


async def list_accounts(request: web.Request) -> web.Response:
    """GET accounts: every account with its latest usage, by id; a page of them with limit."""
    store = request.app[STORE]
    query = request.query
    raw_cursor = query_one(query, "cursor")
    next_cursor = None
    if raw_cursor is None and query_one(query, "limit") is None:
        # Without paging, as before: everything, in one answer.
        accounts = await store.accounts()
        latest = await store.latest_usage()
    else:
        limit = parse_limit(query, DEFAULT_ACCOUNTS_PAGE)
        after = 0
        if raw_cursor is not None:
            parts = decode_cursor(raw_cursor, "a")
            if len(parts) != 1 or not isinstance(parts[0], int):
                raise invalid("cursor", "cursor is not one this list gave out; start without it")
            after = parts[0]
        accounts = await store.accounts_after(after, limit + 1)  # one more: is there a next?
        if len(accounts) > limit:
            accounts = accounts[:limit]
            next_cursor = encode_cursor("a", accounts[-1].id)
        latest = await store.latest_usage_of([account.id for account in accounts])
    forecasts = await request.app[FORECASTS].of_rows(latest, time.time())
    by_account: dict[int, list[LatestUsageRow]] = {}
    for row in latest:
        by_account.setdefault(row.usage.account_id, []).append(row)
    return json_response(
        {
            "accounts": [account_json(a, by_account.get(a.id, ()), forecasts) for a in accounts],
            "next_cursor": next_cursor,
        }
    )


async def get_account(request: web.Request) -> web.Response:
    """GET accounts/{id}."""
    account = await account_of(request, request.match_info["id"])
    return json_response(await render_account(request, account))


async def create_account(request: web.Request) -> web.Response:
    """POST accounts {name?, token}: register a seat by its token; the token is not kept."""
    body = await read_object(request)
    check_fields(body, ("name", "display_name", "token"))
    _, name = parse_name(body, "name", "display_name")
    identity = parse_token(body)
    account, created = await request.app[STORE].create_account(identity, name, time.time())
    accounts_changed(request)
    response = json_response(await render_account(request, account), status=201 if created else 200)
    if created:
        response.headers[hdrs.LOCATION] = f"{request.path}/{account.id}"
    return response


async def update_account(request: web.Request) -> web.Response:
    """PATCH accounts/{id} {display_name}: rename (null clears the name)."""
    account = await account_of(request, request.match_info["id"])
    body = await read_object(request)
    check_fields(body, ("display_name", "name"))
    given, name = parse_name(body, "display_name", "name")
    if not given:
        raise invalid("display_name", "display_name is required (a string, or null to clear)")
    updated = await request.app[STORE].update_account(account.id, display_name=name)
    if updated is None:  # deleted in between
        raise not_found(f"no account with id {account.id}")
    accounts_changed(request)
    return json_response(await render_account(request, updated))


async def delete_account(request: web.Request) -> web.Response:
    """DELETE accounts/{id}: the account, its history and its requests."""
    account = await account_of(request, request.match_info["id"])
    if not await request.app[STORE].delete_account(account.id):
        raise not_found(f"no account with id {account.id}")
    accounts_changed(request)
    return web.Response(status=204)


async def account_history(request: web.Request) -> web.Response:
    """GET accounts/{id}/history: usage rows oldest first, a page at a time."""
    account = await account_of(request, request.match_info["id"])
    query = request.query
    limit_id = query_one(query, "limit_id")
    if limit_id is not None and not 1 <= len(limit_id) <= 200:
        raise invalid("limit_id", "limit_id must be 1 to 200 characters")
    window = query_one(query, "window")
    if window is not None and window not in FIXED_WINDOWS:
        raise invalid("window", f"window must be one of {', '.join(FIXED_WINDOWS)}")
    since, until = _range(query)
    limit = parse_limit(query, DEFAULT_HISTORY_PAGE)
    raw_cursor = query_one(query, "cursor")
    after: tuple[float, int] | None = None
    if raw_cursor is not None:
        parts = decode_cursor(raw_cursor, "h")
        if len(parts) != 2 or not isinstance(parts[1], int):
            raise invalid("cursor", "cursor is not one this list gave out; start without it")
        after = (float(parts[0]), parts[1])
    rows = await request.app[STORE].history_page(
        account.id,
        limit_id=limit_id,
        window=window,
        since=since,
        until=until,
        after=after,
        limit=limit + 1,  # one more tells whether another page follows
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor("h", last.captured_at, last.id)
    return json_response({"items": [history_json(row) for row in page], "next_cursor": next_cursor})


async def _requests_page(request: web.Request, account_id: int | None) -> web.Response:
    """A page of the request log, newest first."""
    query = request.query
    since, until = _range(query)
    limit = parse_limit(query, DEFAULT_REQUESTS_PAGE)
    raw_cursor = query_one(query, "cursor")
    before_id: int | None = None
    if raw_cursor is not None:
        parts = decode_cursor(raw_cursor, "r")
        if len(parts) != 1 or not isinstance(parts[0], int):
            raise invalid("cursor", "cursor is not one this list gave out; start without it")
        before_id = parts[0]
    rows = await request.app[STORE].requests(
        account_id=account_id, since=since, until=until, before_id=before_id, limit=limit + 1
    )
    page = rows[:limit]
    next_cursor = encode_cursor("r", page[-1].id) if len(rows) > limit else None
    return json_response({"items": [request_json(row) for row in page], "next_cursor": next_cursor})


async def account_requests(request: web.Request) -> web.Response:
    """GET accounts/{id}/requests: the account's requests, newest first."""
    account = await account_of(request, request.match_info["id"])
    return await _requests_page(request, account.id)


async def list_requests(request: web.Request) -> web.Response:
    """GET requests: every request (or one account's), newest first."""
    raw = query_one(request.query, "account_id")
    account_id = None
    if raw is not None:
        account_id = parse_id(raw)
        if account_id is None:
            raise invalid("account_id", "account_id must be a positive whole number")
    return await _requests_page(request, account_id)


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


def routes(prefix: str) -> Sequence[tuple[str, Mapping[str, Handler]]]:
    """The API's paths and their handlers by method."""
    base = f"/{prefix}/api/v1"
    return (
        (f"{base}/accounts", {hdrs.METH_GET: list_accounts, hdrs.METH_POST: create_account}),
        (
            f"{base}/accounts/{{id}}",
            {
                hdrs.METH_GET: get_account,
                hdrs.METH_PATCH: update_account,
                hdrs.METH_DELETE: delete_account,
            },
        ),
        (f"{base}/accounts/{{id}}/history", {hdrs.METH_GET: account_history}),
        (f"{base}/accounts/{{id}}/requests", {hdrs.METH_GET: account_requests}),
        (f"{base}/requests", {hdrs.METH_GET: list_requests}),
    )


def add_routes(app: web.Application, prefix: str) -> None:
    """Register the API; before the admin catch-all and the proxy's."""
    for path, handlers in routes(prefix):
        add_resource(app, path, handlers)
