"""A soak: 64 clients for a minute, not one error, memory flat after the warm-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Final

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

from tests.helpers.fake_upstream import sse_events
from tests.helpers.paths import DATA
from tests.helpers.processes import (
    GatewayProcess,
    StartGatewayProcess,
    StartUpstream,
    health,
    rss_bytes,
)
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

log = logging.getLogger(__name__)

MB = 1024 * 1024
SOAK_SECONDS: Final = 60.0  # issue 7: "a soak at concurrency 64 for 60 s"
WARM_UP_SECONDS: Final = 10.0
CONCURRENCY: Final = 64
RSS_TOLERANCE: Final = 0.10
# Turns of 20 events (the stream-basic sample with 14 more deltas), 2 ms apart.
DELTAS: Final = 14
EVENT_DELAY: Final = 0.002
SEATS: Final = ("seat_a", "seat_b", "personal")


@dataclass
class Tally:
    """What the load saw: requests answered whole, and every error."""

    requests: int = 0
    errors: list[str] = field(default_factory=list)


def expected_turn() -> bytes:
    """The exact body the upstream process streams for a turn."""
    events = sse_events("stream-basic.sse")
    return b"".join([*events[:3], *[events[2]] * DELTAS, *events[3:]])


async def load(gateway: GatewayProcess, seconds: float, tally: Tally) -> None:
    """CONCURRENCY clients on keep-alive connections for `seconds`: 3 turns, then a usage query."""
    turn = expected_turn()
    usage = (DATA / "wham-usage-plus.json").read_bytes()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def one(http: ClientSession, number: int) -> None:
        headers = {"Authorization": bearer(SEATS[number % len(SEATS)])}
        if number % 4 == 3:
            url, method, body, expected = "/backend-api/wham/usage", "GET", None, usage
        else:
            url, method, body, expected = "/backend-api/codex/responses", "POST", b"{}", turn
        try:
            async with http.request(
                method, f"{gateway.base}{url}", data=body, headers=headers
            ) as response:
                answer = await response.read()
        except (ClientError, TimeoutError) as exc:
            tally.errors.append(f"{method} {url}: {exc!r}")
            return
        if response.status != 200 or answer != expected:
            tally.errors.append(f"{method} {url}: {response.status}, {len(answer)} bytes")
            return
        tally.requests += 1

    async def client(http: ClientSession, index: int) -> None:
        number = index
        while loop.time() < deadline:
            await one(http, number)
            number += 1

    async with (
        ClientSession(
            connector=TCPConnector(limit=CONCURRENCY), timeout=ClientTimeout(total=30)
        ) as http,
        asyncio.TaskGroup() as clients,
    ):
        for index in range(CONCURRENCY):
            clients.create_task(client(http, index))


async def test_soak_at_concurrency_64_for_60_seconds(
    start_upstream: StartUpstream, start_gateway_process: StartGatewayProcess
) -> None:
    upstream = await start_upstream(event_delay=EVENT_DELAY, deltas=DELTAS)
    gateway = await start_gateway_process("--upstream", upstream.base)
    pid = gateway.process.pid
    tally = Tally()

    rss: list[int] = []

    async def sample_rss() -> None:
        while True:
            rss.append(rss_bytes(pid))
            await asyncio.sleep(1.0)

    running = asyncio.create_task(load(gateway, WARM_UP_SECONDS + SOAK_SECONDS, tally))
    await asyncio.sleep(WARM_UP_SECONDS)
    warmed_up = rss_bytes(pid)
    warmed_up_requests = tally.requests
    sampler = asyncio.create_task(sample_rss())
    try:
        await running
        at_end = rss_bytes(pid)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    soaked = tally.requests - warmed_up_requests
    log.info(
        "soak: %d requests in %.0f s after a %.0f s warm-up (%.0f/s), %d errors; RSS after "
        "warm-up %.1f MB, at the end %.1f MB, lowest %.1f MB, highest %.1f MB",
        soaked,
        SOAK_SECONDS,
        WARM_UP_SECONDS,
        soaked / SOAK_SECONDS,
        len(tally.errors),
        warmed_up / MB,
        at_end / MB,
        min(rss) / MB,
        max(rss) / MB,
    )
    assert tally.errors == []
    assert soaked >= 10 * CONCURRENCY  # the load ran
    assert at_end <= warmed_up * (1 + RSS_TOLERANCE)

    # Monitoring kept up: nothing dropped, and every request has its log row.
    status = await eventually(
        lambda: health(gateway),
        accept=lambda body: body["requests"]["logged"] >= tally.requests,
        timeout=10.0,
        interval=0.2,
    )
    assert status["status"] == "ok"
    assert status["snapshots"]["dropped"] == 0
    assert status["requests"] == {"logged": tally.requests, "dropped": 0}
