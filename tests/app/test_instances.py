"""Two gateways on one database: a feed on one instance sees, within a second, what the other
instance wrote (PostgreSQL's LISTEN/NOTIFY wakes it; on SQLite, two processes on one file during
a rolling restart, it polls the file's data_version; the rows are read after its cursor, in
commit order)."""

from __future__ import annotations

import time

import pytest
from aiohttp import ClientSession

from tests.helpers.admin_client import ADMIN, Admin
from tests.helpers.fake_upstream import FakeUpstream, sse_events
from tests.helpers.feed import SseReader, feed_url
from tests.helpers.gateway import StartGateway, turn
from tests.helpers.tokens import bearer

pytestmark = pytest.mark.backends("sqlite", "postgresql")

AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def test_a_feed_sees_what_another_instance_wrote_within_a_second(
    start_gateway: StartGateway, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.events = sse_events("stream-with-rate-limits.sse")
    first = await start_gateway(admin_token=ADMIN)
    second = await start_gateway(admin_token=ADMIN)
    response = await http.get(feed_url(second), headers=AUTH)
    assert response.status == 200
    feed = SseReader(response)
    opening = await feed.block()
    assert opening is not None

    started = time.monotonic()
    assert await turn(http, first, bearer("seat_a")) == 200
    created, headers_row, event_row, request = await feed.events(4, within=1.0)
    assert time.monotonic() - started < 1.0
    assert [b.event for b in (created, headers_row, event_row, request)] == [
        "account",
        "usage",
        "usage",
        "request",
    ]
    account_id = created.json()["id"]
    assert headers_row.json()["row"]["windows"]["5h"]["used_percent"] == 46.0

    # A rename through the first instance's API, and an account added there, reach it too.
    await Admin(http, first).ok(
        "PATCH", f"api/v1/accounts/{account_id}", json={"display_name": "Renamed"}
    )
    renamed = await feed.event(within=1.0)
    assert renamed.event == "account"
    assert renamed.json()["kind"] == "updated"
    assert renamed.json()["account"]["display_name"] == "Renamed"

    # Nothing twice: the first instance's own feed and this one agree on every position.
    own = SseReader(await http.get(feed_url(first), headers={**AUTH, "Last-Event-ID": "0.0.0.0"}))
    await own.block()
    replayed = await own.events(5)
    seen = [created, headers_row, event_row, request, renamed]
    assert [(b.event, b.id) for b in replayed] == [(b.event, b.id) for b in seen]
    response.close()
    own.response.close()
