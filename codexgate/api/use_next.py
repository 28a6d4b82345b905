"""GET api/v1/use-next: the account to use now, by the "most left" rule of core/use_next.py."""

from __future__ import annotations

import time

from aiohttp import web

from codexgate.api.common import json_response
from codexgate.api.schemas import use_next_json
from codexgate.core.use_next import best
from codexgate.keys import STORE


async def get_use_next(request: web.Request) -> web.Response:
    """GET use-next: the account with the most room left now, or nulls when none may be used."""
    accounts = await request.app[STORE].latest_windows()
    return json_response(use_next_json(best(accounts, time.time())))
