"""The live feed against the real gateway and the fake upstream, read as raw SSE."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import ClientPayloadError, ClientResponse, ClientSession, TCPConnector
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from codexgate.app import SERVER_OPTIONS, create_app
from codexgate.config import Config
from codexgate.core.models import Identity, LimitReport, Snapshot, UsageReport, Window
from codexgate.core.rows import FeedCursor, RecordResult
from codexgate.keys import EVENT_BUS, FEED_OPTIONS, RECORDER, STORE
from codexgate.services.feed import EventBus, FeedOptions, event_id, parse_event_id
from tests.helpers.fake_upstream import FakeUpstream, sse_events
from tests.helpers.feed import Block, SseReader, feed_url
from tests.helpers.gateway import StartGateway, app_of, turn
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

# The API, feed and alerts behave alike on both backends.
pytestmark = pytest.mark.backends("sqlite", "postgresql")

log = logging.getLogger(__name__)

ADMIN = "feed-test-admin-token-0123456789"  # 32 characters
AUTH = {"Authorization": f"Bearer {ADMIN}"}
SEATS = ("seat_a", "seat_b", "personal")
StartFeed = Callable[..., Awaitable[TestServer]]


def position(block: Block) -> FeedCursor:
    assert block.id is not None
    cursor = parse_event_id(block.id)
    assert cursor is not None, block.id
    return cursor


def after(a: FeedCursor, b: FeedCursor) -> bool:
    """Whether b is a later position than a: no id goes back, at least one moves on."""
    pairs = ((a.usage, b.usage), (a.request, b.request), (a.account, b.account), (a.alert, b.alert))
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def without_age(block: Block) -> tuple[str | None, str | None, Any]:
    """What identifies an event across streams: age and forecasts depend on when it was sent."""
    data = block.json()
    if block.event == "usage":
        data.pop("age_seconds")
        data.pop("forecasts")
    return block.event, block.id, data


@pytest.fixture
def start_feed(aiohttp_server: AiohttpServer, config: Config) -> StartFeed:
    """Start codexgate with an admin token, optionally with small feed settings."""

    async def start(options: FeedOptions | None = None, **overrides: Any) -> TestServer:
        app = create_app(dataclasses.replace(config, admin_token=ADMIN, **overrides))
        if options is not None:
            app[FEED_OPTIONS] = options
        server_options = {k: v for k, v in SERVER_OPTIONS.items() if k != "handler_cancellation"}
        return await aiohttp_server(app, **server_options)

    return start


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> TestServer:
    """codexgate with an admin token and the default feed."""
    return await start_gateway(admin_token=ADMIN)


def bus_of(server: TestServer) -> EventBus:
    return app_of(server)[EVENT_BUS]


async def subscribe(
    http: ClientSession, server: TestServer, headers: dict[str, str] | None = None
) -> SseReader:
    """Open the feed and read its opening block."""
    response = await http.get(feed_url(server), headers={**AUTH, **(headers or {})})
    assert response.status == 200, await response.text()
    return SseReader(response)


def assert_no_tokens(raw: bytes | bytearray) -> None:
    """No bearer token (client or admin) ever appears in the feed."""
    for seat in SEATS:
        token = bearer(seat).removeprefix("Bearer ")
        assert token.encode() not in raw
        for part in token.split("."):  # not even the claims or the signature alone
            assert part.encode() not in raw
    assert ADMIN.encode() not in raw


# -- the tests ----------------------------------------------------------------------------------


async def test_the_feed_needs_the_admin_credential(
    gateway: TestServer, http: ClientSession
) -> None:
    async with http.get(feed_url(gateway)) as response:
        assert response.status == 401
    wrong = {"Authorization": "Bearer " + "x" * 32}
    async with http.get(feed_url(gateway), headers=wrong) as response:
        assert response.status == 401
    assert bus_of(gateway).subscribers == 0


async def test_a_turn_gives_account_usage_and_request_events_in_order(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.events = sse_events("stream-with-rate-limits.sse")
    feed = await subscribe(http, gateway)
    response = feed.response
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in response.headers
    opening = await feed.block()
    assert opening is not None
    assert opening.retry == 3000
    assert opening.id == "0.0.0.0"  # an empty database; a reconnect resumes from here
    assert not opening.data

    assert await turn(http, gateway, bearer("seat_a")) == 200
    created, headers_row, event_row, request = await feed.events(4)
    assert created.event == "account"
    account = created.json()
    assert account["kind"] == "created"
    assert account["account"]["id"] == account["id"]
    assert account["account"]["chatgpt_user_id"] is not None
    account_id = account["id"]
    assert [headers_row.event, event_row.event] == ["usage", "usage"]
    first, second = headers_row.json(), event_row.json()
    assert (first["row"]["source"], second["row"]["source"]) == ("headers", "event")
    assert first["account_id"] == second["account_id"] == account_id
    assert first["limit_id"] == first["row"]["limit_id"] == "codex"
    assert first["row"]["windows"]["5h"]["used_percent"] == 46.0
    assert second["row"]["windows"]["5h"]["used_percent"] == 47.0
    assert 0 <= second["age_seconds"] < 5
    assert set(first["row"]) >= {"id", "captured_at", "confirmed_at", "windows", "slots"}
    assert request.event == "request"
    row = request.json()
    assert row["account_id"] == account_id
    assert row["path"] == "/backend-api/codex/responses"
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (10, 2, 12)
    cursors = [position(b) for b in (opening, created, headers_row, event_row, request)]
    assert all(after(a, b) for a, b in itertools.pairwise(cursors))
    assert cursors[-1] == bus_of(gateway).cursor

    # The same seat again: no account event; a second seat: its own.
    assert await turn(http, gateway, bearer("seat_a")) == 200
    assert await turn(http, gateway, bearer("seat_b")) == 200
    seen: list[Block] = []
    while sum(1 for b in seen if b.event == "request") < 2:
        seen.append(await feed.event())
    accounts = [b.json() for b in seen if b.event == "account"]
    assert len(accounts) == 1
    assert accounts[0]["kind"] == "created"
    assert accounts[0]["id"] != account_id
    response.close()
    assert_no_tokens(feed.raw)


async def test_reconnecting_with_last_event_id_replays_exactly_what_was_missed(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.events = sse_events("stream-with-rate-limits.sse")
    watcher = await subscribe(http, gateway)  # stays connected: sees everything live
    await watcher.block()
    client = await subscribe(http, gateway)
    await client.block()
    assert await turn(http, gateway, bearer("seat_a")) == 200
    read = await client.events(4)
    last = read[-1]
    assert last.event == "request"
    client.response.close()
    await eventually(lambda: bus_of(gateway).subscribers == 1)

    # Missed: a new seat (account, usage, request), the old seat again (confirmations, request).
    assert await turn(http, gateway, bearer("seat_b")) == 200
    assert await turn(http, gateway, bearer("seat_a")) == 200
    assert await turn(http, gateway, bearer("personal")) == 200
    live: list[Block] = []
    while sum(1 for b in live if b.event == "request") < 4:
        live.append(await watcher.event())
    assert [without_age(b) for b in live[:4]] == [without_age(b) for b in read]
    assert last.id is not None
    missed = []
    previous = position(last)
    for block in live[4:]:
        if position(block) == previous:
            continue  # a confirmation: sent live only, never replayed
        missed.append(block)
        previous = position(block)
    assert {b.event for b in missed} == {"account", "usage", "request"}

    again = await subscribe(http, gateway, {"Last-Event-ID": last.id})
    opening = await again.block()
    assert opening is not None
    assert opening.retry == 3000
    assert opening.id is None
    replayed = await again.events(len(missed))
    assert [without_age(b) for b in replayed] == [without_age(b) for b in missed]
    cursors = [position(b) for b in [last, *replayed]]
    assert all(after(a, b) for a, b in itertools.pairwise(cursors))

    # Then live, in step with the watcher, nothing twice.
    assert await turn(http, gateway, bearer("seat_b")) == 200
    following = await again.event()
    assert after(cursors[-1], position(following))
    while True:
        block = await watcher.event()
        if block.id == following.id:
            break
    assert without_age(block) == without_age(following)
    assert_no_tokens(again.raw + watcher.raw + client.raw)
    again.response.close()
    watcher.response.close()


async def test_an_unknown_last_event_id_starts_live_and_says_so(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.events = sse_events("stream-with-rate-limits.sse")
    assert await turn(http, gateway, bearer("seat_a")) == 200
    await eventually(lambda: bus_of(gateway).cursor.request == 1)
    for raw in ("not-a-cursor", "1.2", "1.2.3", "99.99.99.99"):  # the last is ahead of this feed
        feed = await subscribe(http, gateway, {"Last-Event-ID": raw})
        opening = await feed.block()
        assert opening is not None
        assert opening.comments
        assert "live from now" in opening.comments[0]
        # The current position, so that a reconnect resumes from here.
        assert opening.id == event_id(bus_of(gateway).cursor)
        assert raw != "not-a-cursor" or opening.id == "2.1.1.0"  # 2 usage, 1 request, 1 account
        # Nothing is replayed: the next event is a new one.
        assert await turn(http, gateway, bearer("seat_a")) == 200
        block = await feed.event()
        assert after(position(opening), position(block))
        feed.response.close()


async def test_a_stalled_subscriber_is_dropped_while_another_keeps_up(
    start_feed: StartFeed, http: ClientSession
) -> None:
    server = await start_feed(FeedOptions(queue_size=16))
    bus = bus_of(server)

    def small_socket(info: Any) -> socket.socket:
        # A small receive buffer: the stalled reader stops the gateway's writes sooner.
        family, kind, protocol = info[0], info[1], info[2]
        sock = socket.socket(family, kind, protocol)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return sock

    stalled_session = ClientSession(
        connector=TCPConnector(socket_factory=small_socket), read_bufsize=4096
    )
    try:
        stalled = await stalled_session.get(feed_url(server), headers=AUTH)
        assert stalled.status == 200  # and never read from again
        reader = await subscribe(http, server)
        await reader.block()
        await eventually(lambda: bus.subscribers == 2)

        received: list[Block] = []

        async def read_all() -> None:
            while True:
                received.append(await reader.event(within=30))

        reading = asyncio.create_task(read_all())
        recorder = app_of(server)[RECORDER]
        sent = 0

        def published(total: int) -> Callable[[], bool]:
            return lambda: bus.cursor.usage == total

        for _round in range(20):
            for _ in range(200):
                sent += 1
                recorder.offer(synthetic_snapshot(sent))
            await eventually(published(sent), timeout=10)
            if bus.dropped:
                break
        log.info("the stalled subscriber was dropped after %d events", sent)
        assert bus.dropped == 1
        assert bus.subscribers == 1

        def usage_ids() -> list[int]:
            return [b.json()["row"]["id"] for b in received if b.event == "usage"]

        await eventually(lambda: len(usage_ids()) == sent, timeout=10)
        assert usage_ids() == list(range(1, sent + 1))  # all of them, in order
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        # The dropped stream ends: what was buffered, then the cut.
        with pytest.raises(ClientPayloadError):
            await asyncio.wait_for(drain(stalled), 5)
        reader.response.close()
    finally:
        await stalled_session.close()


async def drain(response: ClientResponse) -> None:
    """Read a body to its end."""
    while await response.content.read(65536):
        pass


def synthetic_snapshot(n: int) -> Snapshot:
    """A report whose 5h window differs from the previous one, so it writes a new row."""
    window = Window("primary", "5h", "length", float(n % 100) + n / 100000, 300, 1893456000)
    identity = Identity("token:" + "0" * 64, "0" * 64)
    report = UsageReport((LimitReport("codex", None, (window,)),), plan_type="plus")
    return Snapshot(identity, time.time(), "headers", report, 200)


async def test_pings_keep_the_stream_alive(start_feed: StartFeed, http: ClientSession) -> None:
    server = await start_feed(FeedOptions(ping_interval=0.1))
    feed = await subscribe(http, server)
    await feed.block()
    started = time.monotonic()
    for _ in range(2):
        block = await feed.block(within=1)
        assert block is not None
        assert block.comments == ["ping"]
        assert not block.data
        assert block.id is None
    assert time.monotonic() - started < 1
    assert b": ping\r\n\r\n" in feed.raw
    feed.response.close()


async def test_a_client_hang_up_removes_its_subscriber_at_once(
    gateway: TestServer, http: ClientSession
) -> None:
    feed = await subscribe(http, gateway)
    await feed.block()
    assert bus_of(gateway).subscribers == 1
    feed.response.close()
    await eventually(lambda: bus_of(gateway).subscribers == 0, timeout=0.5)


async def test_shutdown_ends_the_stream_promptly(gateway: TestServer, http: ClientSession) -> None:
    feed = await subscribe(http, gateway)
    await feed.block()
    started = time.monotonic()
    closing = asyncio.create_task(gateway.close())
    assert await feed.block(within=2) is None  # a clean end of the stream
    async with asyncio.timeout(2):
        await closing
    assert time.monotonic() - started < 2  # not the shutdown grace period


async def test_each_snapshot_reaches_a_subscriber_live(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.events = sse_events("stream-with-rate-limits.sse")
    feed = await subscribe(http, gateway)
    await feed.block()
    assert (
        await turn(http, gateway, bearer("seat_a")) == 200
    )  # the account's first turn: creates it
    while (await feed.event()).event != "request":
        pass
    usage_delays: list[float] = []
    request_delays: list[float] = []
    for n in range(11):
        # Change the event's 5h value each turn, so the snapshot writes a new row.
        fake.events = [
            event.replace(b'"used_percent":47', b'"used_percent":%d' % (50 + n))
            for event in sse_events("stream-with-rate-limits.sse")
        ]
        assert await turn(http, gateway, bearer("seat_a")) == 200
        finished = time.monotonic()
        while True:
            block = await feed.event()
            if block.event == "usage" and block.json()["row"]["source"] == "event":
                assert block.json()["row"]["windows"]["5h"]["used_percent"] == 50 + n
                usage_delays.append(time.monotonic() - finished)
            if block.event == "request":
                request_delays.append(time.monotonic() - finished)
                break
    usage_ms = sorted(round(d * 1000, 1) for d in usage_delays)
    request_ms = sorted(round(d * 1000, 1) for d in request_delays)
    log.info("feed latency (ms): snapshot %s; request %s", usage_ms, request_ms)
    assert len(usage_ms) == 11
    assert len(request_ms) == 11
    feed.response.close()


async def test_a_confirmation_is_sent_live_with_the_current_position_and_not_replayed(
    gateway: TestServer, http: ClientSession
) -> None:
    feed = await subscribe(http, gateway)
    await feed.block()
    url = f"http://127.0.0.1:{gateway.port}/backend-api/wham/usage"
    headers = {"Authorization": bearer("seat_a")}
    async with http.get(url, headers=headers) as response:
        await response.read()
    first: list[Block] = []
    while not first or first[-1].event != "request":
        first.append(await feed.event())
    rows = {b.json()["limit_id"]: b.json()["row"] for b in first if b.event == "usage"}
    assert "codex" in rows
    async with http.get(url, headers=headers) as response:  # the same values again
        await response.read()
    request = await feed.event()
    assert request.event == "request"
    confirmations = [await feed.event() for _ in rows]
    for block in confirmations:
        assert block.event == "usage"
        assert block.id == request.id  # nothing new in the store: the position stays
        data = block.json()
        earlier = rows[data["limit_id"]]
        assert data["row"]["id"] == earlier["id"]
        assert data["row"]["captured_at"] == earlier["captured_at"]
        assert data["row"]["confirmed_at"] > earlier["confirmed_at"]
    feed.response.close()

    # A reconnect from before the second request replays the request only.
    assert first[-1].id is not None
    again = await subscribe(http, gateway, {"Last-Event-ID": first[-1].id})
    await again.block()
    replayed = await again.event()
    assert without_age(replayed) == without_age(request)
    with pytest.raises(TimeoutError):  # and nothing else
        await again.event(within=0.3)
    again.response.close()


async def test_account_changes_by_other_writers_are_sent_after_notify(
    gateway: TestServer, http: ClientSession
) -> None:
    feed = await subscribe(http, gateway)
    await feed.block()
    store = app_of(gateway)[STORE]
    bus = bus_of(gateway)
    identity = Identity("seat:ws-1:user-1", "f" * 64, "ws-1", "user-1")
    row, created = await store.create_account(identity, "Alice", time.time())
    assert created
    bus.notify()
    block = await feed.event()
    assert block.event == "account"
    assert block.json() == {
        "id": row.id,
        "kind": "created",
        "account": {
            **orjson.loads(orjson.dumps(row)),
            "token_fingerprint": "f" * 8,
            "title": "Alice",
        },
    }
    await store.update_account(row.id, display_name="Bob")
    bus.notify()
    block = await feed.event()
    assert block.json()["kind"] == "updated"
    assert block.json()["account"]["display_name"] == "Bob"
    await store.delete_account(row.id)
    bus.notify()
    block = await feed.event()
    assert block.json() == {"id": row.id, "kind": "deleted", "account": None}
    assert position(block) == bus.cursor
    feed.response.close()


async def test_a_failing_commit_callback_costs_nothing_but_its_notice(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(result: RecordResult) -> None:
        raise RuntimeError("broken subscriber")

    recorder = app_of(gateway)[RECORDER]
    recorder.on_commit.insert(0, broken)
    feed = await subscribe(http, gateway)
    await feed.block()
    for n in range(2):
        assert await turn(http, gateway, bearer("seat_a")) == 200
        while (await feed.event()).event != "request":
            pass
        assert recorder.stats().requests_logged == n + 1
    assert recorder.stats().dropped == 0
    assert "on_commit callback" in caplog.text
    assert "broken subscriber" in caplog.text
    feed.response.close()


async def test_other_methods_on_the_feed_answer_405(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    gateway = await start_gateway(admin_token=ADMIN)
    url = f"http://127.0.0.1:{gateway.port}/codexgate/api/v1/events"
    async with http.post(url, headers={"Authorization": f"Bearer {ADMIN}"}) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET"
        body = await response.json()
    assert body["error"]["type"] == "method_not_allowed"


async def test_beyond_max_feed_subscribers_the_feed_answers_503_until_one_leaves(
    start_feed: StartFeed, http: ClientSession
) -> None:
    server = await start_feed(max_feed_subscribers=2)
    first, second = await subscribe(http, server), await subscribe(http, server)
    await first.block()
    await second.block()
    async with http.get(feed_url(server), headers=AUTH) as refused:
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "3"
        assert refused.content_type == "application/json"
        error = (await refused.json())["error"]
        assert error["type"] == "too_many_subscribers"
        assert "2 streams" in error["message"]
    bus = bus_of(server)
    assert (bus.subscribers, bus.refused) == (2, 1)

    first.response.close()
    await eventually(lambda: bus.subscribers == 1)
    third = await subscribe(http, server)
    assert (await third.block()) is not None
    assert bus.subscribers == 2
    async with http.get(f"http://127.0.0.1:{server.port}/codexgate/healthz") as response:
        feed = (await response.json())["feed"]
    assert (feed["subscribers"], feed["max_subscribers"], feed["refused"]) == (2, 2, 1)
    second.response.close()
    third.response.close()


async def test_each_event_is_framed_once_and_shared_by_every_subscriber(
    gateway: TestServer, http: ClientSession
) -> None:
    bus = bus_of(gateway)
    streams = [await subscribe(http, gateway) for _ in range(20)]
    for stream in streams:
        await stream.block()
    # Two queues the test empties itself, to look at what the bus put into them.
    queues = [queue for queue in (bus.subscribe(), bus.subscribe()) if queue is not None]
    assert len(queues) == 2
    published = bus.published

    assert await turn(http, gateway, bearer("seat_a")) == 200
    received = [await stream.events(3) for stream in streams]  # account, usage, request
    framed = bus.published - published
    assert framed == 3  # once per event, not once per subscriber
    assert [block.event for block in received[0]] == ["account", "usage", "request"]
    assert all(blocks == received[0] for blocks in received)
    assert len({bytes(stream.raw) for stream in streams}) == 1  # byte for byte the same
    frames = [await queue.get() for queue in queues]
    assert len(frames[0]) == framed
    assert all(a is b for a, b in zip(*frames, strict=True))  # one bytes object for all
    for queue in queues:
        bus.unsubscribe(queue)
    for stream in streams:
        stream.response.close()
