"""PostgreSQL stopped and started again under load: every request answered whole, recording
resumes by itself, and the counts add up."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from tests.helpers.postgres import PostgresServer
from tests.helpers.processes import StartGatewayProcess, StartUpstream, health
from tests.helpers.soak import DELTAS, EVENT_DELAY, Tally, load
from tests.helpers.waiting import eventually

log = logging.getLogger(__name__)

LOAD_SECONDS: Final = 14.0
DOWN_AFTER: Final = 3.0
DOWN_FOR: Final = 4.0


async def test_postgresql_restarted_during_a_soak_costs_no_request(
    start_upstream: StartUpstream,
    start_gateway_process: StartGatewayProcess,
    postgres_server: PostgresServer,
    postgres_database: str,
) -> None:
    upstream = await start_upstream(event_delay=EVENT_DELAY, deltas=DELTAS)
    gateway = await start_gateway_process("--upstream", upstream.base, "--db", postgres_database)
    tally = Tally()
    running = asyncio.create_task(load(gateway, LOAD_SECONDS, tally))
    await asyncio.sleep(DOWN_AFTER)
    before = tally.requests
    await postgres_server.stop_async(immediate=True)  # as a crash: no goodbye to clients
    try:
        down = await eventually(
            lambda: health(gateway),
            accept=lambda body: body["db"]["state"] == "error",
            timeout=DOWN_FOR,
            interval=0.1,
        )
        await asyncio.sleep(DOWN_FOR)
        during = tally.requests - before
    finally:
        await postgres_server.start_async()
    await running
    log.info(
        "%d requests, %d while PostgreSQL was down; healthz then: %s",
        tally.requests,
        during,
        down["db"],
    )
    assert tally.errors == []
    assert during > 0  # traffic went on while the database was away
    assert down["status"] == "degraded"

    # Recording resumed by itself, and every request is either in the log or counted dropped:
    # what waited during the outage was written once the server was back, and only what did
    # not fit in the queue (64 clients fill 10,000 places in a few seconds) was dropped.
    status = await eventually(
        lambda: health(gateway),
        accept=lambda body: (
            body["db"]["state"] == "ok"
            and body["queue"]["depth"] == 0
            and body["requests"]["logged"] + body["requests"]["dropped"] >= tally.requests
        ),
        timeout=30.0,
        interval=0.2,
    )
    logged, dropped = status["requests"]["logged"], status["requests"]["dropped"]
    log.info("after the outage: %d requests logged, %d dropped", logged, dropped)
    assert logged + dropped == tally.requests
    assert logged > before + during // 2  # most of what the outage saw waited and was written
    assert status["db"]["failed_writes"] >= 1
    rows = await postgres_server.run_sql(postgres_database, "SELECT count(*) AS n FROM requests")
    assert rows[0]["n"] == logged
