"""Clients that leave mid-stream or read slowly: nothing leaks, memory stays bounded."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from aiohttp.test_utils import TestServer

from tests.helpers.fake_upstream import FakeUpstream
from tests.helpers.processes import (
    GatewayProcess,
    StartGatewayProcess,
    StartUpstream,
    health,
    open_fds,
    rss_bytes,
    tcp_connections,
)
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

log = logging.getLogger(__name__)

MB = 1024 * 1024
TURN = "/backend-api/codex/responses"
HANG_UPS = 1_000
AT_ONCE = 100
# The same hang-ups before the baseline, so that it includes what a first burst allocates.
WARM_UP_HANG_UPS = 200
# Memory back to baseline: within 10 %, or 3 MB for a small process.
RSS_TOLERANCE = 0.10
RSS_FLOOR = 3 * MB


@dataclass(frozen=True, slots=True)
class Held:
    """What the gateway process holds: upstream connections, asyncio tasks, open files, memory."""

    upstream_connections: int
    tasks: int
    fds: int
    rss: int


async def held(gateway: GatewayProcess, upstream_port: int) -> Held:
    """What the gateway holds right now (tasks from healthz, the rest from /proc)."""
    pid = gateway.process.pid
    tasks = (await health(gateway))["tasks"]
    return Held(tcp_connections(pid, upstream_port), tasks, open_fds(pid), rss_bytes(pid))


async def hang_ups(gateway: GatewayProcess, count: int) -> None:
    """`count` clients, AT_ONCE at a time, each leaving its stream after the first event."""
    limit = asyncio.Semaphore(AT_ONCE)

    async def hang_up(http: ClientSession, index: int) -> None:
        headers = {"Authorization": bearer(("seat_a", "seat_b", "personal")[index % 3])}
        async with limit:
            # Half are turns that keep streaming: the gateway's next write finds the client
            # gone. Half go silent after one event, like a model thinking: only cancelling the
            # handler on the hang-up can end those.
            if index % 2:
                response = await http.get(f"{gateway.base}/backend-api/stall", headers=headers)
            else:
                response = await http.post(f"{gateway.base}{TURN}", data=b"{}", headers=headers)
            assert response.status == 200
            first = await response.content.readuntil(b"\n\n")
            assert first.startswith((b"event: response.created", b"data: first"))
            response.close()  # hang up: the connection closes mid-body

    async with (
        ClientSession(
            connector=TCPConnector(limit=0, force_close=True), timeout=ClientTimeout(total=30)
        ) as http,
        asyncio.TaskGroup() as clients,
    ):
        for index in range(count):
            clients.create_task(hang_up(http, index))


async def test_a_thousand_clients_hanging_up_mid_stream(
    start_upstream: StartUpstream, start_gateway_process: StartGatewayProcess
) -> None:
    # Turns that stream for hours (an event every 50 ms), and /stall's silent streams: each
    # one ends only by the hang-up.
    upstream = await start_upstream(event_delay=0.05, deltas=100_000)
    gateway = await start_gateway_process("--upstream", upstream.base)
    pid = gateway.process.pid

    await hang_ups(gateway, WARM_UP_HANG_UPS)
    baseline = await eventually(
        lambda: held(gateway, upstream.port),
        accept=lambda now: now.upstream_connections == 0,
        timeout=10.0,
        interval=0.2,
    )
    assert baseline.upstream_connections == 0

    peak = 0
    done = asyncio.Event()

    async def sample_connections() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tcp_connections(pid, upstream.port))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample_connections())
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await hang_ups(gateway, HANG_UPS)
    finally:
        done.set()
        await sampler
    took = loop.time() - started
    # The probe sees the streams' upstream connections, so its zero below means something.
    assert peak >= AT_ONCE // 4

    def back_to_baseline(now: Held) -> bool:
        return (
            now.upstream_connections <= baseline.upstream_connections
            and now.tasks <= baseline.tasks
            and now.fds <= baseline.fds
            and now.rss <= max(baseline.rss * (1 + RSS_TOLERANCE), baseline.rss + RSS_FLOOR)
        )

    after = await eventually(
        lambda: held(gateway, upstream.port), accept=back_to_baseline, timeout=15.0, interval=0.2
    )
    log.info(
        "%d hang-ups in %.1f s, peak %d upstream connections; before %s, after %s",
        HANG_UPS,
        took,
        peak,
        baseline,
        after,
    )
    assert after.upstream_connections == baseline.upstream_connections == 0
    assert after.tasks <= baseline.tasks
    assert after.fds <= baseline.fds
    assert after.rss <= max(baseline.rss * (1 + RSS_TOLERANCE), baseline.rss + RSS_FLOOR)
    # Every hang-up finished its exchange: one request-log row each, none lost.
    expected = WARM_UP_HANG_UPS + HANG_UPS
    logged = await eventually(
        lambda: _logged(gateway), accept=lambda value: value >= expected, timeout=10.0, interval=0.2
    )
    assert logged == expected


async def _logged(gateway: GatewayProcess) -> int:
    logged: int = (await health(gateway))["requests"]["logged"]
    return logged


# The slow reader: a 4 KiB receive buffer, 4 KiB every 10 ms (~400 KB/s) for SLOW_FOR seconds,
# from an upstream that would send gigabytes in that time to anyone reading as fast as it writes.
SLOW_FOR = 4.0
READ_SIZE = 4096
READ_EVERY = 0.01
# Bound on the gateway's memory growth while it relays the firehose to the slow reader.
RSS_GROWTH_LIMIT = 30 * MB
# Bound on what the upstream may have sent beyond what the client read: socket buffers only
# (the kernel may give a loopback receive buffer up to tcp_rmem's maximum).
IN_FLIGHT_LIMIT = 64 * MB


async def test_a_slow_reader_does_not_grow_the_gateway_memory(
    fake: FakeUpstream, upstream_server: TestServer, start_gateway_process: StartGatewayProcess
) -> None:
    upstream_port = upstream_server.port
    assert upstream_port is not None
    gateway = await start_gateway_process("--upstream", f"http://127.0.0.1:{upstream_port}")
    pid = gateway.process.pid
    async with ClientSession() as http, http.get(f"{gateway.base}/big?mb=32") as response:
        async for _ in response.content.iter_any():  # warm-up: a fast reader's 32 MB
            pass
    baseline = rss_bytes(pid)

    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READ_SIZE)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", gateway.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=READ_SIZE)
    writer.write(b"GET /backend-api/firehose HTTP/1.1\r\nHost: gateway\r\n\r\n")
    received = 0
    peak = baseline
    deadline = loop.time() + SLOW_FOR
    try:
        async with asyncio.timeout(SLOW_FOR + 10.0):
            while loop.time() < deadline:
                received += len(await reader.read(READ_SIZE))
                peak = max(peak, rss_bytes(pid))
                await asyncio.sleep(READ_EVERY)
    finally:
        writer.close()
    sent = fake.firehose_sent
    log.info(
        "slow reader: read %.1f MB in %.0f s; upstream sent %.1f MB; gateway RSS %.1f MB, "
        "peak %.1f MB",
        received / MB,
        SLOW_FOR,
        sent / MB,
        baseline / MB,
        peak / MB,
    )
    assert received > 100 * READ_SIZE  # the stream moved all along
    assert sent - received < IN_FLIGHT_LIMIT
    assert peak - baseline < RSS_GROWTH_LIMIT

    # The reader's hang-up closes the upstream connection too, and the firehose stops.
    after = await eventually(
        lambda: held(gateway, upstream_port),
        accept=lambda now: now.upstream_connections == 0,
        timeout=10.0,
        interval=0.2,
    )
    assert after.upstream_connections == 0
    stopped_at = fake.firehose_sent
    await asyncio.sleep(0.5)
    assert fake.firehose_sent == stopped_at
