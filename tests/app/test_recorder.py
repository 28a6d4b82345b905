"""The recorder: snapshots coalesce per account and limit, request records are bounded, stop."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
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
from codexgate.core.rows import RecordResult
from codexgate.keys import RECORDER, STORE
from codexgate.services.recorder import Recorder, RecorderStats
from codexgate.storage.batch import RecordBatch
from codexgate.storage.interface import StorageUnavailable
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

    def _insert_requests(
        self, conn: sqlite3.Connection, requests: Sequence[RequestRecord], batch: RecordBatch
    ) -> None:
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
        stats = await eventually(recorder.stats, accept=lambda stats: stats.failed_writes >= 1)
        # The record waits for the database to come back: nothing is lost yet.
        assert (stats.db_state, stats.queue_depth, stats.requests_dropped) == ("error", 1, 0)
        assert stats.last_error is not None
        assert stats.last_error.startswith("ValueError: ")
    finally:
        await recorder.stop()
    # It never came back: what waited is dropped at shutdown, and counted.
    assert (recorder.stats().queue_depth, recorder.stats().requests_dropped) == (0, 1)


class _StoreWithOutages(Store):
    """The real SQLite store, which a test takes down: record() then fails as it does when the
    database is unreachable, after waiting for `hold` (a server that is slow to fail)."""

    down = False
    attempts = 0
    hold: asyncio.Event | None = None

    async def record(
        self, items: Sequence[Snapshot | RequestRecord], *, max_accounts: int | None = None
    ) -> RecordResult:
        self.attempts += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.down:
            raise StorageUnavailable("OSError: the database is down")
        return await super().record(items, max_accounts=max_accounts)


@pytest.fixture
async def flaky_store(tmp_path: Path) -> AsyncIterator[_StoreWithOutages]:
    """A store that is down until the test brings it up."""
    store = await _StoreWithOutages.open(tmp_path / "codexgate.db")
    store.down = True
    yield store
    await store.close()


def _accounted(stats: RecorderStats) -> int:
    """Snapshots whose fate is known: written, dropped, or replaced by a newer one."""
    return stats.recorded + stats.dropped + stats.coalesced


async def test_an_outage_loses_nothing_that_fits_and_recording_resumes_by_itself(
    flaky_store: _StoreWithOutages, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(flaky_store, queue_size=100)
    recorder.start()
    try:
        for used in range(5):
            for account in ACCOUNTS:
                recorder.offer(_snapshot(account, "codex", float(used)))
            recorder.offer(_request(used))
        down = await eventually(recorder.stats, accept=lambda stats: stats.failed_writes >= 2)
        assert (down.db_state, down.last_error) == ("error", "OSError: the database is down")
        assert down.failing_since is not None
        assert time.time() - 5 < down.failing_since <= time.time()
        assert (down.queue_depth, down.recorded, down.dropped, down.requests_dropped) == (
            20,
            0,
            0,
            0,
        )
        with caplog.at_level(logging.INFO, logger="codexgate.services.recorder"):
            flaky_store.down = False
            up = await eventually(recorder.stats, accept=lambda stats: stats.queue_depth == 0)
    finally:
        await recorder.stop()
    assert (up.db_state, up.failing_since) == ("ok", None)
    assert (up.recorded, up.requests_logged) == (15, 5)
    assert (up.dropped, up.requests_dropped, up.coalesced) == (0, 0, 0)
    assert "database writes recovered" in caplog.messages
    assert await flaky_store.count_history() == 15
    assert await flaky_store.count_requests() == 5


async def test_the_writer_backs_off_while_the_database_is_down(
    flaky_store: _StoreWithOutages,
) -> None:
    recorder = Recorder(flaky_store, queue_size=10, retry_delay=0.05, max_retry_delay=0.4)
    recorder.start()
    try:
        recorder.offer(_request(1))
        await asyncio.sleep(1.0)
        # Pauses of 0.05, 0.1, 0.2, 0.4, 0.4, ... (plus the 0.05 s linger): 4 or 5 attempts in
        # a second, where retrying at once would make 20.
        assert 3 <= flaky_store.attempts <= 8
        flaky_store.down = False
        await eventually(lambda: recorder.stats().requests_logged == 1)
        written_at = flaky_store.attempts
        flaky_store.down = True  # a new outage starts over from the shortest pause
        recorder.offer(_request(2))
        # At 0.05, 0.15 and 0.3 s; without the reset, the third would come at 0.95 s.
        await eventually(lambda: flaky_store.attempts >= written_at + 3, timeout=0.7)
    finally:
        flaky_store.down = False
        await recorder.stop()
    assert (recorder.stats().requests_logged, recorder.stats().requests_dropped) == (2, 0)


async def test_a_full_queue_in_an_outage_keeps_the_newest_value_of_every_account_and_limit(
    flaky_store: _StoreWithOutages,
) -> None:
    keys = [(account, limit) for account in ACCOUNTS for limit in LIMITS]
    recorder = Recorder(flaky_store, queue_size=len(keys), retry_delay=0.05)
    offered = 0

    def offer_round(used: float) -> None:
        nonlocal offered
        for account, limit in keys:
            recorder.offer(_snapshot(account, limit, used))
            offered += 1

    flaky_store.hold = asyncio.Event()  # the database takes its time to fail
    recorder.start()
    try:
        offer_round(0.0)
        await eventually(lambda: flaky_store.attempts == 1)  # all six in flight
        offer_round(1.0)  # the queue has room again
        offer_round(2.0)  # full: each replaces the waiting one of its key
        recorder.offer(_request(1))  # full, and a request record has nothing to replace
        stats = recorder.stats()
        assert (stats.queue_depth, stats.coalesced, stats.dropped, stats.requests_dropped) == (
            12,
            6,
            0,
            1,
        )
        flaky_store.hold.set()
        flaky_store.hold = None
        # The failed batch comes back to a full queue: newer values of all its keys wait, so
        # the older ones are coalesced, not kept over them, and nothing is dropped.
        stats = await eventually(recorder.stats, accept=lambda stats: stats.failed_writes >= 1)
        assert (stats.queue_depth, stats.coalesced, stats.dropped) == (6, 12, 0)
        offer_round(3.0)
        flaky_store.down = False
        stats = await eventually(recorder.stats, accept=lambda stats: stats.queue_depth == 0)
    finally:
        await recorder.stop()
    assert (stats.recorded, stats.dropped, stats.coalesced) == (6, 0, 18)
    assert _accounted(stats) == offered == 24
    latest = await flaky_store.latest_usage()
    assert sorted((row.account_key, row.usage.limit_id) for row in latest) == sorted(keys)
    assert {row.usage.five_hour_used_percent for row in latest} == {3.0}
    assert await flaky_store.count_history() == 6


async def test_a_failed_batch_goes_back_in_front_and_over_capacity_its_oldest_are_dropped(
    flaky_store: _StoreWithOutages,
) -> None:
    recorder = Recorder(flaky_store, queue_size=4, retry_delay=0.05)
    flaky_store.hold = asyncio.Event()
    recorder.start()
    try:
        for index in range(4):
            recorder.offer(_request(index))
        await eventually(lambda: flaky_store.attempts == 1)  # requests 0-3 in flight
        for index in range(4, 7):
            recorder.offer(_request(index))
        flaky_store.hold.set()
        flaky_store.hold = None
        stats = await eventually(recorder.stats, accept=lambda stats: stats.failed_writes >= 1)
        # 4 back + 3 waiting in room for 4: the three oldest go.
        assert (stats.queue_depth, stats.requests_dropped) == (4, 3)
        flaky_store.down = False
        await eventually(lambda: recorder.stats().requests_logged == 4)
    finally:
        await recorder.stop()
    rows = await flaky_store.requests()
    written = [row.started_at - 1_800_000_000.0 for row in sorted(rows, key=lambda row: row.id)]
    assert written == [3.0, 4.0, 5.0, 6.0]  # the one put back first, in arrival order
    assert recorder.stats().requests_dropped == 3


async def test_stop_during_an_outage_tries_once_more_then_drops_and_counts(
    flaky_store: _StoreWithOutages,
) -> None:
    recorder = Recorder(flaky_store, queue_size=10, retry_delay=30.0)
    recorder.start()
    for account in ACCOUNTS:
        recorder.offer(_snapshot(account, "codex", 1.0))
    recorder.offer(_request(1))
    await eventually(lambda: recorder.stats().failed_writes == 1)  # now pausing for 30 s
    started = time.monotonic()
    await recorder.stop()
    assert time.monotonic() - started < 1.0
    assert flaky_store.attempts == 2  # one last try at shutdown
    stats = recorder.stats()
    assert (stats.queue_depth, stats.dropped, stats.requests_dropped) == (0, 3, 1)
    assert _accounted(stats) == 3


async def test_stop_gives_up_on_a_database_that_does_not_answer(
    flaky_store: _StoreWithOutages,
) -> None:
    recorder = Recorder(flaky_store, queue_size=10, stop_timeout=0.5)
    flaky_store.hold = asyncio.Event()  # never set: every write hangs
    recorder.start()
    recorder.offer(_snapshot("token:a", "codex", 1.0))
    recorder.offer(_request(1))
    await eventually(lambda: flaky_store.attempts == 1)
    started = time.monotonic()
    await recorder.stop()
    assert 0.4 < time.monotonic() - started < 1.5
    stats = recorder.stats()
    assert (stats.queue_depth, stats.recorded, stats.dropped, stats.requests_dropped) == (
        0,
        0,
        1,
        1,
    )
