"""The dashboard's pages: the accounts overview and one account's history and requests.

Both are complete with JavaScript off; the page script (web/static/js/) then keeps them live from
the feed, with the rules it needs handed over in the page data rather than written again. Each
page carries the feed position read before its data, so the script's first connection replays
whatever was committed while the page was being built: nothing falls between the two.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from yarl import URL

from codexgate.api.common import account_of, parse_id
from codexgate.api.errors import ApiError
from codexgate.api.instances import instance_list
from codexgate.core.accounts import account_title
from codexgate.core.alerts import SEVERITIES, TEST_KIND
from codexgate.core.outlook import FULL_PERCENT
from codexgate.core.rows import AccountRow, ActivityBucket, OverviewPage, UsageRow
from codexgate.core.text import STALE_AFTER_SECONDS, clock_rules
from codexgate.core.use_next import AccountRoom, best, most_left, use_next
from codexgate.core.windows import FIXED_WINDOWS, WindowValue
from codexgate.dashboard import charts, i18n, views
from codexgate.dashboard.pages import language, render
from codexgate.keys import CONFIG, EVENT_BUS, FORECASTS, INSTANCE, REFRESH, STORE
from codexgate.services import feed as events

# period: (bucket seconds, buckets) of the summary's sparklines.
PERIODS: Final = {"24h": (3600, 24), "7d": (6 * 3600, 28)}
# The account page's chart ranges: "window" is each window's current period (start to reset),
# the others a fixed span back from now.
RANGES: Final = {"window": 0, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
DEFAULT_RANGE: Final = "window"
# Points a chart's table alternative lists (the newest, when it changed more often).
TABLE_POINTS: Final = 200
VIEWS: Final = ("used", "remaining")
REQUESTS_PAGE: Final = 25
# Cards on one page of the overview; the summary strip counts every account.
OVERVIEW_PAGE: Final = 50
# "Most left" (core/use_next.py) is sorted in Python over every account's latest windows; the
# other sorts are the store's SQL (views.SORTS).
LEFT_SORT: Final = "left"
OVERVIEW_SORTS: Final = (*views.SORTS, LEFT_SORT)
# Accounts per page of the Manage accounts view.
MANAGE_PAGE: Final = 100
# The soonest resets the page hands its script, to keep the summary's "soonest reset" right
# after the first one passes (the page only knows its own cards' windows).
UPCOMING_RESETS: Final = 100
# Far beyond any real number of pages; a larger ?page= is read as the last page.
MAX_PAGE_NUMBER: Final = 1_000_000
RECENT_ALERTS: Final = 8
# How often the overview asks for the instances again (they are not in the feed).
INSTANCES_REFRESH_SECONDS: Final = 10
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
    start: float
    end: float
    ticks: list[charts.Tick]  # in UTC; the page script lays them out again in local time
    markers: list[charts.Marker]
    table: list[tuple[float, float]]  # (unix time, used percent) where the value changed


# (start, reset) of each (limit id, window label)'s current period, where the latest row says.
CurrentWindows = dict[tuple[str, str], tuple[float, float]]


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


def title_template(request: web.Request) -> str:
    """What the page calls an account nobody named, in its language: "Account {id}"."""
    return i18n.Translator(language(request))("card.default_title")


def with_refresh_stopped(
    request: web.Request, accounts: Sequence[AccountRow], cards: list[views.CardView]
) -> list[views.CardView]:
    """The cards, each saying why the idle refresh stopped for its account, where it did."""
    refresh = request.app.get(REFRESH)
    if refresh is None:
        return cards
    by_id = {account.id: account for account in accounts}
    marked = []
    for card in cards:
        account = by_id.get(card.account_id)
        status = None if account is None else refresh.status(account, None)
        if status is not None and status.state == "stopped":
            card = dataclasses.replace(card, refresh_stopped=status.stopped_reason)
        marked.append(card)
    return marked


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
        "alert_severities": dict(SEVERITIES),  # each kind's severity (core/alerts.py)
        "alert_when": dict(i18n.ALERT_WHEN),
        "clock": clock_rules(),  # how a reset's clock time is written (core/text.py)
        "full_percent": FULL_PERCENT,  # a window used up (core/outlook.py)
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
    sort = _choice(request, "sort", OVERVIEW_SORTS, "name")
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
    windows = await store.latest_windows()
    # Every account in "most left" order only for that sort; else just the best one.
    ranked = most_left(windows, now) if sort == LEFT_SORT else []
    chosen = use_next(ranked) if sort == LEFT_SORT else best(windows, now)
    found = await _overview_page(request, now, thresholds, sort, number, ranked)
    pages = max(1, math.ceil(found.accounts / OVERVIEW_PAGE))
    if number > pages:  # past the end (or accounts went away): the last page
        number = pages
        found = await _overview_page(request, now, thresholds, sort, number, ranked)
    accounts = {account.id: account for account in await store.accounts_of(found.account_ids)}
    # An account deleted between the two reads is left out rather than shown empty.
    shown = [accounts[account_id] for account_id in found.account_ids if account_id in accounts]
    latest = await store.latest_usage_of(found.account_ids)
    forecasts = await request.app[FORECASTS].of_rows(latest, now)
    untitled = title_template(request)
    cards = with_refresh_stopped(
        request, shown, views.cards(shown, latest, now, thresholds, forecasts, untitled)
    )
    soonest = found.resets[0] if found.resets else None
    summary = views.Summary(
        accounts=found.accounts,
        near_limit=found.near_limit,
        at_limit=found.at_limit,
        soonest_reset=None if soonest is None else soonest.at,
        soonest_reset_account=None
        if soonest is None
        else account_title(soonest.account_id, soonest.title, None, untitled),
    )
    # The newest real alerts: a test alert says nothing about an account and takes no slot.
    recent_alerts = await store.alerts(limit=RECENT_ALERTS, exclude_kinds=(TEST_KIND,))
    coordinator = request.app[INSTANCE]
    instances = await instance_list(coordinator)
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
        "use_next": _use_next_view(chosen, untitled),
        "sorts": OVERVIEW_SORTS,
        "instances": instances,
        # A panel once the database has seen another instance (rows are kept a day); one line
        # for the usual single process.
        "instances_panel": len(instances["instances"]) > 1,
        "hostname": coordinator.hostname,
        "alive_for": coordinator.options.alive_for,
    }
    page_data = {
        "page": "overview",
        "cursor": cursor,
        "thresholds": {"warn": thresholds.warn, "critical": thresholds.critical},
        "rules": script_rules(thresholds),
        "view": view,
        "sort": sort,
        "recent_alerts": RECENT_ALERTS,
        "use_next": context["use_next"],
        "accounts_page": {
            "page": number,
            "pages": pages,
            "size": OVERVIEW_PAGE,
            "accounts": found.accounts,
            "near_limit": found.near_limit,
            "at_limit": found.at_limit,
            # Accounts above this id were created after the page was built.
            "max_account_id": found.max_account_id,
            "resets": [
                [
                    reset.at,
                    reset.account_id,
                    account_title(reset.account_id, reset.title, None, untitled),
                ]
                for reset in found.resets
            ],
            "resets_complete": len(found.resets) < UPCOMING_RESETS,
        },
        "instances_refresh_seconds": INSTANCES_REFRESH_SECONDS,
        "activity": {
            "since": spark.since,
            "bucket": spark.bucket_seconds,
            "requests": spark.requests,
            "tokens": spark.tokens,
        },
    }
    return render(request, "dashboard.html", context, page_data=page_data)


def _use_next_view(chosen: AccountRoom | None, untitled: str) -> dict[str, Any] | None:
    """The account to use next as the page names it, or None when no account may be used."""
    if chosen is None:
        return None
    title = account_title(chosen.account_id, chosen.title, None, untitled)
    return {"account_id": chosen.account_id, "title": title, "room_percent": chosen.room}


async def _overview_page(
    request: web.Request,
    now: float,
    thresholds: views.Thresholds,
    sort: str,
    number: int,
    ranked: Sequence[AccountRoom],
) -> OverviewPage:
    """The store's counts and page; for "most left" the page is cut from `ranked` instead."""
    offset = (number - 1) * OVERVIEW_PAGE
    left = sort == LEFT_SORT
    found = await request.app[STORE].overview(
        now=now,
        critical=thresholds.critical,
        sort=views.SORTS[0] if left else sort,
        offset=offset,
        limit=0 if left else OVERVIEW_PAGE,
        resets=UPCOMING_RESETS,
    )
    if not left:
        return found
    page = [room.account_id for room in ranked[offset : offset + OVERVIEW_PAGE]]
    return dataclasses.replace(found, account_ids=page)


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


def current_windows(latest: Sequence[UsageRow], now: float) -> CurrentWindows:
    """The current period of every window whose reset time and length the latest rows give."""
    found: CurrentWindows = {}
    for row in latest:
        for window in row.windows():
            if window.resets_at is not None and window.window_minutes:
                span = charts.current_window(window.resets_at, window.window_minutes * 60, now)
                found[(row.limit_id, window.label)] = span
    return found


def chart_range(
    chosen: str, now: float, current: tuple[float, float] | None, minutes: int | None
) -> tuple[float, float]:
    """A chart's (start, end): the window's current period, or a fixed span back from now.

    Without a known reset the "window" range is the window's length (else a day) up to now.
    """
    if chosen != "window":
        return now - RANGES[chosen], now
    if current is not None:
        return current
    return now - (minutes * 60 if minutes else RANGES["24h"]), now


def history_charts(
    rows: Sequence[UsageRow],
    chosen: str,
    now: float,
    current: CurrentWindows,
) -> list[Chart]:
    """A chart per limit family and window the rows reported, the main family first."""
    by_limit: dict[str, list[UsageRow]] = {}
    for row in rows:
        by_limit.setdefault(row.limit_id, []).append(row)
    result = []
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
            period = current.get((limit_id, window))
            start, end = chart_range(chosen, now, period, minutes)
            samples = _samples(limit_rows, window)
            path = charts.step_path(
                samples,
                start=start,
                end=end,
                width=CHART_WIDTH,
                height=CHART_HEIGHT,
                max_gap=hold,
                until=now,
                # The current period starts at a reset: the value before it was another's.
                carry_in=not (chosen == "window" and period is not None),
            )
            result.append(
                Chart(
                    limit_id=limit_id,
                    limit_name=limit_rows[-1].limit_name,
                    window=window,
                    path=path,
                    start=start,
                    end=end,
                    ticks=charts.time_ticks(start, end, CHART_WIDTH),
                    markers=charts.markers(start, end, now, CHART_WIDTH, period),
                    table=charts.value_changes(samples, start, min(end, now), TABLE_POINTS),
                )
            )
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
    chosen = _choice(request, "range", tuple(RANGES), DEFAULT_RANGE)
    latest = await store.latest_usage(account.id)
    current = current_windows([found.usage for found in latest], now)
    starts = [start for start, _ in current.values()] if chosen == "window" else []
    earliest = min([now - (RANGES[chosen] or RANGES["24h"]), *starts])
    # From a little earlier, so a value reported before the range opens the line.
    rows = await store.history(account.id, since=earliest - DEFAULT_HOLD, limit=HISTORY_ROWS)
    before = parse_id(request.query.get("before"))
    page = await store.requests(account_id=account.id, before_id=before, limit=REQUESTS_PAGE + 1)
    forecasts = await request.app[FORECASTS].of_rows(latest, now)
    card = with_refresh_stopped(
        request,
        [account],
        views.cards([account], latest, now, thresholds, forecasts, title_template(request)),
    )[0]
    context: dict[str, Any] = {
        "card": card,
        "thresholds": thresholds,
        "now": now,
        "view": _choice(request, "view", VIEWS, "used"),
        "range": chosen,
        "ranges": tuple(RANGES),
        "charts": history_charts(rows, chosen, now, current),
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
        # What the script needs to lay each chart's time axis out in the reader's time zone.
        "chart_width": CHART_WIDTH,
        "requests_page": REQUESTS_PAGE,
    }
    return render(request, "account.html", context, page_data=page_data)


async def manage_page(request: web.Request) -> web.Response:
    """GET /<prefix>/accounts/manage: the add-account form and every account, to rename or delete.

    A page of MANAGE_PAGE accounts by id; ?after=<id> is the next page (a keyset: an account
    added or deleted meanwhile neither repeats nor shifts one).
    """
    cursor = _feed_position(request)
    after = parse_id(request.query.get("after")) or 0
    found = await request.app[STORE].accounts_after(after, MANAGE_PAGE + 1)
    shown = found[:MANAGE_PAGE]
    untitled = title_template(request)
    rows = [
        {
            "id": account.id,
            "title": account.display_name or account.email,
            "shown_title": account_title(account.id, account.display_name, account.email, untitled),
            "display_name": account.display_name,
            "email": account.email,
            "plan_type": account.plan_type,
            "last_seen_at": account.last_seen_at,
        }
        for account in shown
    ]
    context = {
        "accounts": rows,
        "next_after": shown[-1].id if len(found) > MANAGE_PAGE else None,
        "first_page": after == 0,
    }
    page_data = {
        "page": "manage",
        "cursor": cursor,
        "rules": script_rules(_thresholds(request)),
        "view": "used",
        "last_page": len(found) <= MANAGE_PAGE,
    }
    return render(request, "manage.html", context, page_data=page_data)
