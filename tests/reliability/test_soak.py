"""A soak: 64 clients for a minute, not one error, memory flat after the warm-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from tests.helpers.processes import StartGatewayProcess, StartUpstream, health, rss_bytes
from tests.helpers.soak import CONCURRENCY, DELTAS, EVENT_DELAY, Tally, load
from tests.helpers.waiting import eventually

log = logging.getLogger(__name__)

MB = 1024 * 1024
SOAK_SECONDS: Final = 60.0  # issue 7: "a soak at concurrency 64 for 60 s"
WARM_UP_SECONDS: Final = 10.0
RSS_TOLERANCE: Final = 0.10


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
