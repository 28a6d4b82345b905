"""GET api/v1/use-next: the account to use now, by the "most left" rule of core/use_next.py, and
optionally the "most left" order of a few given accounts (the overview's page of cards)."""

from __future__ import annotations

import time
from typing import Final

from aiohttp import web
from multidict import MultiMapping

from codexgate.api.common import json_response, parse_id, query_one
from codexgate.api.errors import invalid
from codexgate.api.schemas import use_next_json
from codexgate.core.use_next import best, most_left
from codexgate.keys import STORE

# The most accounts one question may order: an overview page (dashboard/handlers.OVERVIEW_PAGE).
MAX_ORDERED: Final = 50


def parse_accounts(query: MultiMapping[str]) -> list[int] | None:
    """The `accounts` parameter: distinct account ids, comma-separated; None when not given."""
    raw = query_one(query, "accounts")
    if raw is None:
        return None
    parts = raw.split(",") if raw else []
    if len(parts) > MAX_ORDERED:
        raise invalid("accounts", f"accounts may name at most {MAX_ORDERED} accounts")
    ids: list[int] = []
    for part in parts:
        account_id = parse_id(part)
        if account_id is None:
            raise invalid("accounts", "accounts must be positive whole numbers, comma-separated")
        if account_id not in ids:
            ids.append(account_id)
    return ids


async def get_use_next(request: web.Request) -> web.Response:
    """GET use-next: the account with the most room left now, or nulls when none may be used.

    With `accounts`, also `order`: those of them that exist, in the "most left" order.
    """
    wanted = parse_accounts(request.query)
    accounts = await request.app[STORE].latest_windows()
    now = time.time()
    order = None
    if wanted is not None:
        asked = set(wanted)
        ranked = most_left((account for account in accounts if account.account_id in asked), now)
        order = [room.account_id for room in ranked]
    return json_response(use_next_json(best(accounts, now), order))
