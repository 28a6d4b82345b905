"""Every live-feed event carries the REST API's shape of its row, and no full fingerprint."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from tests.helpers.admin_client import ADMIN, OPAQUE, Admin
from tests.helpers.fake_upstream import FakeUpstream, sse_events
from tests.helpers.feed import Block, SseReader, feed_url
from tests.helpers.gateway import turn
from tests.helpers.tokens import bearer

# The API, feed and alerts behave alike on both backends.
pytestmark = pytest.mark.backends("sqlite", "postgresql")

# A whole SHA-256 in hex (a token fingerprint or a token key's): never on the wire.
_FULL_HEX: re.Pattern[bytes] = re.compile(rb"[0-9a-fA-F]{64}")


async def _events_until(feed: SseReader, done: str, count: int = 1) -> list[Block]:
    """Events up to and including the count-th of kind `done`."""
    seen: list[Block] = []
    while sum(1 for block in seen if block.event == done) < count:
        seen.append(await feed.event())
    return seen


async def _open(http: ClientSession, server: TestServer) -> SseReader:
    response = await http.get(feed_url(server), headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status == 200
    feed = SseReader(response)
    await feed.block()
    return feed


async def _history_item(admin: Admin, account_id: int, row_id: int) -> Any:
    page = await admin.ok("GET", f"api/v1/accounts/{account_id}/history")
    return next(item for item in page["items"] if item["id"] == row_id)


async def test_every_event_is_the_rest_item_of_its_row(
    server: TestServer, fake: FakeUpstream, http: ClientSession, admin: Admin
) -> None:
    fake.events = sse_events("stream-with-rate-limits.sse")
    # A threshold below the fixture's 46%: the turn makes an alert fire.
    await admin.ok("PUT", "api/v1/alerts/rules", json={"thresholds": [40]})
    feed = await _open(http, server)
    assert await turn(http, server, bearer("seat_a")) == 200
    blocks = await _events_until(feed, "alert")
    while not any(block.event == "request" for block in blocks):
        blocks.append(await feed.event())
    kinds = {block.event for block in blocks}
    assert kinds == {"account", "usage", "request", "alert"}

    for block in blocks:
        data = block.json()
        if block.event == "usage":
            assert set(data) == {"account_id", "limit_id", "row", "age_seconds", "forecasts"}
            assert data["row"]["limit_id"] == data["limit_id"]
            assert data["row"] == await _history_item(admin, data["account_id"], data["row"]["id"])
        elif block.event == "request":
            page = await admin.ok("GET", "api/v1/requests")
            assert data == next(item for item in page["items"] if item["id"] == data["id"])
        elif block.event == "alert":
            page = await admin.ok("GET", "api/v1/alerts")
            assert data == next(item for item in page["items"] if item["id"] == data["id"])
            assert data["kind"] == "threshold"
        else:
            assert block.event == "account"
            assert set(data) == {"id", "kind", "account"}
            account = await admin.ok("GET", f"api/v1/accounts/{data['id']}")
            shared = set(data["account"]) & set(account)
            assert shared >= {"id", "account_key", "display_name", "token_fingerprint"}
            assert {key: data["account"][key] for key in shared} == {
                key: account[key] for key in shared
            }
    assert _FULL_HEX.search(feed.raw) is None
    feed.response.close()


async def test_a_token_account_shows_8_hex_digits_in_the_feed(
    server: TestServer, http: ClientSession, admin: Admin
) -> None:
    feed = await _open(http, server)
    # Each event read before the next change: an event shows the account as it is when read.
    created = await admin.ok("POST", "api/v1/accounts", json={"token": OPAQUE}, status=201)
    blocks = [await feed.event()]
    renamed = await admin.ok(
        "PATCH", f"api/v1/accounts/{created['id']}", json={"display_name": "Ops"}
    )
    blocks.append(await feed.event())
    await admin.call("DELETE", f"api/v1/accounts/{created['id']}")
    blocks.append(await feed.event())
    assert [block.json()["kind"] for block in blocks] == ["created", "updated", "deleted"]
    account = blocks[1].json()["account"]
    assert account["account_key"] == renamed["account_key"]
    assert account["account_key"].startswith("token:")
    assert len(account["account_key"]) == len("token:") + 8
    assert account["token_fingerprint"] == renamed["token_fingerprint"]
    assert len(account["token_fingerprint"]) == 8
    assert blocks[2].json() == {"id": created["id"], "kind": "deleted", "account": None}
    assert _FULL_HEX.search(feed.raw) is None
    feed.response.close()
