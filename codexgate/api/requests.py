"""GET api/v1/requests and api/v1/accounts/{id}/requests: the request log, newest first."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from codexgate.api.common import (
    account_of,
    encode_cursor,
    id_cursor,
    json_response,
    parse_account_id,
    parse_limit,
    parse_range,
)
from codexgate.api.schemas import RequestPage, request_json
from codexgate.keys import STORE

DEFAULT_REQUESTS_PAGE: Final = 100


async def _requests_page(request: web.Request, account_id: int | None) -> web.Response:
    """A page of the request log, newest first."""
    query = request.query
    since, until = parse_range(query)
    limit = parse_limit(query, DEFAULT_REQUESTS_PAGE)
    before_id = id_cursor(query, "r")
    rows = await request.app[STORE].requests(
        account_id=account_id, since=since, until=until, before_id=before_id, limit=limit + 1
    )
    page = rows[:limit]
    next_cursor = encode_cursor("r", page[-1].id) if len(rows) > limit else None
    answer: RequestPage = {"items": [request_json(row) for row in page], "next_cursor": next_cursor}
    return json_response(answer)


async def account_requests(request: web.Request) -> web.Response:
    """GET accounts/{id}/requests: the account's requests, newest first."""
    account = await account_of(request, request.match_info["id"])
    return await _requests_page(request, account.id)


async def list_requests(request: web.Request) -> web.Response:
    """GET requests: every request (or one account's), newest first."""
    return await _requests_page(request, parse_account_id(request.query))
