"""The WebSocket relay end to end: frames, pings, close codes, hang-ups, capture, 426 mode."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import ClientSession, WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestServer

from codexgate.keys import RECORDER, STORE
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway, app_of
from tests.helpers.paths import DATA
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

WS_PATH = "/backend-api/codex/responses"
CLIENT_FRAMES = [
    orjson.loads(line)["frame"]
    for line in (DATA / "ws-frames.jsonl").read_bytes().splitlines()[1:]
    if orjson.loads(line)["dir"] == "client"
]
HANDSHAKE_HEADERS = {
    "Authorization": bearer("seat_a"),
    "OpenAI-Beta": "responses_websockets=2026-02-06",
    "session-id": "s-1",
}


def ws_url(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}{WS_PATH}"


async def test_frames_pass_in_order_both_ways(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    async with http.ws_connect(ws_url(gateway), headers=HANDSHAKE_HEADERS) as ws:
        for text in ("one", "two", "three"):
            await ws.send_str(text)
        await ws.send_bytes(b"\x00\xffbinary")
        answers = [await ws.receive(timeout=5) for _ in range(4)]
    assert [a.data for a in answers] == ["echo:one", "echo:two", "echo:three", b"\x00\xffbinary"]
    assert [a.type for a in answers][-1] is WSMsgType.BINARY
    received = fake.received[-1].headers
    assert received["OpenAI-Beta"] == "responses_websockets=2026-02-06"
    assert received["session-id"] == "s-1"
    assert received["Authorization"] == HANDSHAKE_HEADERS["Authorization"]
    assert "X-Forwarded-For" in received
    assert ("compress", 0) in fake.ws_received  # no deflate offered, none asked upstream


async def test_subprotocol_and_compression_are_negotiated_on_each_side(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    async with http.ws_connect(
        ws_url(gateway), headers=HANDSHAKE_HEADERS, protocols=("proto-x",), compress=15
    ) as ws:
        assert ws.protocol == "proto-x"
        assert ws.compress == 15
        await ws.send_str("x" * 10_000)
        assert (await ws.receive(timeout=5)).data == "echo:" + "x" * 10_000
    assert ("compress", 15) in fake.ws_received  # the upstream leg deflates too


async def test_pings_and_pongs_are_relayed(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    async with http.ws_connect(ws_url(gateway), headers=HANDSHAKE_HEADERS, autoping=False) as ws:
        await ws.ping(b"are-you-there")
        pong = await ws.receive(timeout=5)
    assert pong.type is WSMsgType.PONG
    assert pong.data == b"are-you-there"
    assert ("PING", b"are-you-there") in fake.ws_received


async def test_client_close_code_and_reason_reach_the_upstream(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    async with http.ws_connect(ws_url(gateway), headers=HANDSHAKE_HEADERS) as ws:
        await ws.send_str("hello")
        await ws.receive(timeout=5)
        await ws.close(code=4001, message=b"done here")
    await asyncio.wait_for(fake.ws_closed.wait(), timeout=5)
    assert fake.ws_close_code == 4001
    assert ("CLOSE", 4001) in fake.ws_received


async def test_upstream_close_code_and_reason_reach_the_client(
    gateway: TestServer, http: ClientSession
) -> None:
    async with http.ws_connect(ws_url(gateway), headers=HANDSHAKE_HEADERS) as ws:
        await ws.send_str("close-me:4002")
        message = await ws.receive(timeout=5)
        assert message.type is WSMsgType.CLOSE
        assert message.data == 4002
        assert message.extra == "bye"


async def test_client_hang_up_closes_the_upstream_socket(
    gateway: TestServer, fake: FakeUpstream
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        f"GET {WS_PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 101")
    await asyncio.sleep(0.05)
    assert not fake.ws_closed.is_set()
    writer.transport.abort()  # no close frame: the TCP connection just goes away
    await asyncio.wait_for(fake.ws_closed.wait(), timeout=5)


async def test_refuse_mode_answers_426_and_contacts_no_upstream(
    start_gateway: StartGateway, fake: FakeUpstream, http: ClientSession
) -> None:
    gateway = await start_gateway(websocket="refuse")
    with pytest.raises(WSServerHandshakeError) as refused:
        await http.ws_connect(ws_url(gateway), headers=HANDSHAKE_HEADERS)
    assert refused.value.status == 426
    assert fake.received == []
    async with http.post(ws_url(gateway), data=b"{}", headers=HANDSHAKE_HEADERS) as response:
        assert response.status == 200  # the HTTP fallback works


async def test_a_refused_upstream_handshake_is_relayed_with_its_status(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    fake.ws_handshake_status = 401
    with pytest.raises(WSServerHandshakeError) as refused:
        await http.ws_connect(ws_url(gateway), headers=HANDSHAKE_HEADERS)
    assert refused.value.status == 401


async def test_turns_are_captured_and_logged(
    gateway: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    async with http.ws_connect(ws_url(gateway), headers=HANDSHAKE_HEADERS) as ws:
        await ws.send_str(orjson.dumps(CLIENT_FRAMES[0]).decode())
        frames = [orjson.loads((await ws.receive(timeout=5)).data) for _ in range(4)]
        assert [f["type"] for f in frames] == [
            "codex.rate_limits",
            "response.created",
            "response.output_item.done",
            "response.completed",
        ]
        await ws.send_str(orjson.dumps(CLIENT_FRAMES[1]).decode())
        error = orjson.loads((await ws.receive(timeout=5)).data)
        assert error["type"] == "error"
    store = app_of(gateway)[STORE]
    recorder = app_of(gateway)[RECORDER]
    await eventually(lambda: recorder.stats().requests_logged >= 2)
    turns = sorted(await store.requests(), key=lambda row: row.started_at)
    assert [t.transport for t in turns] == ["websocket", "websocket"]
    first, second = turns
    assert first.status == 200
    assert first.model == "gpt-5-codex"
    assert first.response_id == "resp_ws1"
    assert (first.input_tokens, first.cached_input_tokens, first.output_tokens) == (10, 0, 1)
    assert (first.reasoning_tokens, first.total_tokens) == (0, 11)
    assert first.ttfb_ms is not None
    assert second.status == 429
    assert second.error_code == "usage_limit_reached"
    [latest] = await store.latest_usage()
    # The wrapped 429 is the newest report: its headers' windows and the limit hit.
    assert latest.usage.source == "error"
    assert latest.usage.five_hour_used_percent == 100.0
    assert latest.usage.seven_day_used_percent == 17.0
    assert latest.usage.limit_hit_type == "usage_limit_reached"
    assert latest.usage.limit_hit_resets_at == 1893456000
    history = await store.history(latest.usage.account_id)
    # The handshake's headers, then the rate-limits frame, then the wrapped error.
    assert [row.source for row in history] == ["headers", "event", "error"]
