"""Two gateways on one SQLite file, as during a rolling restart: a feed on one sees, within a
second, what the other wrote (it polls the file's data_version; the rows are read after its
cursor, in commit order)."""

from __future__ import annotations

import time

import pytest
from aiohttp import ClientSession

from tests.helpers.admin_client import ADMIN, Admin
from tests.helpers.fake_upstream import FakeUpstream, sse_events
from tests.helpers.feed import SseReader, feed_url
from tests.helpers.gateway import StartGateway, turn
from tests.helpers.tokens import bearer

pytestmark = pytest.mark.backends("sqlite")

AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def test_a_feed_sees_what_the_other_process_wrote_within_a_second(
    start_gateway: StartGateway, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.events = sse_events("stream-with-rate-limits.sse")
    old = await start_gateway(admin_token=ADMIN)
    new = await start_gateway(admin_token=ADMIN)  # the same --db file
    response = await http.get(feed_url(new), headers=AUTH)
    assert response.status == 200
    feed = SseReader(response)
    assert await feed.block() is not None

    started = time.monotonic()
    assert await turn(http, old, bearer("seat_a")) == 200
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

    # A rename through the old process's API reaches it too.
    await Admin(http, old).ok(
        "PATCH", f"api/v1/accounts/{account_id}", json={"display_name": "Renamed"}
    )
    renamed = await feed.event(within=1.0)
    assert renamed.event == "account"
    assert renamed.json()["account"]["display_name"] == "Renamed"

    # Nothing twice: the old process's replay and this feed agree on every position.
    replay = SseReader(await http.get(feed_url(old), headers={**AUTH, "Last-Event-ID": "0.0.0.0"}))
    await replay.block()
    seen = [created, headers_row, event_row, request, renamed]
    replayed = await replay.events(len(seen))
    assert [(b.event, b.id) for b in replayed] == [(b.event, b.id) for b in seen]
    response.close()
    replay.response.close()
