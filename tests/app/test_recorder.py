"""The recorder: snapshots coalesce per account and limit, request records are bounded, stop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

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
from codexgate.storage.sqlite.connection import RecordBatch
from codexgate.storage.sqlite.store import Store
from tests.helpers.gateway import StartGateway, app_of
from tests.helpers.waiting import eventually

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
    await eventually(lambda: recorder.stats().recorded + recorder.stats().requests_logged >= 6)
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
    await eventually(lambda: recorder.stats().recorded + recorder.stats().requests_logged >= 4)
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


class _StoreWithABug(Store):
    """The real SQLite store, with a bug (not an outage) in how it writes requests."""

    async def _insert_requests(self, requests: Sequence[RequestRecord], batch: RecordBatch) -> None:
        raise ValueError("a bug in laying out requests")


async def test_a_bug_in_the_store_is_not_a_database_outage(tmp_path: Path) -> None:
    store = await _StoreWithABug.open(tmp_path / "codexgate.db")
    recorder = Recorder(store, queue_size=10)
    recorder.start()
    try:
        recorder.offer(_request(1))
        await eventually(lambda: recorder.stats().requests_dropped == 1)
    finally:
        await recorder.stop()
        await store.close()
    stats = recorder.stats()
    assert stats.db_state == "ok"  # healthz stays ok: a bug is logged, not an outage
    assert stats.last_error == "ValueError: a bug in laying out requests"


async def test_a_closed_store_is_a_database_outage(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "codexgate.db")
    await store.close()
    recorder = Recorder(store, queue_size=10)
    recorder.start()
    try:
        recorder.offer(_request(1))
        await eventually(lambda: recorder.stats().requests_dropped == 1)
    finally:
        await recorder.stop()
    stats = recorder.stats()
    assert stats.db_state == "error"
    assert stats.last_error is not None
    assert stats.last_error.startswith("ValueError: ")
