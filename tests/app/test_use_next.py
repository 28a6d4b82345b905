"""The account to use next over HTTP: GET api/v1/use-next, the overview's badge and summary, the
"most left" sort, and its cost with ten thousand accounts."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import orjson
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.core.models import LimitReport, Snapshot, UsageReport, Window
from codexgate.core.use_next import most_left
from codexgate.dashboard import handlers as dashboard
from codexgate.keys import CONFIG, STORE
from tests.helpers import many_accounts as many
from tests.helpers.admin_client import JWTS, Admin
from tests.helpers.builders import seat_identity
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import app_of, recorded, sqlite_file, turn

# (seat, display name, 5h used, weekly used): at its limit, nearly used, with room.
SEATS = (
    ("seat_b", "Exhausted", 100.0, 40.0),
    ("personal", "Nearly used", 90.0, 30.0),
    ("seat_a", "Roomy", 20.0, 30.0),
)


async def seed(server: TestServer, seats: tuple[tuple[str, str, float, float], ...]) -> None:
    store = app_of(server)[STORE]
    now = time.time()
    for seat, name, five_hour, weekly in seats:
        windows = (
            Window("primary", "5h", "length", five_hour, 300, int(now + 3 * 3600)),
            Window("secondary", "7d", "length", weekly, 10080, int(now + 4 * 86400)),
        )
        report = UsageReport(limits=(LimitReport("codex", None, windows),))
        await store.record([Snapshot(seat_identity(seat), now - 30, "headers", report, 200)])
        account = next(a for a in await store.accounts() if a.display_name is None)
        await store.update_account(account.id, display_name=name)


def card_ids(text: str) -> list[int]:
    return [int(i) for i in re.findall(r'<article class="card" data-account-id="(\d+)"', text)]


def page_data(text: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', text, re.S)
    assert match is not None
    data: dict[str, Any] = orjson.loads(match.group(1))
    return data


async def overview(admin: Admin, query: str = "") -> str:
    answer = await admin.get(query)
    assert answer.status == 200, answer.body
    return answer.body.decode()


async def test_use_next_names_the_account_with_most_room_never_one_at_its_limit(
    server: TestServer, admin: Admin
) -> None:
    assert await admin.ok("GET", "api/v1/use-next") == {
        "account_id": None,
        "title": None,
        "room_percent": None,
        "order": None,
    }
    await seed(server, SEATS)
    answer = await admin.ok("GET", "api/v1/use-next")
    assert answer["title"] == "Roomy"
    assert answer["room_percent"] == 70.0
    # Only the one at its limit left: nobody.
    store = app_of(server)[STORE]
    for account in await store.accounts():
        if account.display_name != "Exhausted":
            await store.delete_account(account.id)
    assert (await admin.ok("GET", "api/v1/use-next"))["account_id"] is None


async def test_the_overview_marks_it_names_it_and_sorts_by_most_left(
    server: TestServer, admin: Admin
) -> None:
    await seed(server, SEATS)
    ids = {a.display_name: a.id for a in await app_of(server)[STORE].accounts()}
    text = await overview(admin, "?sort=left")
    assert card_ids(text) == [ids["Roomy"], ids["Nearly used"], ids["Exhausted"]]
    roomy = re.search(rf'data-account-id="{ids["Roomy"]}".*?</article>', text, re.S)
    assert roomy is not None
    assert re.search(r'<span class="use-next-badge" data-field="use-next"[^>]*>Use next<', roomy[0])
    others = text.replace(roomy[0], "")
    assert not re.search(r'data-field="use-next"(?![^>]*hidden)[^>]*>', others)
    assert re.search(r'id="use-next-link" href="/codexgate/accounts/\d+">Roomy</a>', text)
    data = page_data(text)
    assert data["sort"] == "left"
    assert data["use_next"]["account_id"] == ids["Roomy"]
    # The other sorts stay the store's; "left" is one of the choices.
    by_name = [ids[name] for name in sorted(ids, key=lambda name: (name or "").casefold())]
    assert card_ids(await overview(admin, "?sort=name")) == by_name
    assert '<option value="left" selected>Most left</option>' in text


async def test_most_left_pages_follow_the_rule_over_every_account(
    server: TestServer, admin: Admin
) -> None:
    path = sqlite_file(app_of(server)[CONFIG].db)
    now = time.time()
    await asyncio.to_thread(many.fill, path, 120, now)
    expected = [
        room.account_id for room in most_left(await app_of(server)[STORE].latest_windows(), now)
    ]
    shown = []
    for number in (1, 2, 3):
        shown += card_ids(await overview(admin, f"?sort=left&page={number}"))
    assert len(shown) == 120
    assert shown == expected
    assert len(card_ids(await overview(admin, "?sort=left"))) == dashboard.OVERVIEW_PAGE


async def test_the_overview_of_10000_accounts_with_the_use_next_rule_stays_quick(
    server: TestServer, admin: Admin
) -> None:
    path = sqlite_file(app_of(server)[CONFIG].db)
    await asyncio.to_thread(many.fill, path, 10_000, time.time())
    await overview(admin)  # warm the caches
    times = {}
    for query in ("?sort=left", "?sort=name", "?sort=left&page=150"):
        started = time.perf_counter()
        text = await overview(admin, query)
        times[query] = time.perf_counter() - started
        assert len(card_ids(text)) == dashboard.OVERVIEW_PAGE
    # About 0.3 s on a quiet laptop; the bound is the reliability suite's, for a busy machine.
    assert max(times.values()) < 2.0, times
    started = time.perf_counter()
    await admin.ok("GET", "api/v1/use-next")
    assert time.perf_counter() - started < 1.0


async def test_one_models_limit_reached_leaves_the_seat_to_use_next(
    http: ClientSession, server: TestServer, fake: FakeUpstream, admin: Admin
) -> None:
    back = int(time.time()) + 3600
    # seat_b: 70 % of its own limit. seat_a: 40 % of its own, and one model's limit hit (a 429
    # that names codex_other): seat_a has more room, and nothing stops it.
    fake.response_headers = {
        "x-codex-primary-used-percent": "70",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(back + 600),
    }
    assert await turn(http, server, f"Bearer {JWTS['seat_b']}") == 200
    fake.status = 429
    fake.error_body = orjson.dumps({"error": {"type": "usage_limit_reached", "resets_at": back}})
    fake.response_headers = {
        "x-codex-primary-used-percent": "40",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(back + 600),
        "x-codex-other-limit-name": "gpt-5.2-codex-sonic",
        "x-codex-active-limit": "codex_other",
    }
    assert await turn(http, server, f"Bearer {JWTS['seat_a']}") == 429
    await recorded(server, 2)
    ids = {a.email: a.id for a in await app_of(server)[STORE].accounts()}
    seat_a = ids["alice@example.com"]
    answer = await admin.ok("GET", "api/v1/use-next")
    assert (answer["account_id"], answer["room_percent"]) == (seat_a, 60.0)
    text = await overview(admin)
    assert re.search(r'id="kpi-at">0<', text)
    assert page_data(text)["use_next"]["account_id"] == seat_a
    card = re.search(rf'data-account-id="{seat_a}".*?</article>', text, re.S)
    assert card is not None
    other = re.search(r'data-limit-id="codex_other".*?</section>', card[0], re.S)
    assert other is not None
    assert re.search(r'class="limit-hit" data-field="limit-hit">', other[0])  # shown
    assert "Extra limit: gpt-5.2-codex-sonic" in other[0]
    main = re.search(r'data-limit-id="codex".*?</section>', card[0], re.S)
    assert main is not None
    assert re.search(r'class="limit-hit" data-field="limit-hit" hidden>', main[0])

    # Its own limit hit: now seat_a is at its limit, and seat_b is the one to use.
    fake.response_headers["x-codex-active-limit"] = "codex"
    assert await turn(http, server, f"Bearer {JWTS['seat_a']}") == 429
    await recorded(server, 3)
    answer = await admin.ok("GET", "api/v1/use-next")
    assert answer["account_id"] == ids["bob@example.com"]
    assert re.search(r'id="kpi-at">1<', await overview(admin))
