"""The recorder: snapshots coalesce per account and limit, request records are bounded, stop."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.core.models import (
    FIVE_HOUR,
    Identity,
    LimitReport,
    RequestRecord,
    Snapshot,
    UsageReport,
    Window,
)
from codexgate.keys import RECORDER, STORE
from codexgate.services.recorder import Recorder
from tests.conftest import StartGateway, app_of

ACCOUNTS = ("token:a", "token:b", "token:c")
LIMITS = ("codex", "codex_other")


def _snapshot(account: str, limit: str, used: float) -> Snapshot:
    window = Window("primary", FIVE_HOUR, "length", used, 300, 1893456000)
    return Snapshot(
        identity=Identity(account_key=account, token_fingerprint=account[-1] * 64),
        captured_at=1_800_000_000.0 + used,
        source="headers",
        report=UsageReport(limits=(LimitReport(limit, None, (window,)),)),
    )


def _request(index: int) -> RequestRecord:
    return RequestRecord(
        started_at=1_800_000_000.0 + index,
        identity=None,
        method="POST",
        path="/backend-api/codex/responses",
        transport="sse",
        status=200,
    )


async def _written(recorder: Recorder, count: int) -> None:
    deadline = time.monotonic() + 5
    while recorder.stats().recorded + recorder.stats().requests_logged < count:
        assert time.monotonic() < deadline, recorder.stats()
        await asyncio.sleep(0.01)


async def test_a_full_queue_of_snapshots_coalesces_per_account_and_limit(
    start_gateway: StartGateway, http: ClientSession
) -> None:
    gateway = await start_gateway(queue_size=len(ACCOUNTS) * len(LIMITS))
    recorder = app_of(gateway)[RECORDER]
    for used in range(50):  # all offered before the writer gets a turn: the queue is full
        for account in ACCOUNTS:
            for limit in LIMITS:
                recorder.offer(_snapshot(account, limit, float(used)))
    stats = recorder.stats()
    assert (stats.queue_depth, stats.dropped, stats.coalesced) == (6, 0, 6 * 49)
    await _written(recorder, 6)
    async with http.get(f"http://127.0.0.1:{gateway.port}/codexgate/healthz") as response:
        health = await response.json()
    assert health["snapshots"]["coalesced"] == 6 * 49
    assert health["snapshots"]["dropped"] == 0
    store = app_of(gateway)[STORE]
    latest = await store.latest_usage()
    assert sorted((row.account_key, row.usage.limit_id) for row in latest) == sorted(
        (account, limit) for account in ACCOUNTS for limit in LIMITS
    )
    assert {row.usage.five_hour_used_percent for row in latest} == {49.0}
    assert await store.count_history() == 6


async def test_request_records_beyond_capacity_are_dropped_and_counted(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(queue_size=4)
    recorder = app_of(gateway)[RECORDER]
    recorder.offer(_snapshot("token:a", "codex", 1.0))
    for index in range(10):
        recorder.offer(_request(index))
    recorder.offer(_snapshot("token:a", "codex", 2.0))  # replaces the waiting one: kept
    recorder.offer(_snapshot("token:b", "codex", 3.0))  # a new key in a full queue: dropped
    stats = recorder.stats()
    assert (stats.queue_depth, stats.queue_capacity) == (4, 4)
    assert (stats.requests_dropped, stats.dropped, stats.coalesced) == (7, 1, 1)
    await _written(recorder, 4)
    assert (recorder.stats().recorded, recorder.stats().requests_logged) == (1, 3)


async def test_cancelling_the_caller_of_stop_cancels_it(gateway: TestServer) -> None:
    recorder = app_of(gateway)[RECORDER]
    recorder.offer(_snapshot("token:a", "codex", 1.0))
    for _ in range(3):  # the writer wakes and lingers over the batch: it is not idle
        await asyncio.sleep(0)
    stopping = asyncio.create_task(recorder.stop())
    await asyncio.sleep(0)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
