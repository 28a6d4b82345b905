"""WebSocket messages over the size limit (either way, whole or in fragments) and redirects."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import pytest
from aiohttp import ClientSession, WSMsgType
from aiohttp.test_utils import TestServer
from yarl import URL

from codexgate.keys import RECORDER, STORE
from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.gateway import StartGateway, app_of
from tests.helpers.paths import DATA
from tests.helpers.processes import GatewayProcess, StartUpstream, rss_bytes
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

log = logging.getLogger(__name__)

MIB = 1024 * 1024
WS_PATH = "/backend-api/codex/responses"
TEXT, BINARY, CONTINUATION, CLOSE = 0x1, 0x2, 0x0, 0x8
MESSAGE_TOO_BIG = 1009
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
AUTHORIZATION = bearer("seat_a")
TURN_REQUEST = orjson.dumps(
    next(
        orjson.loads(line)["frame"]
        for line in (DATA / "ws-frames.jsonl").read_bytes().splitlines()[1:]
        if orjson.loads(line)["dir"] == "client"
    )
).decode()


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """One WebSocket frame as a client (masked) or a server (not) writes it."""
    return frame_head(opcode, len(payload), fin=fin, masked=masked) + payload


def frame_head(opcode: int, length: int, *, fin: bool = True, masked: bool = True) -> bytes:
    """A frame's header declaring `length` payload bytes (the all-zero mask leaves bytes as is)."""
    mask_bit = 0x80 if masked else 0
    head = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 65536:
        head += bytes([mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + length.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if masked else b"")


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame's opcode and (unmasked) payload."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    key = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
    payload = await reader.readexactly(length)
    if key != b"\0\0\0\0":
        payload = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
    return first & 0x0F, payload


async def close_code(reader: asyncio.StreamReader) -> int | None:
    """Read frames until a close frame (its code) or the end of the connection (None)."""
    try:
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == CLOSE:
                return int.from_bytes(payload[:2], "big")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def raw_client(port: int | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client on a plain socket, past the handshake with the gateway."""
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: {AUTHORIZATION}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def fragments_up_to(limit: int, opcode: int, *, masked: bool) -> bytes:
    """`limit` bytes of one message in 64 KiB fragments, then the header of one more.

    Nothing follows the header, so the side that refuses it has read everything it was sent
    (a socket closed with unread bytes would reset, and the close frame could be lost).
    """
    piece = b"x" * (64 * 1024)
    frames = [frame(opcode, piece, fin=False, masked=masked)]
    frames += [frame(CONTINUATION, piece, fin=False, masked=masked)] * (limit // len(piece) - 1)
    return b"".join(frames) + frame_head(CONTINUATION, len(piece), fin=False, masked=masked)


async def assert_next_turn_is_served(gateway: TestServer, http: ClientSession) -> None:
    """A fresh WebSocket through the same gateway gets a whole turn."""
    url = f"http://127.0.0.1:{gateway.port}{WS_PATH}"
    async with http.ws_connect(url, headers={"Authorization": AUTHORIZATION}) as ws:
        await ws.send_str(TURN_REQUEST)
        types = [orjson.loads((await ws.receive(timeout=10)).data)["type"] for _ in range(4)]
    assert types[-1] == "response.completed"


def no_tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """Log lines at error level or with a traceback."""
    return [r.getMessage() for r in records if r.levelno >= logging.ERROR or r.exc_info]


@dataclass
class RawUpstream:
    """An upstream on a plain socket that sends what the first client message asks for."""

    limit: int
    closes: list[int | None] = field(default_factory=list)
    connections: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Handshake, then: `big-frame`, `big-fragments`, a turn cut by a big frame, or echo."""
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
            writer.write(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".encode()
            )
            _, first = await read_frame(reader)
            oversize = frame_head(BINARY, self.limit + 1, masked=False) + b"y" * 1024
            if first == b"big-frame":
                writer.write(oversize)
            elif first == b"big-fragments":
                writer.write(fragments_up_to(self.limit, TEXT, masked=False))
            elif b"response.create" in first:
                created = {"type": "response.created", "response": {"id": "resp_cut"}}
                writer.write(frame(TEXT, orjson.dumps(created), masked=False) + oversize)
            else:
                writer.write(frame(TEXT, b"echo:" + first, masked=False))
            self.closes.append(await close_code(reader))
        finally:
            writer.close()
            self.done.set()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[tuple[RawUpstream, int]]:
    """A RawUpstream for a 1 MiB limit, listening on loopback."""
    upstream = RawUpstream(limit=MIB)
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    yield upstream, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def small_limit(start_gateway: StartGateway) -> TestServer:
    """A gateway in front of the fake upstream that relays messages of 1 MiB at most."""
    return await start_gateway(websocket_max_message_mib=1)


@pytest.mark.parametrize("shape", ["one frame", "fragments"])
async def test_a_client_message_over_the_limit_closes_both_legs_with_1009(
    small_limit: TestServer,
    fake: FakeUpstream,
    http: ClientSession,
    shape: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader, writer = await raw_client(small_limit.port)
    if shape == "one frame":
        writer.write(frame_head(TEXT, MIB + 1) + b"x" * 1024)
    else:
        writer.write(fragments_up_to(MIB, TEXT, masked=True))
    assert await asyncio.wait_for(close_code(reader), timeout=20) == MESSAGE_TOO_BIG
    writer.close()
    await asyncio.wait_for(fake.ws_closed.wait(), timeout=20)
    assert fake.ws_close_code == MESSAGE_TOO_BIG
    await assert_next_turn_is_served(small_limit, http)
    assert no_tracebacks(caplog.records) == []


async def test_a_compressed_message_is_limited_by_its_decompressed_size(
    small_limit: TestServer, fake: FakeUpstream, http: ClientSession
) -> None:
    url = f"http://127.0.0.1:{small_limit.port}{WS_PATH}"
    async with http.ws_connect(url, compress=15) as ws:
        assert ws.compress == 15
        await ws.send_str("x" * (2 * MIB))  # a few KiB on the wire
        message = await ws.receive(timeout=20)
    assert (message.type, message.data) == (WSMsgType.CLOSE, MESSAGE_TOO_BIG)
    await asyncio.wait_for(fake.ws_closed.wait(), timeout=20)
    assert fake.ws_close_code == MESSAGE_TOO_BIG


async def test_a_message_of_exactly_the_limit_passes_both_ways(
    small_limit: TestServer, http: ClientSession
) -> None:
    url = f"http://127.0.0.1:{small_limit.port}{WS_PATH}"
    async with http.ws_connect(url, max_msg_size=2 * MIB) as ws:
        await ws.send_bytes(b"z" * MIB)
        echoed = await ws.receive(timeout=20)
    assert echoed.type is WSMsgType.BINARY
    assert len(echoed.data) == MIB


@pytest.mark.parametrize("shape", ["big-frame", "big-fragments"])
async def test_an_upstream_message_over_the_limit_closes_both_legs_with_1009(
    start_gateway: StartGateway,
    raw_upstream: tuple[RawUpstream, int],
    http: ClientSession,
    shape: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream, port = raw_upstream
    gateway = await start_gateway(
        upstream=URL(f"http://127.0.0.1:{port}"), websocket_max_message_mib=1
    )
    url = f"http://127.0.0.1:{gateway.port}{WS_PATH}"
    async with http.ws_connect(url) as ws:
        await ws.send_str(shape)
        message = await ws.receive(timeout=20)
        assert (message.type, message.data) == (WSMsgType.CLOSE, MESSAGE_TOO_BIG)
    await asyncio.wait_for(upstream.done.wait(), timeout=20)
    assert upstream.closes == [MESSAGE_TOO_BIG]
    async with http.ws_connect(url) as ws:  # the next socket is relayed as before
        await ws.send_str("hello")
        assert (await ws.receive(timeout=20)).data == "echo:hello"
    assert no_tracebacks(caplog.records) == []


async def test_a_turn_cut_by_an_oversized_message_is_logged(
    start_gateway: StartGateway, raw_upstream: tuple[RawUpstream, int], http: ClientSession
) -> None:
    _, port = raw_upstream
    gateway = await start_gateway(
        upstream=URL(f"http://127.0.0.1:{port}"), websocket_max_message_mib=1
    )
    url = f"http://127.0.0.1:{gateway.port}{WS_PATH}"
    async with http.ws_connect(url, headers={"Authorization": AUTHORIZATION}) as ws:
        await ws.send_str(TURN_REQUEST)
        assert orjson.loads((await ws.receive(timeout=20)).data)["type"] == "response.created"
        message = await ws.receive(timeout=20)
        assert (message.type, message.data) == (WSMsgType.CLOSE, MESSAGE_TOO_BIG)
    recorder = app_of(gateway)[RECORDER]
    for _ in range(500):
        if recorder.stats().requests_logged >= 1:
            break
        await asyncio.sleep(0.02)
    [turn] = await app_of(gateway)[STORE].requests()
    assert (turn.transport, turn.status, turn.response_id) == ("websocket", None, "resp_cut")
    assert turn.error_code == "closed_before_completion"


@pytest.mark.parametrize(
    ("status", "elsewhere"),
    [(302, True), (307, True), (308, True), (301, False)],
)
async def test_a_handshake_redirect_is_relayed_not_followed(
    start_gateway: StartGateway, fake: FakeUpstream, status: int, elsewhere: bool
) -> None:
    second_listener: list[str] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        second_listener.append("connected")
        writer.close()

    other = await asyncio.start_server(record, "127.0.0.1", 0)
    other_port = other.sockets[0].getsockname()[1]
    location = f"http://127.0.0.1:{other_port}{WS_PATH}" if elsewhere else "/elsewhere"
    fake.ws_handshake_status = status
    fake.response_headers = {**fake.response_headers, "Location": location}
    gateway = await start_gateway()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: {AUTHORIZATION}\r\n\r\n".encode()
        )
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)).decode()
        writer.close()
    finally:
        other.close()
        await other.wait_closed()
    status_line, *header_lines = head.strip().split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert status_line.startswith(f"HTTP/1.1 {status}")
    assert headers["Location"] == location
    assert "Upgrade" not in headers
    assert second_listener == []
    assert len(fake.received) == 1  # not even the upstream's own /elsewhere


# The process-level scenario: clients that never finish one message, several at once.
FLOOD_LIMIT_MIB = 8
FLOODERS = 4
FLOOD_MIB = 96  # what each client would send if nothing stopped it


async def flood(gateway: GatewayProcess) -> int:
    """Send one text message in 1 MiB fragments until the gateway ends it; the bytes sent."""
    reader, writer = await raw_client(gateway.port)
    piece = b"x" * MIB
    sent = 0
    try:
        writer.write(frame(TEXT, piece, fin=False))
        sent += MIB
        while sent < FLOOD_MIB * MIB:
            writer.write(frame(CONTINUATION, piece, fin=False))
            await writer.drain()
            sent += MIB
        # Sent in full: an unlimited gateway holds it all and never closes; look, then move on.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(close_code(reader), timeout=5)
    except ConnectionError:
        pass  # the gateway closed with unread fragments in flight: a reset
    finally:
        writer.close()
    return sent


async def sample_peak(pid: int, stop: asyncio.Event) -> int:
    """The highest VmRSS of `pid` seen every 20 ms until `stop` is set."""
    peak = rss_bytes(pid)
    while not stop.is_set():
        peak = max(peak, rss_bytes(pid))
        await asyncio.sleep(0.02)
    return peak


async def test_concurrent_unfinished_messages_keep_gateway_memory_bounded(
    start_upstream: StartUpstream,
    start_gateway_process: Callable[..., Awaitable[GatewayProcess]],
) -> None:
    upstream = await start_upstream()
    gateway = await start_gateway_process(
        "--upstream", upstream.base, "--websocket-max-message-mib", str(FLOOD_LIMIT_MIB)
    )
    pid = gateway.process.pid
    async with ClientSession() as http:  # warm-up: one relayed turn
        url = f"{gateway.base}{WS_PATH}"
        async with http.ws_connect(url, headers={"Authorization": AUTHORIZATION}) as ws:
            await ws.send_str("warm-up")
            await ws.receive(timeout=20)
    baseline = rss_bytes(pid)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_peak(pid, stop))
    started = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout(120):
            sent = await asyncio.gather(*(flood(gateway) for _ in range(FLOODERS)))
    finally:
        stop.set()
        peak = await sampler
    took = asyncio.get_running_loop().time() - started

    after = await eventually(
        lambda: rss_bytes(pid),
        accept=lambda rss: rss < baseline + 48 * MIB,
        timeout=10,
        interval=0.2,
    )
    log.info(
        "%d clients, %d MiB limit: sent %s MiB in %.1f s; gateway RSS %.0f MB, peak %.0f MB, "
        "after %.0f MB",
        FLOODERS,
        FLOOD_LIMIT_MIB,
        [s // MIB for s in sent],
        took,
        baseline / MIB,
        peak / MIB,
        after / MIB,
    )
    assert all(s < FLOOD_MIB * MIB for s in sent), "the gateway let a message run past the limit"
    # aiohttp holds at most one limit's worth per socket; twice that plus 64 MiB is generous.
    assert peak - baseline < 2 * FLOODERS * FLOOD_LIMIT_MIB * MIB + 64 * MIB
    assert after < baseline + 48 * MIB, "the refused messages' memory was kept"
    async with (
        ClientSession() as http,
        http.ws_connect(url, headers={"Authorization": AUTHORIZATION}) as ws,
    ):
        await ws.send_str("still-here")
        assert (await ws.receive(timeout=20)).data == "echo:still-here"
    assert "Traceback" not in gateway.log()
