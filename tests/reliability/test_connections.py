"""Connections that never speak, speak slowly or pile up: caps, the head deadline, open files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientSession, TCPConnector

from tests.helpers.processes import GatewayProcess, StartGatewayProcess, StartUpstream, open_fds
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

log = logging.getLogger(__name__)

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(gateway: GatewayProcess, source: str = "127.0.0.1") -> Stream:
    """A raw TCP connection to the gateway from a loopback source address (all of 127/8 works)."""
    return await asyncio.open_connection("127.0.0.1", gateway.port, local_addr=(source, 0))


async def closed_within(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the gateway closes the connection within `within` seconds (reading what comes)."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


async def healthz(gateway: GatewayProcess, source: str = "127.0.0.1") -> tuple[int, Any]:
    """healthz's status and JSON body, asked from `source` on a fresh connection."""
    connector = TCPConnector(local_addr=(source, 0), force_close=True)
    async with (
        ClientSession(connector=connector) as http,
        http.get(f"{gateway.base}/codexgate/healthz") as response,
    ):
        return response.status, orjson.loads(await response.read())


def close_all(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.close()


async def test_idle_connections_make_room_and_healthz_answers(
    start_gateway_process: StartGatewayProcess,
) -> None:
    # A deadline far away: here only the caps make room.
    gateway = await start_gateway_process(
        "--max-connections", "20", "--max-connections-per-address", "8",
        "--request-head-timeout", "60",
    )  # fmt: skip
    pid = gateway.process.pid
    status, body = await healthz(gateway)
    assert status == 200
    assert body["connections"]["limit"] == 20
    assert body["connections"]["per_address_limit"] == 8
    # One kept-alive probe from its own address, busy while it asks: (open, idle) counts all
    # the others, so the test can wait for the gateway to have settled (it may lag on a loaded
    # machine, and a connection still busy cannot make room).
    async with ClientSession(connector=TCPConnector(local_addr=("127.0.0.2", 0), limit=1)) as probe:

        async def counts() -> tuple[int, int]:
            async with probe.get(f"{gateway.base}/codexgate/healthz") as response:
                connections = orjson.loads(await response.read())["connections"]
                return connections["open"], connections["idle"]

        await eventually(counts, accept=lambda c: c == (1, 0), timeout=10.0, interval=0.2)
        before = open_fds(pid)
        # One address fills its share with connections that never send a byte; healthz from
        # the same address still answers: the oldest silent connection gives up its place.
        first: list[Stream] = [await connect(gateway) for _ in range(8)]
        await eventually(counts, accept=lambda c: c == (9, 8), timeout=10.0, interval=0.2)
    status, body = await healthz(gateway)
    assert status == 200
    assert await closed_within(first[0][0], 5.0), "the oldest idle connection was not closed"
    assert not await closed_within(first[-1][0], 0.2)

    # Many addresses, 48 silent connections for 20 places: every new one is admitted, the
    # oldest silent ones are closed, the process never holds more than 20.
    flood: list[Stream] = []
    for source in ("127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"):
        flood += [await connect(gateway, source) for _ in range(8)]
    status, body = await eventually(
        lambda: healthz(gateway, "127.0.0.9"),
        accept=lambda h: h[0] == 200 and h[1]["connections"]["evicted"] >= 1 + 8 + 48 - 20,
        timeout=10.0,
        interval=0.2,
    )
    connections = body["connections"]
    assert status == 200
    assert connections["open"] <= 20
    assert connections["refused"] == 0
    assert connections["evicted"] >= 1 + 8 + 48 - 20
    # Each connection holds one descriptor; the newest 19 are still open.
    assert open_fds(pid) <= before + 20
    assert not any([await closed_within(reader, 0.05) for reader, _ in flood[-19:]])
    closed = [await closed_within(reader, 2.0) for reader, _ in first + flood[:20]]
    assert all(closed)
    close_all(first + flood)
    assert "Traceback" not in gateway.log()


async def test_silent_and_slow_request_heads_are_closed_at_the_deadline(
    start_gateway_process: StartGatewayProcess,
) -> None:
    gateway = await start_gateway_process("--request-head-timeout", "1")
    loop = asyncio.get_running_loop()

    silent = await connect(gateway)
    slow = await connect(gateway)

    async def dribble() -> None:
        # A request head one byte at a time, never finished (slowloris).
        head = b"GET /codexgate/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 10_000
        with contextlib.suppress(ConnectionError):
            for byte in head:
                slow[1].write(bytes([byte]))
                await slow[1].drain()
                await asyncio.sleep(0.05)

    dribbler = asyncio.create_task(dribble())
    started = loop.time()
    results = await asyncio.gather(closed_within(silent[0], 10.0), closed_within(slow[0], 10.0))
    took = loop.time() - started
    dribbler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dribbler
    assert all(results), results
    assert took < 5.0, f"closing took {took:.1f}s for a 1s deadline"
    status, body = await healthz(gateway)
    assert status == 200
    assert body["connections"]["head_timeouts"] >= 2
    close_all([silent, slow])


async def ask_healthz(stream: Stream) -> None:
    """One healthz request on a kept-alive connection, its answer read whole."""
    reader, writer = stream
    writer.write(b"GET /codexgate/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
    await reader.readexactly(length)


async def test_kept_alive_connections_get_the_keepalive_timeout_and_their_next_head_the_deadline(
    start_gateway_process: StartGatewayProcess,
) -> None:
    gateway = await start_gateway_process("--request-head-timeout", "1", "--keepalive-timeout", "3")
    loop = asyncio.get_running_loop()
    quiet = await connect(gateway)
    dribbling = await connect(gateway)
    await ask_healthz(quiet)
    await ask_healthz(dribbling)
    answered = loop.time()

    # Past the head deadline, a kept-alive connection is still there for its next request.
    await asyncio.sleep(1.6)
    await ask_healthz(quiet)
    asked_again = loop.time()
    # The other starts its next head and never finishes it: the head deadline runs from there.
    dribbling[1].write(b"GET /codexgate/healthz HTTP/1.1\r\nX-Pad: ")
    started_head = loop.time()
    assert await closed_within(dribbling[0], 10.0)
    assert 0.8 <= loop.time() - started_head < 5.0
    assert loop.time() - answered >= 2.0  # it had outlived the head deadline while quiet

    assert await closed_within(quiet[0], 10.0)
    quiet_for = loop.time() - asked_again
    assert 2.5 <= quiet_for < 8.0, f"closed after {quiet_for:.1f}s quiet for a 3s keep-alive"
    status, body = await healthz(gateway)
    assert status == 200
    assert body["connections"]["keepalive_timeouts"] >= 1
    assert body["connections"]["head_timeouts"] >= 1
    close_all([quiet, dribbling])


async def test_busy_connections_outlive_the_deadline_and_beyond_the_cap_get_503(
    start_upstream: StartUpstream, start_gateway_process: StartGatewayProcess
) -> None:
    upstream = await start_upstream()
    gateway = await start_gateway_process(
        "--upstream", upstream.base, "--max-connections", "3",
        "--max-connections-per-address", "0", "--request-head-timeout", "1",
    )  # fmt: skip
    headers = f"Host: 127.0.0.1\r\nAuthorization: {bearer('seat_a')}\r\n".encode()

    # Two streams that go silent after one event (a model thinking)...
    streams = [await connect(gateway) for _ in range(2)]
    for _, writer in streams:
        writer.write(b"GET /backend-api/stall HTTP/1.1\r\n" + headers + b"\r\n")
    for reader, _ in streams:
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    # ...and an upload whose body comes slowly, a byte every 0.3 s.
    upload = await connect(gateway)
    upload[1].write(
        b"POST /backend-api/echo/upload HTTP/1.1\r\n" + headers
        + b"Content-Length: 10\r\nConnection: close\r\n\r\n"
    )  # fmt: skip

    async def send_body() -> None:
        for _ in range(10):
            await asyncio.sleep(0.3)
            upload[1].write(b"x")

    sender = asyncio.create_task(send_body())
    await asyncio.sleep(0.5)

    # Every place is busy: a new connection is answered 503 at once, healthz too.
    refused = await connect(gateway)
    answer = await asyncio.wait_for(refused[0].read(), 5.0)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 1\r\n" in answer
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]["type"] == "too_many_connections"
    status, _ = await healthz(gateway)
    assert status == 503

    # The upload outlives the 1 s head deadline and is answered whole.
    await sender
    reply = await asyncio.wait_for(upload[0].read(), 5.0)
    assert reply.startswith(b"HTTP/1.1 200")
    assert orjson.loads(reply.partition(b"\r\n\r\n")[2])["body_length"] == 10
    # Its place is free again.
    status, body = await eventually(
        lambda: healthz(gateway), accept=lambda h: h[0] == 200, timeout=5.0, interval=0.2
    )
    assert status == 200
    assert body["connections"]["refused"] >= 2
    assert body["connections"]["head_timeouts"] == 0
    # The silent streams are still open, past three head deadlines.
    for reader, _ in streams:
        assert not await closed_within(reader, 0.1)
    # Refusals are logged once a minute, not once each.
    assert gateway.log().count("refused new connections") == 1
    close_all([*streams, upload, refused])


async def test_the_cap_fits_the_open_files_limit(tmp_path: Path) -> None:
    # A hard limit of 200 open files: (200 - 64 reserved) / 2 per proxied connection = 68.
    gateway = GatewayProcess(["serve"], tmp_path, file_limit=200)
    try:
        await gateway.wait_ready()
        status, body = await healthz(gateway)
        assert (status, body["connections"]["limit"]) == (200, 68)
        expected = "open-files limit 200 allows 68 connections, not max_connections 8192"
        assert expected in gateway.log()
        # More silent connections than that: the process stays below its limit and answers.
        flood = [await connect(gateway, f"127.0.1.{index % 50}") for index in range(100)]
        status, body = await eventually(
            lambda: healthz(gateway),
            accept=lambda h: h[0] == 200 and h[1]["connections"]["evicted"] >= 100 - 67,
            timeout=10.0,
            interval=0.2,
        )
        assert status == 200
        assert body["connections"]["accept_errors"] == 0
        assert open_fds(gateway.process.pid) < 200 - 32
        close_all(flood)
        assert await gateway.terminate() == 0
    finally:
        gateway.kill()
