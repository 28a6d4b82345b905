"""The original plan's routes under /<prefix>/codex/, for scripts written against that plan.

Answers are `{"status": "success", "data": ...}`; errors add that plan's `status` and `message`
to codexgate's one envelope (`{"error": {...}}`). Keys are codexgate's account ids as strings.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from codexgate.api.common import (
    Handler,
    account_of,
    json_response,
    parse_name,
    parse_token,
    read_object,
)
from codexgate.api.errors import ApiError, error_envelope, invalid
from codexgate.api.schemas import token_compat_json, usage_compat_json
from codexgate.core.rows import LatestUsageRow
from codexgate.keys import ACCOUNTS, STORE


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
    return _success([usage_compat_json(a, by_account.get(a.id, ())) for a in accounts])


@_answer
async def get_usage(request: web.Request) -> web.StreamResponse:
    """GET codex/usage/{token_key}: one account's windows."""
    account = await account_of(request, request.match_info["token_key"])
    return _success(usage_compat_json(account, await request.app[STORE].latest_usage(account.id)))


@_answer
async def list_tokens(request: web.Request) -> web.StreamResponse:
    """GET codex/tokens: every account."""
    return _success([token_compat_json(account) for account in await request.app[STORE].accounts()])


@_answer
async def add_token(request: web.Request) -> web.StreamResponse:
    """POST codex/tokens {token, name?}: register the token's seat (the token is not kept)."""
    body = await read_object(request)
    _, name = parse_name(body, "name")
    identity = parse_token(body)
    account, _ = await request.app[ACCOUNTS].create(identity, name)
    return _success(token_compat_json(account))


@_answer
async def rename_token(request: web.Request) -> web.StreamResponse:
    """PUT codex/tokens/{token_key} {name}: rename (null clears the name)."""
    account = await account_of(request, request.match_info["token_key"])
    body = await read_object(request)
    given, name = parse_name(body, "name")
    if not given:
        raise invalid("name", "name is required (a string, or null to clear)")
    updated = await request.app[ACCOUNTS].rename(account.id, name)
    if updated is None:
        raise ApiError(404, "not_found", f"no token with key {account.id}")
    return _success(token_compat_json(updated))


@_answer
async def delete_token(request: web.Request) -> web.StreamResponse:
    """DELETE codex/tokens/{token_key}: the account, its history and its requests."""
    account = await account_of(request, request.match_info["token_key"])
    if not await request.app[ACCOUNTS].delete(account.id):
        raise ApiError(404, "not_found", f"no token with key {account.id}")
    return _success(with_data=False)
