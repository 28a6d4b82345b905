"""GET api/v1/accounts/{id}/history: an account's usage rows, oldest first, a page at a time."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from codexgate.api.common import (
    account_of,
    decode_cursor,
    encode_cursor,
    json_response,
    parse_limit,
    parse_range,
    query_one,
)
from codexgate.api.errors import invalid
from codexgate.api.schemas import HistoryPage, history_json
from codexgate.core.windows import FIXED_WINDOWS
from codexgate.keys import STORE

DEFAULT_HISTORY_PAGE: Final = 500


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
    since, until = parse_range(query)
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
    answer: HistoryPage = {"items": [history_json(row) for row in page], "next_cursor": next_cursor}
    return json_response(answer)
