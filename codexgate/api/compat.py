"""The original plan's routes under /<prefix>/codex/, for scripts written against that plan.

Answers are `{"status": "success", "data": ...}`; errors add that plan's `status` and `message`
to codexgate's one envelope (`{"error": {...}}`). Keys are codexgate's account ids as strings.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from aiohttp import hdrs, web

from codexgate.api.errors import ApiError, error_envelope, invalid
from codexgate.api.rest import (
    Handler,
    account_of,
    accounts_changed,
    add_resource,
    json_response,
    latest_windows,
    parse_name,
    parse_token,
    read_object,
    short_fingerprint,
)
from codexgate.core.models import FIVE_HOUR, MONTHLY, SEVEN_DAY
from codexgate.core.rows import AccountRow, LatestUsageRow
from codexgate.core.text import iso
from codexgate.keys import STORE

# The limit family whose windows the plan's usage shape shows.
_CODEX: Final = "codex"


def _answer(handler: Handler) -> Handler:
    """Render an ApiError the plan's way: its status and message next to the envelope."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            body = error_envelope(exc.error_type, exc.message, exc.field)
            body["status"] = "not_found" if exc.status == 404 else "error"
            body["message"] = exc.message
            return json_response(body, status=exc.status)

    return wrapped


def usage_json(account: AccountRow, latest: Iterable[LatestUsageRow]) -> dict[str, Any]:
    """One account's "codex" windows in the plan's shape."""
    codex = next((row for row in latest if row.usage.limit_id == _CODEX), None)
    windows = latest_windows(codex) if codex is not None else {}
    updated_at = codex.usage.confirmed_at if codex is not None else None
    return {
        "key": str(account.id),
        "name": account.display_name,
        "email": account.email,
        "plan_type": account.plan_type,
        "five_hour": windows.get(FIVE_HOUR),
        "seven_day": windows.get(SEVEN_DAY),
        "monthly": windows.get(MONTHLY),
        "updated_at": updated_at,
        "updated_at_iso": iso(updated_at),
    }


def token_json(account: AccountRow) -> dict[str, Any]:
    """An account as the plan listed its tokens: never the token, a short fingerprint."""
    return {
        "key": str(account.id),
        "name": account.display_name,
        "email": account.email,
        "fingerprint": short_fingerprint(account.token_fingerprint),
    }


def _success(data: Any = None, *, with_data: bool = True) -> web.Response:
    """The plan's success answer."""
    return json_response(
        {"status": "success", "data": data} if with_data else {"status": "success"}
    )


@_answer
async def list_usage(request: web.Request) -> web.StreamResponse:
    """GET codex/usage: every account's windows."""
    store = request.app[STORE]
    accounts = await store.accounts()
    by_account: dict[int, list[LatestUsageRow]] = {}
    for row in await store.latest_usage():
        by_account.setdefault(row.usage.account_id, []).append(row)
    return _success([usage_json(a, by_account.get(a.id, ())) for a in accounts])


@_answer
async def get_usage(request: web.Request) -> web.StreamResponse:
    """GET codex/usage/{token_key}: one account's windows."""
    account = await account_of(request, request.match_info["token_key"])
    return _success(usage_json(account, await request.app[STORE].latest_usage(account.id)))


@_answer
async def list_tokens(request: web.Request) -> web.StreamResponse:
    """GET codex/tokens: every account."""
    return _success([token_json(account) for account in await request.app[STORE].accounts()])


@_answer
async def add_token(request: web.Request) -> web.StreamResponse:
    """POST codex/tokens {token, name?}: register the token's seat (the token is not kept)."""
    body = await read_object(request)
    _, name = parse_name(body, "name")
    identity = parse_token(body)
    account, _ = await request.app[STORE].create_account(identity, name, time.time())
    accounts_changed(request)
    return _success(token_json(account))


@_answer
async def rename_token(request: web.Request) -> web.StreamResponse:
    """PUT codex/tokens/{token_key} {name}: rename (null clears the name)."""
    account = await account_of(request, request.match_info["token_key"])
    body = await read_object(request)
    given, name = parse_name(body, "name")
    if not given:
        raise invalid("name", "name is required (a string, or null to clear)")
    updated = await request.app[STORE].update_account(account.id, display_name=name)
    if updated is None:
        raise ApiError(404, "not_found", f"no token with key {account.id}")
    accounts_changed(request)
    return _success(token_json(updated))


@_answer
async def delete_token(request: web.Request) -> web.StreamResponse:
    """DELETE codex/tokens/{token_key}: the account, its history and its requests."""
    account = await account_of(request, request.match_info["token_key"])
    if not await request.app[STORE].delete_account(account.id):
        raise ApiError(404, "not_found", f"no token with key {account.id}")
    accounts_changed(request)
    return _success(with_data=False)


def routes(prefix: str) -> Sequence[tuple[str, Mapping[str, Handler]]]:
    """The compat paths and their handlers by method."""
    base = f"/{prefix}/codex"
    return (
        (f"{base}/usage", {hdrs.METH_GET: list_usage}),
        (f"{base}/usage/{{token_key}}", {hdrs.METH_GET: get_usage}),
        (f"{base}/tokens", {hdrs.METH_GET: list_tokens, hdrs.METH_POST: add_token}),
        (
            f"{base}/tokens/{{token_key}}",
            {hdrs.METH_PUT: rename_token, hdrs.METH_DELETE: delete_token},
        ),
    )


def add_routes(app: web.Application, prefix: str) -> None:
    """Register the compat routes; before the admin catch-all and the proxy's."""
    for path, handlers in routes(prefix):
        add_resource(app, path, handlers)
