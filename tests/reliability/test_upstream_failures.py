"""A failing upstream (killed, refusing, silent): the client gets a clear end, then service."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import orjson
import pytest
from aiohttp import (
    ClientPayloadError,
    ClientResponse,
    ClientSession,
    ClientTimeout,
    ServerDisconnectedError,
)

from tests.helpers.processes import GatewayProcess, StartGatewayProcess, StartUpstream, free_port
from tests.helpers.tokens import bearer

log = logging.getLogger(__name__)

TURN = "/backend-api/codex/responses"
# How long a cut may take once its cause happened (a wide margin: two shared cores).
CUT_WITHIN = 5.0
# What a client sees when the gateway cuts a body short.
CUT = (ClientPayloadError, ServerDisconnectedError)
# No client waits forever, even if the gateway did.
CLIENT_TIMEOUT = ClientTimeout(total=20)


def client() -> ClientSession:
    """A client session that gives up after CLIENT_TIMEOUT."""
    return ClientSession(timeout=CLIENT_TIMEOUT)


async def post_turn(http: ClientSession, gateway: GatewayProcess) -> tuple[int, bytes]:
    """One whole SSE turn through the gateway: its status and body."""
    async with http.post(
        f"{gateway.base}{TURN}", data=b"{}", headers={"Authorization": bearer("seat_a")}
    ) as response:
        return response.status, await response.read()


async def assert_turn_succeeds(gateway: GatewayProcess) -> None:
    """A new client's turn through the gateway comes back whole."""
    async with client() as http:
        status, body = await post_turn(http, gateway)
    assert status == 200
    assert body.rstrip().endswith(b"}")
    assert b"response.completed" in body


async def read_until_cut(response: ClientResponse, since: float) -> tuple[bytes, float]:
    """The rest of a body that must end in a cut connection, and the cut's time after `since`."""
    chunks: list[bytes] = []

    async def drain() -> None:
        while chunk := await response.content.readany():
            chunks.append(chunk)

    with pytest.raises(CUT):  # a clean end here would let a short body pass for a whole one
        await drain()
    return b"".join(chunks), asyncio.get_running_loop().time() - since


async def test_upstream_killed_mid_stream(
    start_upstream: StartUpstream, start_gateway_process: StartGatewayProcess
) -> None:
    # ~200 deltas 50 ms apart: the turn is still streaming when the upstream dies.
    upstream = await start_upstream(event_delay=0.05, deltas=200)
    gateway = await start_gateway_process("--upstream", upstream.base)
    async with (
        client() as http,
        http.post(
            f"{gateway.base}{TURN}", data=b"{}", headers={"Authorization": bearer("seat_a")}
        ) as response,
    ):
        assert response.status == 200
        assert b"response.created" in await response.content.readuntil(b"\n\n")
        killed_at = asyncio.get_running_loop().time()
        await upstream.kill()
        rest, cut_after = await read_until_cut(response, since=killed_at)
    assert b"response.completed" not in rest
    assert cut_after < CUT_WITHIN
    log.info("upstream killed mid-stream: client cut %.3f s later", cut_after)

    await start_upstream(port=upstream.port)  # back on the same port
    await assert_turn_succeeds(gateway)


async def test_upstream_refusing_connections(
    start_upstream: StartUpstream, start_gateway_process: StartGatewayProcess
) -> None:
    port = free_port()  # nothing listens there
    gateway = await start_gateway_process("--upstream", f"http://127.0.0.1:{port}")
    loop = asyncio.get_running_loop()
    async with client() as http:
        started = loop.time()
        status, body = await post_turn(http, gateway)
        answered_after = loop.time() - started
    assert status == 502
    assert orjson.loads(body)["error"]["type"] == "upstream_unreachable"
    assert answered_after < CUT_WITHIN
    log.info("upstream refusing connections: 502 after %.3f s", answered_after)

    await start_upstream(port=port)
    await assert_turn_succeeds(gateway)


@asynccontextmanager
async def accepts_and_never_answers(port: int) -> AsyncIterator[None]:
    """A server on `port` that accepts connections, reads what comes and never writes."""
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


@asynccontextmanager
async def never_completes_a_handshake(port: int) -> AsyncIterator[None]:
    """A socket on `port` whose accept queue is full, so new connections never complete."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", port))
        listener.listen(0)  # Linux queues backlog + 1 connections, then drops further SYNs
        filler.connect(("127.0.0.1", port))
        yield


Blackhole = Callable[[int], AbstractAsyncContextManager[None]]


@pytest.mark.parametrize(
    ("blackhole", "timeout_flag", "other_flag"),
    [
        pytest.param(
            accepts_and_never_answers, "--idle-timeout", "--connect-timeout", id="accepts"
        ),
        pytest.param(
            never_completes_a_handshake, "--connect-timeout", "--idle-timeout", id="no-handshake"
        ),
    ],
)
async def test_upstream_never_answering(
    start_upstream: StartUpstream,
    start_gateway_process: StartGatewayProcess,
    blackhole: Blackhole,
    timeout_flag: str,
    other_flag: str,
) -> None:
    port = free_port()
    # The other timeout is longer, so the time to the 504 shows which one ended the wait.
    gateway = await start_gateway_process(
        "--upstream", f"http://127.0.0.1:{port}", timeout_flag, "1", other_flag, "6"
    )
    loop = asyncio.get_running_loop()
    async with blackhole(port), client() as http:
        started = loop.time()
        status, body = await post_turn(http, gateway)
        answered_after = loop.time() - started
    assert status == 504
    assert orjson.loads(body)["error"]["type"] == "upstream_timeout"
    assert 0.9 <= answered_after < 5.0
    log.info("upstream never answering (%s 1): 504 after %.3f s", timeout_flag, answered_after)

    await start_upstream(port=port)  # a live upstream takes the port over
    await assert_turn_succeeds(gateway)


async def test_upstream_silent_mid_stream(
    start_upstream: StartUpstream, start_gateway_process: StartGatewayProcess
) -> None:
    upstream = await start_upstream()
    gateway = await start_gateway_process("--upstream", upstream.base, "--idle-timeout", "1")
    async with client() as http, http.get(f"{gateway.base}/backend-api/stall") as response:
        assert response.status == 200
        assert await response.content.readuntil(b"\n\n") == b"data: first\n\n"
        rest, cut_after = await read_until_cut(response, since=asyncio.get_running_loop().time())
    assert rest == b""
    assert 0.9 <= cut_after < 5.0
    log.info("upstream silent mid-stream (--idle-timeout 1): client cut %.3f s later", cut_after)

    await assert_turn_succeeds(gateway)
