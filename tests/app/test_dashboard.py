"""The dashboard's server-rendered pages (complete with JavaScript off), their escaping, language,
sign-in redirects, and the rules the page script must keep (no inline script, no innerHTML)."""

from __future__ import annotations

import asyncio
import html
import re
import time
from pathlib import Path
from typing import Any, Final, get_args

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.core.models import LimitHit, LimitReport, Snapshot, UsageReport, Window
from codexgate.core.rows import AlertKind, NewAlert
from codexgate.dashboard import handlers as dashboard
from codexgate.dashboard import i18n, pages, views
from codexgate.keys import CONFIG, STORE
from codexgate.paths import web_dir
from tests.helpers import many_accounts as many
from tests.helpers.admin_client import ADMIN, JWTS, Admin
from tests.helpers.builders import seat_identity
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway, app_of, recorded, settled, sqlite_file, turn

# The pages read the same on both backends.
pytestmark = pytest.mark.backends("sqlite", "postgresql")

XSS: Final = "<img src=x onerror=alert(1)>"
TEMPLATES: Final = web_dir() / "templates"
STATIC: Final = web_dir() / "static"
SCRIPTS: Final = sorted(STATIC.rglob("*.js"))


async def page(admin: Admin, path: str = "", **headers: str) -> str:
    """A page's HTML, fetched with the admin token; it must be a 200 HTML answer."""
    answer = await admin.get(path, headers=headers)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"].startswith("text/html")
    return answer.body.decode()


def page_data(text: str) -> dict[str, Any]:
    """The JSON the page hands to its script."""
    match = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', text, re.S)
    assert match is not None
    data: dict[str, Any] = orjson.loads(match.group(1))
    return data


def card_of(text: str, account_id: int) -> str:
    """The HTML of one account's card."""
    match = re.search(
        rf'<article class="card" data-account-id="{account_id}".*?</article>', text, re.S
    )
    assert match is not None, f"no card for account {account_id}"
    return match.group(0)


async def with_usage(
    http: ClientSession, server: TestServer, fake: FakeUpstream, **headers: str
) -> None:
    """One proxied turn as seat_a whose headers report windows resetting in the future."""
    now = int(time.time())
    fake.response_headers.update(
        {
            "x-codex-primary-reset-at": str(now + 2 * 3600 + 1800 + 30),
            "x-codex-secondary-reset-at": str(now + 3 * 86400 + 12 * 3600 + 30),
            **headers,
        }
    )
    assert await turn(http, server, f"Bearer {JWTS['seat_a']}") == 200
    await recorded(server, 1)


# -- sign-in ------------------------------------------------------------------------------------


async def test_a_browser_without_a_session_is_sent_to_sign_in(
    http: ClientSession, server: TestServer
) -> None:
    base = f"http://127.0.0.1:{server.port}/codexgate"
    async with http.get(
        f"{base}/accounts/3?range=7d", headers={"Accept": "text/html"}, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == (
            "/codexgate/login?next=/codexgate/accounts/3%3Frange%3D7d"
        )
    # A script (no text/html in Accept) gets the API's 401.
    async with http.get(f"{base}/", allow_redirects=False) as response:
        assert response.status == 401
        assert (await response.json())["error"]["type"] == "unauthorized"


@pytest.mark.parametrize(
    ("next_path", "location"),
    [
        ("/codexgate/accounts/3?range=7d", "/codexgate/accounts/3?range=7d"),
        ("//evil.example/codexgate/", "/codexgate/"),
        ("https://evil.example/codexgate/", "/codexgate/"),
        ("/codexgate/../elsewhere", "/codexgate/"),
        ("/codexgate/\\evil", "/codexgate/"),
        ("/backend-api/codex/responses", "/codexgate/"),
    ],
)
async def test_sign_in_returns_only_to_a_page_of_ours(
    http: ClientSession, server: TestServer, next_path: str, location: str
) -> None:
    async with http.post(
        f"http://127.0.0.1:{server.port}/codexgate/login",
        data={"token": ADMIN, "next": next_path},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == location


# -- the overview -------------------------------------------------------------------------------


async def test_overview_shows_the_windows_with_countdowns_freshness_and_source(
    http: ClientSession, server: TestServer, fake: FakeUpstream, admin: Admin
) -> None:
    await with_usage(http, server, fake)
    text = await page(admin)
    card = card_of(text, 1)
    assert 'data-field="title"' in card
    assert "alice@example.com" in card
    assert 'Plan: <span data-field="plan">plus</span>' in card
    five_hour = re.search(r'<li class="window level-ok" data-window="5h".*?</li>', card, re.S)
    assert five_hour is not None
    assert "46% used" in five_hour.group(0)
    assert 'width="46.0"' in five_hour.group(0)
    # Each reset with its clock time (UTC until the script shows the reader's) and countdown.
    assert re.search(r"resets \d\d:\d\d UTC, in 2h 30m<", five_hour.group(0))
    assert re.search(r"resets (Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d:\d\d UTC, in 3d 12h<", card)
    assert "updated just now" in card
    assert "from response headers" in card
    assert 'id="kpi-accounts">1<' in text
    assert 'id="kpi-requests">1<' in text
    data = page_data(text)
    assert data["page"] == "overview"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", data["cursor"])
    assert data["thresholds"] == {"warn": 50.0, "critical": 80.0}
    assert data["messages"]["window.used"] == "{percent}% used"
    assert sum(data["activity"]["requests"]) == 1
    # What the script needs of Python's rules comes with the page, not as a copy in the script.
    assert data["rules"] == {
        "windows": ["5h", "7d", "monthly"],
        "always_shown": ["5h", "7d"],
        "main_limit": "codex",
        "stale_after_seconds": 900.0,
        "just_now_seconds": 5,
        "levels": {
            "steps": [[100.0, "full"], [80.0, "critical"], [50.0, "warn"]],
            "below": "ok",
            "unknown": "unknown",
        },
        "alert_messages": {
            kind: f"alert.{kind}"
            for kind in ("threshold", "limit_hit", "limit_reset", "forecast", "stale", "test")
        },
        "alert_severities": {
            "threshold": "warning",
            "limit_hit": "critical",
            "limit_reset": "info",
            "forecast": "warning",
            "stale": "info",
            "test": "test",
        },
        "alert_when": {
            "limit_hit": "alert.back_at",
            "threshold": "alert.resets_at",
            "forecast": "alert.resets_at",
        },
        "clock": {"time_within": 86400.0, "weekday_within": 518400.0},
        "full_percent": 100.0,
    }
    assert data["recent_alerts"] == dashboard.RECENT_ALERTS


async def test_unknown_windows_say_unknown_never_zero(admin: Admin) -> None:
    await admin.ok("POST", "api/v1/accounts", 201, json={"name": "Fresh", "token": "token-0001"})
    card = card_of(await page(admin), 1)
    assert "No usage reported yet" in card
    assert "0% used" not in card
    assert card.count(">unknown</span>") >= 2
    assert "reset time unknown" in card


async def test_remaining_view_and_configured_thresholds(
    http: ClientSession, start_gateway: StartGateway, fake: FakeUpstream
) -> None:
    server = await start_gateway(admin_token=ADMIN, warn_percent=30, critical_percent=45)
    admin = Admin(http, server)
    await with_usage(http, server, fake)
    text = await page(admin, "?view=remaining")
    card = card_of(text, 1)
    assert 'class="window level-critical" data-window="5h"' in card
    assert "54% left" in card
    assert 'width="54.0"' in card
    assert ">near limit<" in card  # the level in words, not only in colour
    assert 'class="window level-ok" data-window="7d"' in card
    assert 'id="kpi-near">1<' in text
    # The page script levels live events by the configured thresholds too.
    levels = page_data(text)["rules"]["levels"]
    assert levels["steps"] == [[100.0, "full"], [45.0, "critical"], [30.0, "warn"]]


async def test_a_hit_limit_says_so_and_when_it_comes_back(
    http: ClientSession, server: TestServer, admin: Admin
) -> None:
    store = app_of(server)[STORE]
    now = time.time()
    window = Window("primary", "5h", "length", 100.0, 300, int(now + 3600))
    report = UsageReport(
        limits=(LimitReport("codex", None, (window,)),),
        limit_hit=LimitHit("usage_limit_reached", int(now + 3600)),
    )
    await store.record([Snapshot(seat_identity("seat_a"), now, "error", report, 429)])
    text = await page(admin)
    card = card_of(text, 1)
    hit = re.search(r'<p class="limit-hit" data-field="limit-hit">.*?</p>', card, re.S)
    assert hit is not None
    assert re.search(r"Limit reached, back at \d\d:\d\d UTC \(in (59m \d+s|1h)\)<", hit.group(0))
    assert "from error response" in card
    assert 'id="kpi-at">1<' in text


def limit_section(card: str, limit_id: str) -> str:
    """The HTML of one limit's section of a card."""
    match = re.search(
        rf'<section class="limit[^"]*" data-limit-id="{limit_id}".*?</section>', card, re.S
    )
    assert match is not None, f"no {limit_id} section"
    return match.group(0)


def shown_text(html_part: str, field: str) -> str | None:
    """The text of a data-field element, None when it is hidden."""
    match = re.search(rf'<(\w+) [^>]*data-field="{field}"([^>]*)>(.*?)</\1>', html_part, re.S)
    assert match is not None, f"no {field}"
    if " hidden" in match.group(2):
        return None
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", match.group(3))).split())


async def test_the_main_limit_shows_spend_limits_reset_credits_and_the_promotion(
    http: ClientSession, server: TestServer, fake: FakeUpstream, admin: Admin
) -> None:
    now = int(time.time())
    body = orjson.loads(fake.usage_body)
    body["rate_limit_reset_credits"] = {"available_count": 3}
    body["promo"] = {"message": XSS}
    body["additional_rate_limits"] = [
        {
            "limit_name": "gpt-5.2-codex-sonic",
            "metered_feature": "codex_other",
            "rate_limit": {"primary_window": {"used_percent": 10, "limit_window_seconds": 18000,
                                              "reset_at": now + 3600}},
        }
    ]  # fmt: skip
    body["spend_control"] = {
        "reached": True,
        "reached_limit_type": "group_shared",
        "individual_limit": {"limit": "50", "used": "20", "remaining": "30", "used_percent": 40,
                             "remaining_percent": 60, "reset_at": now + 2 * 86400 + 7200 + 30},
        "group_shared_limit": {
            "group_id": "group-1",
            "group_name": XSS,
            "details": {"limit": "100", "used": "82", "remaining": "18", "used_percent": 82,
                        "remaining_percent": 18},
        },
    }  # fmt: skip
    fake.usage_body = orjson.dumps(body)
    async with http.get(
        f"http://127.0.0.1:{server.port}/backend-api/wham/usage",
        headers={"Authorization": f"Bearer {JWTS['seat_a']}"},
    ) as response:
        assert response.status == 200
        await response.read()
    await recorded(server, 1)
    text = await page(admin)
    card = card_of(text, 1)
    main = limit_section(card, "codex")
    lines = [
        " ".join(html.unescape(re.sub(r"<[^>]+>", "", line)).split())
        for line in re.findall(r'<li class="spend-limit.*?</li>', main, re.S)
    ]
    assert re.fullmatch(
        r"Spend limit: 20 of 50 · 40% · resets \w{3} \d\d:\d\d UTC, in 2d 2h", lines[0]
    ), lines
    assert lines[1] == f"Group spend limit ({XSS}): 82 of 100 · 82% · reached"  # no reset said
    assert len(lines) == 2
    assert re.search(r'<li class="spend-limit reached">[^<]*: 82 of 100 · 82% · <strong>', main)
    assert shown_text(main, "reset-credits") == "Reset credits left: 3"
    assert shown_text(main, "promo") == XSS
    assert XSS not in text  # text, never markup
    # One model's limit: none of the seat's account-wide fields; unknown credits say nothing.
    other = limit_section(card, "codex_other")
    assert shown_text(other, "spend-limits") is None
    assert shown_text(other, "reset-credits") is None
    assert shown_text(other, "promo") is None
    chinese = limit_section(card_of(await page(admin, **{"Accept-Language": "zh"}), 1), "codex")
    assert shown_text(chinese, "reset-credits") == "剩余重置次数：3"  # noqa: RUF001
    assert "组共享消费上限" in chinese


async def test_a_card_turns_stale_after_15_minutes(server: TestServer, admin: Admin) -> None:
    store = app_of(server)[STORE]
    window = Window("primary", "5h", "length", 30.0, 300, int(time.time()) + 600)
    report = UsageReport(limits=(LimitReport("codex", None, (window,)),))
    await store.record([Snapshot(seat_identity("seat_a"), time.time() - 16 * 60, "event", report)])
    card = card_of(await page(admin), 1)
    # Idle is not an error: no "stale" badge, the line says calmly when the last report came.
    assert '<section class="limit stale"' in card
    assert ">stale<" not in card
    assert re.search(r'data-field="age" title="[^"]+">last report 16m', card)
    assert "from stream event" in card


async def test_names_are_escaped_everywhere(admin: Admin) -> None:
    await admin.ok("POST", "api/v1/accounts", 201, json={"name": XSS, "token": "token-0002"})
    for path in ("", "accounts/1", "codex/dashboard"):
        text = await page(admin, path)
        assert XSS not in text
        assert html.escape(XSS, quote=False) in text or html.escape(XSS) in text


async def test_sorting_by_most_used_and_the_seed_path(
    http: ClientSession, server: TestServer, fake: FakeUpstream, admin: Admin
) -> None:
    await admin.ok("POST", "api/v1/accounts", 201, json={"name": "Aardvark", "token": "token-0003"})
    await with_usage(http, server, fake)

    def order(text: str) -> list[str]:
        return re.findall(r'<article class="card" data-account-id="\d+" data-title="([^"]*)"', text)

    assert order(await page(admin, "?sort=name")) == ["Aardvark", "alice@example.com"]
    assert order(await page(admin, "?sort=used")) == ["alice@example.com", "Aardvark"]
    assert order(await page(admin, "?sort=reset")) == ["alice@example.com", "Aardvark"]
    seed = await page(admin, "codex/dashboard?sort=used")
    assert order(seed) == ["alice@example.com", "Aardvark"]
    assert 'id="cards"' in seed


# -- many accounts: one page of cards, a summary over all of them ------------------------------


async def many_accounts(server: TestServer, count: int) -> float:
    """`count` accounts with usage (tests/helpers/many_accounts.py), plus five with odd cases."""
    path = sqlite_file(app_of(server)[CONFIG].db)
    now = time.time()
    await asyncio.to_thread(many.fill, path, count, now)
    # An empty name falls back to the email; a slot under another label counts (96 %: near).
    await asyncio.to_thread(many.add_account, path, count + 1, "", "empty@example.com")
    await asyncio.to_thread(
        many.add_usage,
        path,
        count + 1,
        "codex",
        now,
        primary_window="90m",
        primary_used_percent=96.0,
        primary_resets_at=int(now) + 50,
    )
    # A hit limit whose reset has passed is no longer hit.
    await asyncio.to_thread(many.add_account, path, count + 2, "Back again", None)
    await asyncio.to_thread(
        many.add_usage,
        path,
        count + 2,
        "codex",
        now,
        five_hour_used_percent=50.0,
        limit_hit_type="usage_limit_reached",
        limit_hit_resets_at=int(now) - 10,
    )
    # No usage at all; and a second limit family that is used up.
    await asyncio.to_thread(many.add_account, path, count + 3, "Silent", None)
    await asyncio.to_thread(many.add_account, path, count + 4, "Two families", None)
    await asyncio.to_thread(
        many.add_usage, path, count + 4, "codex", now, five_hour_used_percent=10.0
    )
    await asyncio.to_thread(
        many.add_usage, path, count + 4, "codex_other", now, seven_day_used_percent=100.0
    )
    # Used up, but its reset time has passed with no newer report: reset (inferred), not at
    # its limit, not near it.
    await asyncio.to_thread(many.add_account, path, count + 5, "Reset since", None)
    await asyncio.to_thread(
        many.add_usage,
        path,
        count + 5,
        "codex",
        now - 600,
        five_hour_used_percent=100.0,
        five_hour_resets_at=int(now) - 60,
    )
    return now


def card_ids(text: str) -> list[int]:
    """The account ids of a page's cards, in page order."""
    return [int(i) for i in re.findall(r'<article class="card" data-account-id="(\d+)"', text)]


def pager_links(text: str) -> dict[str, str]:
    """The accounts pager's links by their rel (or their text), unescaped."""
    match = re.search(r'<nav class="pager" id="accounts-pager".*?</nav>', text, re.S)
    assert match is not None, "no pager"
    links = {}
    for attributes, label in re.findall(r"<a ([^>]*)>([^<]*)</a>", match.group(0)):
        href = html.unescape(re.search(r'href="([^"]*)"', attributes).group(1))  # type: ignore[union-attr]
        rel = re.search(r'rel="([^"]*)"', attributes)
        links[rel.group(1) if rel else label.strip("«» ").lower()] = href
    return links


async def every_card(server: TestServer, now: float) -> list[views.CardView]:
    """Every account's card, built the way the overview built them before it had pages."""
    store = app_of(server)[STORE]
    latest = await store.latest_usage()
    return views.cards(await store.accounts(), latest, now, views.Thresholds(), None)


@pytest.mark.backends("sqlite")  # many_accounts writes the SQLite file
async def test_the_overview_pages_its_cards_and_counts_every_account(
    server: TestServer, admin: Admin
) -> None:
    now = await many_accounts(server, 120)
    expected = views.summary(await every_card(server, now), now, views.Thresholds())
    assert expected.accounts == 125
    assert expected.near_limit > 0
    assert expected.at_limit > 0

    first = await page(admin, "?sort=used&view=remaining")
    assert len(card_ids(first)) == dashboard.OVERVIEW_PAGE
    data = page_data(first)["accounts_page"]
    assert (data["page"], data["pages"], data["size"]) == (1, 3, 50)
    assert (data["accounts"], data["near_limit"], data["at_limit"]) == (
        expected.accounts,
        expected.near_limit,
        expected.at_limit,
    )
    assert re.search(r'id="kpi-accounts">125<', first)
    assert re.search(rf'id="kpi-near">{expected.near_limit}<', first)
    assert re.search(rf'id="kpi-at">{expected.at_limit}<', first)
    assert data["resets"][0][0] == expected.soonest_reset
    assert data["resets"][0][2] == expected.soonest_reset_account == "empty@example.com"
    assert "Page 1 of 3: accounts 1 to 50 of 125" in first

    # Plain links, JavaScript or not; each keeps the sort and the view.
    links = pager_links(first)
    assert set(links) == {"next", "last"}
    assert links["next"] == "?page=2&sort=used&view=remaining&period=24h"
    second = await page(admin, links["next"])
    assert set(pager_links(second)) == {"first", "prev", "next", "last"}
    third = await page(admin, pager_links(second)["next"])
    assert set(pager_links(third)) == {"first", "prev"}
    assert "accounts 101 to 125 of 125" in third
    shown = card_ids(first) + card_ids(second) + card_ids(third)
    assert len(card_ids(third)) == 25
    assert len(set(shown)) == 125

    # The pages put together are the order the whole list had, for every sort.
    everything = await every_card(server, now)
    for sort in views.SORTS:
        pages = [card_ids(await page(admin, f"?sort={sort}&page={n}")) for n in (1, 2, 3)]
        ordered = [card.account_id for card in views.sort_cards(everything, sort, now)]
        assert [i for ids in pages for i in ids] == ordered, sort


@pytest.mark.backends("sqlite")  # many_accounts writes the SQLite file
async def test_a_page_number_out_of_range_shows_a_page_that_exists(
    server: TestServer, admin: Admin
) -> None:
    await many_accounts(server, 60)
    for query, number in (
        ("?page=99", 2),
        ("?page=0", 1),
        ("?page=-1", 1),
        ("?page=abc", 1),
        ("?page=" + "9" * 40, 2),
        ("?page=%D9%A3", 1),  # an Arabic-Indic digit is not a page number
    ):
        text = await page(admin, query)
        assert page_data(text)["accounts_page"]["page"] == number, query
        assert len(card_ids(text)) == (15 if number == 2 else 50), query


async def test_one_page_of_accounts_has_no_pager(admin: Admin) -> None:
    await admin.ok("POST", "api/v1/accounts", 201, json={"name": "Solo", "token": "token-0004"})
    text = await page(admin)
    assert 'id="accounts-pager"' not in text
    assert page_data(text)["accounts_page"]["pages"] == 1


# -- the account page ---------------------------------------------------------------------------


async def test_account_page_draws_history_with_reset_drops_and_pages_requests(
    http: ClientSession, server: TestServer, fake: FakeUpstream, admin: Admin
) -> None:
    store = app_of(server)[STORE]
    now = time.time()
    seat = seat_identity("seat_a")
    snapshots = []
    for minutes_ago, used in ((200, 60.0), (150, 85.0), (100, 2.0), (50, 20.0)):
        window = Window("primary", "5h", "length", used, 300, int(now + 3600))
        report = UsageReport(limits=(LimitReport("codex", None, (window,)),))
        snapshots.append(Snapshot(seat, now - minutes_ago * 60, "headers", report, 200))
    await store.record(snapshots)
    for _ in range(27):
        assert await turn(http, server, f"Bearer {JWTS['seat_a']}") == 200
    await settled(server, 27)
    text = await page(admin, "accounts/1?range=24h")
    chart = re.search(r'<figure class="chart"[^>]*>.*?</figure>', text, re.S)
    assert chart is not None
    path = re.search(r'<path class="series" d="([^"]+)"', chart.group(0))
    assert path is not None
    # The reset from 85 % to 2 % is a vertical drop: V to y = 160 - 2 % of 160.
    assert "V 156.8" in path.group(1)
    assert ">5-hour window, used percent over the last 24 hours</title>" in chart.group(0)
    rows = re.findall(r"<tr data-request-id=", text)
    assert len(rows) == 25
    older = re.search(r'href="\?range=24h&amp;before=(\d+)" rel="next"', text)
    assert older is not None
    second = await page(admin, f"accounts/1?range=24h&before={older.group(1)}")
    assert len(re.findall(r"<tr data-request-id=", second)) == 2
    assert page_data(second)["live_requests"] is False


async def test_an_unknown_account_page_is_a_404_page(admin: Admin) -> None:
    answer = await admin.get("accounts/99")
    assert answer.status == 404
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "No such account" in answer.body.decode()


# -- languages ----------------------------------------------------------------------------------


async def test_language_from_accept_language_then_the_remembered_choice(admin: Admin) -> None:
    chinese = await page(admin, "", **{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert '<html lang="zh-CN">' in chinese
    assert "添加账号" in chinese
    assert "Add an account" not in chinese
    base = admin.base
    async with admin.http.get(
        f"{base}/language?set=en&next=/codexgate/accounts/1", allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/codexgate/accounts/1"
        cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{i18n.LANG_COOKIE}=en;")
    assert "Path=/codexgate" in cookie
    english = await page(
        admin,
        "",
        **{"Accept-Language": "zh-CN", "Cookie": f"{i18n.LANG_COOKIE}=en"},
    )
    assert '<html lang="en">' in english
    async with admin.http.get(
        f"{base}/language?set=xx&next=//evil.example/", allow_redirects=False
    ) as response:
        assert response.headers["Location"] == "/codexgate/"
        assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    ("accept", "cookie", "chosen"),
    [
        (None, None, "en"),
        ("zh-CN", None, "zh-CN"),
        ("zh", None, "zh-CN"),
        ("zh-Hans-CN;q=0.8, en;q=0.9", None, "en"),
        ("fr, zh;q=0.5", None, "zh-CN"),
        ("zh-TW", None, "en"),
        ("de", None, "en"),
        ("*;q=0.1, garbage;;, zh-SG;q=0.3", None, "zh-CN"),
        ("zh-CN", "en", "en"),
        ("en", "zh-CN", "zh-CN"),
        ("en", "klingon", "en"),
    ],
)
def test_negotiation(accept: str | None, cookie: str | None, chosen: str) -> None:
    assert i18n.negotiate(accept, cookie) == chosen


@pytest.mark.parametrize(
    ("seconds", "english", "chinese"),
    [
        (0, "0s", "0秒"),
        (42, "42s", "42秒"),
        (310, "5m 10s", "5分10秒"),
        (3600, "1h", "1小时"),
        (9000, "2h 30m", "2小时30分"),
        (9030, "2h 30m", "2小时30分"),
        (302400, "3d 12h", "3天12小时"),
        (-5, "0s", "0秒"),
    ],
)
def test_durations(seconds: float, english: str, chinese: str) -> None:
    assert i18n.Translator("en").duration(seconds) == english
    assert i18n.Translator("zh-CN").duration(seconds) == chinese


def _used_keys() -> set[str]:
    """Every message key the templates and the script name literally."""
    keys: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        keys.update(re.findall(r"\bt\('([a-z0-9_.]+)'", template.read_text()))
        keys.update(re.findall(r"_key='([a-z0-9_.]+)'", template.read_text()))
    script = "\n".join(path.read_text() for path in SCRIPTS)
    keys.update(re.findall(r'\bt\("([a-z0-9_.]+)"', script))
    keys.update(re.findall(r'dataset\.(?:running|done) = "([a-z0-9_.]+)"', script))
    return keys


def test_every_string_is_in_both_languages() -> None:
    known = i18n.keys()
    used = {key for key in _used_keys() if not key.endswith(".")}  # prefixes: checked below
    assert len(used) > 60
    assert used <= known, sorted(used - known)
    # Keys built from a value: every value they can take.
    families = {
        "window.": ("5h", "7d", "monthly", "used", "left", "unknown"),
        "level.": ("ok", "warn", "critical", "full", "unknown"),
        "source.": ("headers", "event", "usage_body", "error"),
        "live.": ("connecting", "live", "reconnecting", "static"),
        "duration.": ("d", "h", "m", "s", "join"),
        "period.": ("24h", "7d", "24h_long", "7d_long", "30d_long"),
    }
    for prefix, values in families.items():
        for value in values:
            assert prefix + value in known
    # Every alert kind has its message in the page's language.
    assert set(i18n.ALERT_MESSAGES) == set(get_args(AlertKind))
    assert set(i18n.ALERT_MESSAGES.values()) <= known
    english, chinese = i18n.catalog("en"), i18n.catalog("zh-CN")
    field = re.compile(r"\{[a-z_]+\}")
    for key in known:
        assert english[key].strip() or key == "duration.join", key
        assert chinese[key].strip() or key == "duration.join", key
        assert sorted(field.findall(english[key])) == sorted(field.findall(chinese[key])), key
        if key not in ("duration.join",) and re.search(r"[A-Za-z]{4}", english[key]):
            assert english[key] != chinese[key], f"{key} is not translated"


# -- the rules of the page ----------------------------------------------------------------------


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert 'src="' in tag or 'type="application/json"' in tag, (template.name, tag)
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert " style=" not in text, template.name
        assert "|safe" not in text, template.name
        assert "autoescape false" not in text, template.name


def test_no_static_file_writes_markup() -> None:
    files = [path for path in STATIC.rglob("*") if path.is_file()]
    assert STATIC / "js" / "main.js" in files
    forbidden = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(")
    for path in files:
        text = path.read_text(errors="replace")
        for name in (*forbidden, "new Function"):
            assert name not in text, (path.relative_to(STATIC).as_posix(), name)


async def test_pages_carry_a_strict_csp_and_static_files_are_versioned(
    http: ClientSession, admin: Admin
) -> None:
    answer = await admin.get("")
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert answer.headers["Cache-Control"] == "no-store"
    text = answer.body.decode()
    script = re.search(
        r'<script type="module" src="/codexgate/static/([0-9a-f]{12})/js/main\.js"', text
    )
    assert script is not None
    version = script.group(1)
    assert version == pages.static_version(STATIC)
    assert f'href="/codexgate/static/{version}/app.css"' in text
    # The entry and the modules it imports by relative URL, all from this release, kept for good.
    for name in ("js/main.js", "js/text.js", "app.css"):
        served = await admin.call("GET", f"static/{version}/{name}", auth=None)
        assert served.status == 200, name
        assert served.body == (STATIC / name).read_bytes()
        assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src 'self';" in served.headers["Content-Security-Policy"]
    assert served.headers["Content-Type"].startswith("text/css")
    module = await admin.call("GET", f"static/{version}/js/feed.js", auth=None)
    # A module script runs only when served with a JavaScript media type (nosniff).
    assert re.match(r"(text|application)/javascript", module.headers["Content-Type"])
    # Another release's files are not this one's; the unversioned path stays for a transition.
    assert (await admin.call("GET", "static/0123456789ab/js/main.js", auth=None)).status == 404
    assert (await admin.call("GET", f"static/{version}/js", auth=None)).status == 404
    unversioned = await admin.call("GET", "static/js/main.js", auth=None)
    assert unversioned.status == 200
    assert "immutable" not in unversioned.headers.get("Cache-Control", "")


def test_a_static_path_never_leaves_the_static_folder() -> None:
    folder = STATIC.resolve()
    assert pages.file_under(folder, "js/main.js") == folder / "js" / "main.js"
    assert pages.file_under(folder, "../templates/base.html") is None
    assert pages.file_under(folder, "/etc/passwd") is None
    assert pages.file_under(folder, "js") is None


def test_the_static_version_changes_with_any_file(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "main.js").write_text("a")
    first = pages.static_version(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    (tmp_path / "js" / "text.js").write_text("")
    second = pages.static_version(tmp_path)
    (tmp_path / "js" / "text.js").write_text("b")
    assert len({first, second, pages.static_version(tmp_path)}) == 3


async def test_recent_alerts_read_in_the_pages_language(server: TestServer, admin: Admin) -> None:
    store = app_of(server)[STORE]
    now = time.time()
    fired = [
        NewAlert(
            at=now - 5,
            kind="threshold",
            message="english only",
            account="Ops seat",
            window="5h",
            used_percent=91.5,
            threshold=90.0,
        ),
        NewAlert(at=now - 4, kind="limit_hit", message="english only", account="Ops seat"),
        NewAlert(at=now - 3, kind="stale", message="english only", account=None),
    ]
    await store.record_alerts(fired, [], [])
    english = html.unescape(re.sub(r"<[^>]+>", "", await page(admin)))  # the text people read
    assert "Ops seat: 5-hour window at 91.5% (crossed 90%)" in english
    assert "Ops seat: limit reached" in english
    assert "unnamed: no new usage data" in english
    assert "english only" not in english
    chinese = html.unescape(
        re.sub(r"<[^>]+>", "", await page(admin, "", **{"Accept-Language": "zh-CN"}))
    )
    assert "Ops seat：已达上限" in chinese  # noqa: RUF001 - Chinese punctuation
    assert "91.5%（超过 90%）" in chinese  # noqa: RUF001
