"""GET/POST api/v1/accounts and GET/PATCH/DELETE api/v1/accounts/{id}: accounts with their
latest usage and forecasts; changes go through the accounts service."""

from __future__ import annotations

import time
from typing import Final

from aiohttp import hdrs, web

from codexgate.api.common import (
    account_of,
    check_fields,
    decode_cursor,
    encode_cursor,
    json_response,
    parse_limit,
    parse_name,
    parse_token,
    query_one,
    read_object,
)
from codexgate.api.errors import invalid, not_found
from codexgate.api.refresh import refresh_status
from codexgate.api.schemas import Account, AccountList, account_json
from codexgate.core.rows import AccountRow, LatestUsageRow
from codexgate.keys import ACCOUNTS, FORECASTS, STORE

# Accounts per page when GET accounts is given a limit or cursor (without either: all of them).
DEFAULT_ACCOUNTS_PAGE: Final = 100


async def render_account(request: web.Request, account: AccountRow) -> Account:
    """An account with its latest usage and forecasts, read now."""
    latest = await request.app[STORE].latest_usage(account.id)
    forecasts = await request.app[FORECASTS].of_rows(latest, time.time())
    return account_json(
        account, latest, forecasts, refresh=refresh_status(request.app, account, latest)
    )


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
    answer: AccountList = {
        "accounts": [
            account_json(
                a,
                by_account.get(a.id, ()),
                forecasts,
                refresh=refresh_status(request.app, a, by_account.get(a.id, ())),
            )
            for a in accounts
        ],
        "next_cursor": next_cursor,
    }
    return json_response(answer)


async def get_account(request: web.Request) -> web.Response:
    """GET accounts/{id}."""
    account = await account_of(request, request.match_info["id"])
    return json_response(await render_account(request, account))


async def create_account(request: web.Request) -> web.Response:
    """POST accounts {name?, token}: register a seat by its token; the token is not kept."""
    body = await read_object(request)
    check_fields(body, ("name", "display_name", "token", "account_id"))
    _, name = parse_name(body, "name", "display_name")
    identity = parse_token(body)
    account, created = await request.app[ACCOUNTS].create(identity, name)
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
    updated = await request.app[ACCOUNTS].rename(account.id, name)
    if updated is None:  # deleted in between
        raise not_found(f"no account with id {account.id}")
    return json_response(await render_account(request, updated))


async def delete_account(request: web.Request) -> web.Response:
    """DELETE accounts/{id}: the account, its history and its requests."""
    account = await account_of(request, request.match_info["id"])
    if not await request.app[ACCOUNTS].delete(account.id):
        raise not_found(f"no account with id {account.id}")
    return web.Response(status=204)
