"""GET api/v1/use-next?accounts=…: the "most left" order of a page's accounts, which the overview
uses to re-sort its cards live; it must be the order a reload of `?sort=left` shows them in."""

from __future__ import annotations

import asyncio
import random
import re
import time

from aiohttp.test_utils import TestServer

from codexgate.api.use_next import MAX_ORDERED
from codexgate.core.models import LimitReport, Snapshot, UsageReport, Window
from codexgate.core.use_next import most_left
from codexgate.dashboard import handlers as dashboard
from codexgate.keys import CONFIG, STORE
from tests.helpers import many_accounts as many
from tests.helpers.admin_client import Admin, assert_envelope
from tests.helpers.builders import seat_identity
from tests.helpers.gateway import app_of, sqlite_file

ACCOUNTS = 120


def card_ids(text: str) -> list[int]:
    return [int(i) for i in re.findall(r'<article class="card" data-account-id="(\d+)"', text)]


async def left_page(admin: Admin, number: int) -> list[int]:
    answer = await admin.get(f"?sort=left&page={number}")
    assert answer.status == 200, answer.body
    return card_ids(answer.body.decode())


async def order_of(admin: Admin, ids: list[int]) -> list[int]:
    answer = await admin.ok("GET", "api/v1/use-next?accounts=" + ",".join(map(str, ids)))
    order: list[int] = answer["order"]
    return order


async def test_the_order_of_a_page_is_the_one_a_reload_shows(
    server: TestServer, admin: Admin
) -> None:
    path = sqlite_file(app_of(server)[CONFIG].db)
    await asyncio.to_thread(many.fill, path, ACCOUNTS, time.time())
    # One account without any usage: its room is unknown, after every known one.
    await asyncio.to_thread(many.add_account, path, ACCOUNTS + 1, "No usage yet", None)
    shuffle = random.Random(13)
    for number in (1, 2, 3):
        page = await left_page(admin, number)
        assert 0 < len(page) <= dashboard.OVERVIEW_PAGE
        asked = page[:]
        shuffle.shuffle(asked)
        assert await order_of(admin, asked) == page
    # The same as the rule itself, for any few accounts, not only a page's.
    few = shuffle.sample(range(1, ACCOUNTS + 2), 30)
    answered = await order_of(admin, few)
    wanted = set(few)
    windows = [a for a in await app_of(server)[STORE].latest_windows() if a.account_id in wanted]
    assert answered == [room.account_id for room in most_left(windows, time.time())]


async def report(server: TestServer, seat: str, five_hour: float, weekly: float) -> None:
    """A new report for a sample seat (the account is created on its first)."""
    now = time.time()
    windows = (
        Window("primary", "5h", "length", five_hour, 300, int(now + 3 * 3600)),
        Window("secondary", "7d", "length", weekly, 10080, int(now + 4 * 86400)),
    )
    snapshot = Snapshot(
        seat_identity(seat),
        now,
        "headers",
        UsageReport(limits=(LimitReport("codex", None, windows),)),
        200,
    )
    await app_of(server)[STORE].record([snapshot])


async def test_the_order_changes_with_usage_as_a_reload_does(
    server: TestServer, admin: Admin
) -> None:
    for seat, five_hour in (("seat_a", 20.0), ("seat_b", 50.0), ("personal", 80.0)):
        await report(server, seat, five_hour, 10.0)
    before = await left_page(admin, 1)
    # The roomiest account reaches its limit: it goes last, in the answer as after a reload.
    await report(server, "seat_a", 100.0, 10.0)
    after = await left_page(admin, 1)
    assert after == [*before[1:], before[0]]
    assert await order_of(admin, before) == after


async def test_order_is_null_unless_asked_and_leaves_out_unknown_ids(
    server: TestServer, admin: Admin
) -> None:
    path = sqlite_file(app_of(server)[CONFIG].db)
    await asyncio.to_thread(many.fill, path, 3, time.time())
    assert (await admin.ok("GET", "api/v1/use-next"))["order"] is None
    assert (await admin.ok("GET", "api/v1/use-next?accounts="))["order"] == []
    page = await left_page(admin, 1)
    # A deleted (or never seen) account is left out; an id given twice counts once.
    asked = [999, page[2], page[0], page[2], page[1]]
    assert await order_of(admin, asked) == page


async def test_accounts_must_be_at_most_a_page_of_ids(admin: Admin) -> None:
    assert MAX_ORDERED == dashboard.OVERVIEW_PAGE
    ids = ",".join(str(i) for i in range(1, MAX_ORDERED + 1))
    assert (await admin.ok("GET", f"api/v1/use-next?accounts={ids}"))["order"] == []
    for bad in (f"{ids},{MAX_ORDERED + 1}", "1,x", "1,,2", "-1", "0", "1&accounts=2"):
        answer = await admin.get(f"api/v1/use-next?accounts={bad}")
        assert_envelope(answer, 400, "invalid_request", "accounts")
