"""POST api/v1/accounts/{id}/refresh ("Refresh now"), and each account's `refresh` state."""

from __future__ import annotations

import math
from collections.abc import Iterable

from aiohttp import hdrs, web

from codexgate.api.common import account_of, json_response
from codexgate.api.errors import ApiError, error_response
from codexgate.api.schemas import RefreshResult, refresh_json
from codexgate.core.refresh import REFRESH_OFF, RefreshStatus
from codexgate.core.rows import AccountRow, LatestUsageRow
from codexgate.keys import REFRESH, STORE
from codexgate.services.refresh import NoToken, TooSoon

REFRESH_OFF_MESSAGE = (
    "idle refresh is off: start codexgate with --refresh-idle on (CODEXGATE_REFRESH_IDLE) to "
    "let it ask the upstream for an account's usage"
)
NO_CREDENTIAL_MESSAGE = (
    "codexgate holds no unexpired access token of this account: it keeps one, in memory only, "
    "from traffic the upstream accepted (a JWT with an expiry), until it expires or codexgate "
    "stops; send a request through the gateway with this account, then try again"
)


def refresh_status(
    app: web.Application, account: AccountRow, latest: Iterable[LatestUsageRow]
) -> RefreshStatus:
    """The account's refresh state; its newest data is the newest of its latest rows."""
    refresh = app.get(REFRESH)
    if refresh is None:
        return REFRESH_OFF
    newest = max((row.usage.confirmed_at for row in latest), default=None)
    return refresh.status(account, newest)


async def refresh_account(request: web.Request) -> web.Response:
    """POST accounts/{id}/refresh: ask the upstream for the account's usage now."""
    account = await account_of(request, request.match_info["id"])
    refresh = request.app.get(REFRESH)
    if refresh is None:
        raise ApiError(409, "refresh_off", REFRESH_OFF_MESSAGE)
    try:
        outcome = await refresh.refresh_now(account)
    except NoToken:
        raise ApiError(409, "no_token", NO_CREDENTIAL_MESSAGE) from None
    except TooSoon as exc:
        seconds = max(1, math.ceil(exc.retry_after))
        return error_response(
            429,
            "too_soon",
            f"this account was just refreshed by hand; try again in {seconds} s",
            headers={hdrs.RETRY_AFTER: str(seconds)},
        )
    latest = await request.app[STORE].latest_usage(account.id)
    answer: RefreshResult = {
        "result": outcome.result,
        "upstream_status": outcome.upstream_status,
        "refresh": refresh_json(refresh_status(request.app, account, latest)),
    }
    return json_response(answer)
