"""The dashboard's pages: the accounts overview and one account's history and requests.

Both are complete with JavaScript off; the page script (web/static/js/) then keeps them live from
the feed, with the rules it needs handed over in the page data rather than written again. Each
page carries the feed position read before its data, so the script's first connection replays
whatever was committed while the page was being built: nothing falls between the two.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from yarl import URL

from codexgate.api.common import account_of, parse_id
from codexgate.api.errors import ApiError
from codexgate.core.rows import ActivityBucket, OverviewPage, UsageRow
from codexgate.core.text import STALE_AFTER_SECONDS
from codexgate.core.windows import FIXED_WINDOWS, WindowValue
from codexgate.dashboard import charts, i18n, views
from codexgate.dashboard.pages import render
from codexgate.keys import CONFIG, EVENT_BUS, FORECASTS, STORE
from codexgate.services import feed as events

# period: (bucket seconds, buckets) of the summary's sparklines.
PERIODS: Final = {"24h": (3600, 24), "7d": (6 * 3600, 28)}
RANGES: Final = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
VIEWS: Final = ("used", "remaining")
REQUESTS_PAGE: Final = 25
# Cards on one page of the overview; the summary strip counts every account.
OVERVIEW_PAGE: Final = 50
# The soonest resets the page hands its script, to keep the summary's "soonest reset" right
# after the first one passes (the page only knows its own cards' windows).
UPCOMING_RESETS: Final = 100
# Far beyond any real number of pages; a larger ?page= is read as the last page.
MAX_PAGE_NUMBER: Final = 1_000_000
RECENT_ALERTS: Final = 8
# Values confirmed less than this long ago read "updated just now".
JUST_NOW_SECONDS: Final = 5
# History rows read for one chart page; the charts downsample what they draw.
HISTORY_ROWS: Final = 50_000
CHART_WIDTH: Final = 600
CHART_HEIGHT: Final = 160
# A value is drawn as holding for at most this long after its sample (or its window's length).
DEFAULT_HOLD: Final = 6 * 3600


@dataclass(frozen=True, slots=True)
class Activity:
    """Requests and tokens per bucket over the summary's period, oldest bucket first."""

    since: float
    bucket_seconds: int
    requests: list[int]
    tokens: list[int]


@dataclass(frozen=True, slots=True)
class Chart:
    """One window's history chart."""

    limit_id: str
    limit_name: str | None
    window: str
    path: charts.SeriesPath
    ticks: list[tuple[float, float]]  # (x fraction, unix time)


def _choice(request: web.Request, name: str, allowed: Sequence[str], default: str) -> str:
    value = request.query.get(name, default)
    return value if value in allowed else default


def _thresholds(request: web.Request) -> views.Thresholds:
    config = request.app[CONFIG]
    return views.Thresholds(config.warn_percent, config.critical_percent)


def activity(buckets: Sequence[ActivityBucket], since: float, size: int, count: int) -> Activity:
    """Dense per-bucket lists from the store's non-empty buckets."""
    requests = [0] * count
    tokens = [0] * count
    for bucket in buckets:
        if 0 <= bucket.index < count:
            requests[bucket.index] = bucket.requests
            tokens[bucket.index] = bucket.tokens
    return Activity(since, size, requests, tokens)


def _page_number(request: web.Request) -> int:
    """?page=N (1-based); anything that is not a whole number from 1 is the first page."""
    raw = request.query.get("page", "")
    if not raw.isascii() or not raw.isdigit():
        return 1
    if len(raw) > len(str(MAX_PAGE_NUMBER)):  # int() of a huge string costs; it is past the end
        return MAX_PAGE_NUMBER
    return min(max(int(raw), 1), MAX_PAGE_NUMBER)


def _page_href(number: int, sort: str, view: str, period: str) -> str:
    """The overview's query for one page, keeping the sort, the view and the period."""
    query = {"page": str(number), "sort": sort, "view": view, "period": period}
    return str(URL.build(query=query))


def _feed_position(request: web.Request) -> str:
    return events.event_id(request.app[EVENT_BUS].cursor)


def script_rules(thresholds: views.Thresholds) -> dict[str, Any]:
    """The rules the page script applies to live events, from their one home in Python."""
    return {
        "windows": list(FIXED_WINDOWS),  # in display order, before any other label
        "always_shown": list(views.ALWAYS_SHOWN),
        "main_limit": views.MAIN_LIMIT,
        "stale_after_seconds": STALE_AFTER_SECONDS,
        "just_now_seconds": JUST_NOW_SECONDS,
        "levels": thresholds.script_levels(),
        "alert_messages": dict(i18n.ALERT_MESSAGES),
    }


async def overview(request: web.Request) -> web.Response:
    """GET /<prefix>/ (and codex/dashboard): the summary strip and one page of account cards.

    The summary counts every account in one SQL pass; only the page's cards are built, so the
    page costs the same with ten accounts as with ten thousand.
    """
    cursor = _feed_position(request)  # before the data: the feed replays anything newer
    store = request.app[STORE]
    thresholds = _thresholds(request)
    now = time.time()
    sort = _choice(request, "sort", views.SORTS, "name")
    view = _choice(request, "view", VIEWS, "used")
    period = _choice(request, "period", tuple(PERIODS), "24h")
    size, count = PERIODS[period]
    # Buckets on whole multiples of their size, so the page script can add live requests.
    since = (math.floor(now / size) - count + 1) * size
    buckets = await store.request_activity(
        since=since, until=since + size * count, bucket_seconds=size
    )
    spark = activity(buckets, since, size, count)
    number = _page_number(request)
    found = await _overview_page(request, now, thresholds, sort, number)
    pages = max(1, math.ceil(found.accounts / OVERVIEW_PAGE))
    if number > pages:  # past the end (or accounts went away): the last page
        number = pages
        found = await _overview_page(request, now, thresholds, sort, number)
    accounts = {account.id: account for account in await store.accounts_of(found.account_ids)}
    # An account deleted between the two reads is left out rather than shown empty.
    shown = [accounts[account_id] for account_id in found.account_ids if account_id in accounts]
    latest = await store.latest_usage_of(found.account_ids)
    forecasts = await request.app[FORECASTS].of_rows(latest, now)
    cards = views.cards(shown, latest, now, thresholds, forecasts)
    soonest = found.resets[0] if found.resets else None
    summary = views.Summary(
        accounts=found.accounts,
        near_limit=found.near_limit,
        at_limit=found.at_limit,
        soonest_reset=None if soonest is None else soonest.at,
        soonest_reset_account=None if soonest is None else soonest.title,
    )
    recent_alerts = await store.alerts(limit=RECENT_ALERTS)
    links = {
        name: _page_href(target, sort, view, period)
        for name, target in (
            ("first", 1),
            ("previous", number - 1),
            ("next", number + 1),
            ("last", pages),
        )
        if 1 <= target <= pages and target != number
    }
    context = {
        "cards": cards,  # in the store's order, which decided what is on this page
        "summary": summary,
        "page": number,
        "pages": pages,
        "first_shown": (number - 1) * OVERVIEW_PAGE + 1,
        "last_shown": (number - 1) * OVERVIEW_PAGE + len(cards),
        "page_links": links,
        "thresholds": thresholds,
        "now": now,
        "sort": sort,
        "view": view,
        "period": period,
        "periods": tuple(PERIODS),
        "activity": spark,
        "requests_line": charts.sparkline(spark.requests),
        "tokens_line": charts.sparkline(spark.tokens),
        "alerts": recent_alerts,
    }
    page_data = {
        "page": "overview",
        "cursor": cursor,
        "thresholds": {"warn": thresholds.warn, "critical": thresholds.critical},
        "rules": script_rules(thresholds),
        "view": view,
        "sort": sort,
        "recent_alerts": RECENT_ALERTS,
        "accounts_page": {
            "page": number,
            "pages": pages,
            "size": OVERVIEW_PAGE,
            "accounts": found.accounts,
            "near_limit": found.near_limit,
            "at_limit": found.at_limit,
            # Accounts above this id were created after the page was built.
            "max_account_id": found.max_account_id,
            "resets": [[reset.at, reset.account_id, reset.title] for reset in found.resets],
            "resets_complete": len(found.resets) < UPCOMING_RESETS,
        },
        "activity": {
            "since": spark.since,
            "bucket": spark.bucket_seconds,
            "requests": spark.requests,
            "tokens": spark.tokens,
        },
    }
    return render(request, "dashboard.html", context, page_data=page_data)


async def _overview_page(
    request: web.Request, now: float, thresholds: views.Thresholds, sort: str, number: int
) -> OverviewPage:
    return await request.app[STORE].overview(
        now=now,
        critical=thresholds.critical,
        sort=sort,
        offset=(number - 1) * OVERVIEW_PAGE,
        limit=OVERVIEW_PAGE,
        resets=UPCOMING_RESETS,
    )


def _samples(rows: Sequence[UsageRow], window: str) -> list[tuple[float, float]]:
    """(captured_at, used percent) of the rows that reported `window`, by time."""
    samples = []
    for row in rows:
        found = _window(row, window)
        if found is not None and found.used_percent is not None:
            samples.append((row.captured_at, found.used_percent))
    return samples


def _window(row: UsageRow, label: str) -> WindowValue | None:
    """The window of a row under a label, if the row reports it."""
    return next((window for window in row.windows() if window.label == label), None)


def _minutes(row: UsageRow, label: str) -> int | None:
    found = _window(row, label)
    return None if found is None else found.window_minutes


def history_charts(
    rows: Sequence[UsageRow], start: float, end: float, thresholds: views.Thresholds
) -> list[Chart]:
    """A chart per limit family and window the rows reported, the main family first."""
    by_limit: dict[str, list[UsageRow]] = {}
    for row in rows:
        by_limit.setdefault(row.limit_id, []).append(row)
    result = []
    ticks = charts.time_ticks(start, end)
    for limit_id in sorted(by_limit, key=lambda lid: (lid != views.MAIN_LIMIT, lid)):
        limit_rows = by_limit[limit_id]
        windows: list[str] = []
        for row in limit_rows:
            for reported in row.windows():
                if reported.used_percent is not None and reported.label not in windows:
                    windows.append(reported.label)
        order = {key: i for i, key in enumerate(FIXED_WINDOWS)}
        for window in sorted(windows, key=lambda key: (order.get(key, len(order)), key)):
            minutes = next(
                (m for m in (_minutes(r, window) for r in reversed(limit_rows)) if m), None
            )
            hold = minutes * 60 if minutes else DEFAULT_HOLD
            path = charts.step_path(
                _samples(limit_rows, window),
                start=start,
                end=end,
                width=CHART_WIDTH,
                height=CHART_HEIGHT,
                max_gap=hold,
            )
            name = limit_rows[-1].limit_name
            result.append(Chart(limit_id, name, window, path, ticks))
    return result


async def account_page(request: web.Request) -> web.Response:
    """GET /<prefix>/accounts/{id}: the card, the history charts and the requests table."""
    cursor = _feed_position(request)
    try:
        account = await account_of(request, request.match_info["id"])
    except ApiError:
        return render(request, "missing.html", {}, status=404)
    store = request.app[STORE]
    thresholds = _thresholds(request)
    now = time.time()
    chosen = _choice(request, "range", tuple(RANGES), "24h")
    start = now - RANGES[chosen]
    # From a little earlier, so a value reported before the range opens the line.
    rows = await store.history(account.id, since=start - DEFAULT_HOLD, limit=HISTORY_ROWS)
    before = parse_id(request.query.get("before"))
    page = await store.requests(account_id=account.id, before_id=before, limit=REQUESTS_PAGE + 1)
    latest = await store.latest_usage(account.id)
    forecasts = await request.app[FORECASTS].of_rows(latest, now)
    card = views.cards([account], latest, now, thresholds, forecasts)[0]
    context: dict[str, Any] = {
        "card": card,
        "thresholds": thresholds,
        "now": now,
        "view": _choice(request, "view", VIEWS, "used"),
        "range": chosen,
        "ranges": tuple(RANGES),
        "charts": history_charts(rows, start, now, thresholds),
        "chart_width": CHART_WIDTH,
        "chart_height": CHART_HEIGHT,
        "requests": page[:REQUESTS_PAGE],
        "older": page[REQUESTS_PAGE - 1].id if len(page) > REQUESTS_PAGE else None,
        "first_page": before is None,
    }
    page_data = {
        "page": "account",
        "account_id": account.id,
        "cursor": cursor,
        "thresholds": {"warn": thresholds.warn, "critical": thresholds.critical},
        "rules": script_rules(thresholds),
        "view": context["view"],
        "live_requests": before is None,
        "requests_page": REQUESTS_PAGE,
    }
    return render(request, "account.html", context, page_data=page_data)
