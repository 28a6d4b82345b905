"""Retention: pruning history and the request log in batches, downsampling, the task's life."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from codexgate.app import SERVER_OPTIONS, create_app
from codexgate.config import Config
from codexgate.core.models import Identity, LimitReport, RequestRecord, Snapshot
from codexgate.core.rows import UsageRow
from codexgate.keys import RECORDER, RETENTION, RETENTION_OPTIONS, STORE
from codexgate.services.retention import DAY, Retention, RetentionOptions
from codexgate.storage.interface import Storage
from codexgate.storage.sqlite.store import Store
from tests.helpers.builders import T0, identity, request_record, snap, windows
from tests.helpers.gateway import app_of, sqlite_file, turn
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

NOW = T0 + 100 * DAY  # the retention clock of the store-level tests; a whole hour
ALICE = identity("seat:acct-1:user-1", email="alice@example.com")
BOB = identity("seat:acct-2:user-2", email="bob@example.com")
CAROL = identity("seat:acct-3:user-3", email="carol@example.com")
# Small batches, so that every pass takes several transactions.
FAST = RetentionOptions(first_delay=0.0, interval=0.02, batch_size=7, pause=0.0)

StartRetaining = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store with a 300 s heartbeat."""
    opened = await Store.open(tmp_path / "db" / "codexgate.db")
    yield opened
    await opened.close()


@pytest.fixture
def start_retaining(aiohttp_server: AiohttpServer, config: Config) -> StartRetaining:
    """Start codexgate with retention options; keyword arguments override config fields."""

    async def start(options: RetentionOptions, **overrides: object) -> TestServer:
        app = create_app(dataclasses.replace(config, **overrides))  # type: ignore[arg-type]
        app[RETENTION_OPTIONS] = options
        server_options = {k: v for k, v in SERVER_OPTIONS.items() if k != "handler_cancellation"}
        return await aiohttp_server(app, **server_options)

    return start


def retention(
    store: Store,
    *,
    history_days: float = 0.0,
    request_days: float = 0.0,
    downsample: bool = False,
    batch_size: int = 3,
    now: float = NOW,
) -> Retention:
    """A retention task (not started) whose clock says now."""
    return Retention(
        store,
        history_days=history_days,
        request_days=request_days,
        downsample=downsample,
        options=RetentionOptions(batch_size=batch_size, pause=0.0),
        clock=lambda: now,
    )


def changing(who: Identity, start: float, count: int, *, step: float = 60.0) -> list[Snapshot]:
    """count snapshots of who, step seconds apart, each with new values (so each is a row)."""
    return [
        snap(
            at=start + step * i,
            who=who,
            limits=(
                LimitReport("codex", None, windows(float(i))),
                LimitReport("codex_bengalfox", None, windows(float(100 - i))),
            ),
        )
        for i in range(count)
    ]


async def all_usage(store: Storage) -> list[UsageRow]:
    """Every usage row, by id."""
    return await store.usage_after(0, limit=100_000)


def newest_per_key(rows: Sequence[UsageRow]) -> set[int]:
    """The id of the newest row (by captured_at, id) of each account and limit."""
    newest: dict[tuple[int, str], UsageRow] = {}
    for row in rows:
        key = (row.account_id, row.limit_id)
        kept = newest.get(key)
        if kept is None or (row.captured_at, row.id) > (kept.captured_at, kept.id):
            newest[key] = row
    return {row.id for row in newest.values()}


async def seed(path: Path, items: Sequence[Snapshot | RequestRecord]) -> None:
    """Write items through a Store of their own on path, before a gateway opens it."""
    store = await Store.open(path)
    try:
        await store.record(items)
    finally:
        await store.close()


# -- pruning --------------------------------------------------------------------------------


async def test_a_pass_prunes_exactly_the_rows_older_than_their_retention(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    history_cut = NOW - 5 * DAY
    request_cut = NOW - 30 * DAY
    await store.record(
        changing(ALICE, history_cut - 600, 12)  # 10 minutes before the cut-off to 1 after
        + changing(ALICE, NOW - 3600, 3)
        + changing(BOB, history_cut - 20 * DAY, 5)  # old only: its newest rows must stay
        + [snap(at=history_cut - 1, who=CAROL), snap(at=history_cut, who=CAROL)]
    )
    await store.record(
        [
            request_record(request_cut - 40 * DAY, who=ALICE),
            request_record(request_cut - 0.5, who=BOB),
            request_record(request_cut, who=ALICE),  # not before the cut-off: kept
            request_record(request_cut + 1, anonymous=True),
            request_record(NOW - 60, who=CAROL),
            request_record(request_cut - 1, anonymous=True),  # the newest id, but old
        ]
    )
    before = await all_usage(store)
    requests_before = await store.requests_after(0)
    kept = {row.id for row in before if row.captured_at >= history_cut} | newest_per_key(before)
    # The test means something: old rows that must go, and old newest rows that must stay.
    assert len(kept) < len(before)
    assert any(row.captured_at < history_cut for row in before if row.id in kept)

    task = retention(store, history_days=5, request_days=30)
    with caplog.at_level(logging.INFO, logger="codexgate.services.retention"):
        assert await task.run_once()
    [line] = [r.getMessage() for r in caplog.records if r.name == "codexgate.services.retention"]
    assert line.startswith("retention: deleted 28 history rows, 3 requests, 0 rows by")

    assert {row.id for row in await all_usage(store)} == kept
    requests_after = await store.requests_after(0)
    assert [row.started_at for row in requests_after] == [request_cut, request_cut + 1, NOW - 60]
    stats = task.stats()
    assert stats.history_pruned == len(before) - len(kept)
    assert stats.requests_pruned == len(requests_before) - 3
    assert stats.downsampled == 0
    assert (stats.errors, stats.last_error, stats.last_run_at) == (0, None, NOW)
    # What the API shows did not move, and the throttle still confirms the kept rows.
    assert {row.usage.id for row in await store.latest_usage()} == newest_per_key(before)
    bob_newest = (
        LimitReport("codex", None, windows(4.0)),
        LimitReport("codex_bengalfox", None, windows(96.0)),
    )
    again = await store.record([snap(at=history_cut - 20 * DAY + 250, who=BOB, limits=bob_newest)])
    assert (again.rows_inserted, again.rows_confirmed) == (0, 2)

    assert await task.run_once()  # nothing left to do
    assert task.stats().history_pruned == stats.history_pruned
    assert task.stats().requests_pruned == stats.requests_pruned


async def test_zero_days_keep_everything_forever(store: Store) -> None:
    await store.record(changing(ALICE, T0, 5))
    await store.record([request_record(T0 + i) for i in range(5)])
    task = retention(store, history_days=0, request_days=0, now=T0 + 10_000 * DAY)
    assert await task.run_once()
    assert await store.count_history() == 10
    assert await store.count_requests() == 5
    stats = task.stats()
    assert (stats.history_pruned, stats.requests_pruned, stats.downsampled) == (0, 0, 0)
    assert stats.last_run_at == T0 + 10_000 * DAY


async def test_request_ids_are_not_reused_after_pruning_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "codexgate.db"
    store = await Store.open(path)
    try:
        # A long stream is logged when it ends: the newest id can be the oldest request.
        await store.record([request_record(NOW - 60), request_record(NOW - 50)])
        await store.record([request_record(NOW - 40 * DAY)])
        [oldest] = await store.requests(until=NOW - DAY)
        assert oldest.id == 3
        assert await store.prune_requests_batch(NOW - DAY, 10) == 1
        await store.record([request_record(NOW)])
        assert [row.id for row in await store.requests_after(0)] == [1, 2, 4]
        # Everything old: the table is empty, and still no id comes back.
        assert await store.prune_requests_batch(NOW + 1, 10) == 3
        assert await store.count_requests() == 0
    finally:
        await store.close()
    store = await Store.open(path)  # not even after a restart
    try:
        await store.record([request_record(NOW + 2)])
        assert [row.id for row in await store.requests_after(0)] == [5]
    finally:
        await store.close()


async def test_batches_delete_at_most_their_limit(store: Store) -> None:
    await store.record(changing(ALICE, T0, 6))  # 12 rows, 2 of them the newest
    await store.record([request_record(T0 + i) for i in range(6)])
    assert await store.prune_history_batch(T0 + DAY, 4) == 4
    assert await store.prune_history_batch(T0 + DAY, 4) == 4
    assert await store.prune_history_batch(T0 + DAY, 4) == 2
    assert await store.prune_history_batch(T0 + DAY, 4) == 0
    assert await store.count_history() == 2
    assert await store.prune_requests_batch(T0 + 3, 2) == 2
    assert await store.prune_requests_batch(T0 + 3, 2) == 1  # only 3 were older
    assert [row.started_at for row in await store.requests_after(0)] == [T0 + 3, T0 + 4, T0 + 5]
    assert await store.prune_requests_batch(T0 + DAY, 0) == 0
    with pytest.raises(ValueError, match="limit"):
        await store.prune_requests_batch(T0 + DAY, -1)
    with pytest.raises(ValueError, match="bucket_seconds"):
        await store.downsample_history_batch(T0 + DAY, 0, 10)


# -- downsampling ---------------------------------------------------------------------------


async def test_downsampling_keeps_the_newest_row_of_each_ten_minutes(store: Store) -> None:
    old = NOW - 8 * DAY  # a whole hour: minute i is in bucket i // 10
    week = NOW - 7 * DAY
    await store.record(
        changing(ALICE, old, 60)  # an hour of rows, a minute apart, on two limits
        + changing(BOB, old + 30, 60)  # half a minute later: same buckets, other account
        + changing(ALICE, week + 1800, 30)  # just inside the week
    )
    await store.record([snap(at=old + 5, who=CAROL)])  # alone in its bucket, and the newest
    ids = {row.account_key: row.id for row in await store.accounts()}
    before = await all_usage(store)
    latest_before = [row.usage for row in await store.latest_usage()]

    task = retention(store, downsample=True, batch_size=4)
    assert await task.run_once()

    rows = await all_usage(store)
    # Alice's and Bob's old hour: minutes 9, 19, ..., 59 of each limit; Carol's one row.
    old_rows = sorted(
        (r.account_id, r.limit_id, r.captured_at) for r in rows if r.captured_at < week
    )
    expected = [
        (ids[who.account_key], limit, old + offset + 60 * minute)
        for who, offset in ((ALICE, 0.0), (BOB, 30.0))
        for limit in ("codex", "codex_bengalfox")
        for minute in (9, 19, 29, 39, 49, 59)
    ]
    assert old_rows == sorted([*expected, (ids[CAROL.account_key], "codex", old + 5)])
    recent = [r for r in before if r.captured_at >= week]
    assert [r for r in rows if r.captured_at >= week] == recent  # untouched
    assert [row.usage for row in await store.latest_usage()] == latest_before
    assert task.stats().downsampled == len(before) - len(rows) == 2 * 2 * 54

    # An hour and a half later the recent half hour is more than a week old too.
    later = retention(store, downsample=True, batch_size=4, now=NOW + 5400)
    assert await later.run_once()
    thinned = sorted(
        (r.limit_id, r.captured_at - week) for r in await all_usage(store) if r.captured_at >= week
    )
    assert thinned == sorted(
        (limit, 1800.0 + 60 * minute)
        for limit in ("codex", "codex_bengalfox")
        for minute in (9, 19, 29)
    )
    assert later.stats().downsampled == 2 * 27
    assert [row.usage for row in await store.latest_usage()] == latest_before

    assert await later.run_once()  # done: a pass over thinned history deletes nothing
    assert later.stats().downsampled == 2 * 27


# -- the task in the gateway -----------------------------------------------------------------


async def test_pruning_while_traffic_flows(
    start_retaining: StartRetaining, config: Config, http: ClientSession
) -> None:
    old = time.time() - 10 * DAY
    seats = [identity(f"seat:acct-{n}:user-{n}", email=f"{n}@example.com") for n in range(4)]
    await seed(
        sqlite_file(config.db),
        [s for who in seats for s in changing(who, old, 150)]  # 1200 rows, 8 of them newest
        + [request_record(old + i, who=seats[i % 4]) for i in range(1500)],
    )
    gateway = await start_retaining(
        dataclasses.replace(FAST, batch_size=20, pause=0.002),
        history_retention_days=1.0,
        request_retention_days=1.0,
    )
    app = app_of(gateway)
    task = app[RETENTION]

    def pruned() -> int:
        stats = task.stats()
        return stats.history_pruned + stats.requests_pruned

    statuses: list[int] = []
    during = 0  # turns that ended while the pass was half-way

    give_up = time.monotonic() + 60.0

    async def client() -> None:
        nonlocal during
        # Turns until the pass is over (at least a few; a time bound against a hang, not a
        # count: on an idle machine 2,000 turns took less time than the pass).
        while (pruned() < 1192 + 1500 or len(statuses) < 20) and time.monotonic() < give_up:
            statuses.append(await turn(http, gateway, bearer("seat_a")))
            during += 0 < pruned() < 1192 + 1500

    await asyncio.gather(*(client() for _ in range(4)))
    assert statuses == [200] * len(statuses)
    assert during > 0, "no turn overlapped the pass"
    assert (task.stats().history_pruned, task.stats().requests_pruned) == (1192, 1500)
    recorder = app[RECORDER]
    await eventually(lambda: recorder.stats().requests_logged == len(statuses))
    stats = recorder.stats()
    assert (stats.dropped, stats.requests_dropped, stats.db_state) == (0, 0, "ok")

    store = app[STORE]
    requests = await store.requests_after(0, limit=100_000)
    assert len(requests) == len(statuses)
    assert min(row.id for row in requests) > 1500  # no pruned id came back
    assert all(row.started_at > old + DAY for row in requests)
    rows = await all_usage(store)
    turn_rows = [row for row in rows if row.captured_at > old + DAY]
    assert turn_rows, "the turns' usage rows are there"
    assert len(rows) - len(turn_rows) == 8  # of the old history, each seat's newest rows


async def test_a_failing_database_is_counted_and_the_task_goes_on(
    start_retaining: StartRetaining, config: Config, http: ClientSession
) -> None:
    await seed(
        sqlite_file(config.db), [request_record(time.time() - 10 * DAY + i) for i in range(30)]
    )

    def execute(sql: str) -> None:
        with sqlite3.connect(sqlite_file(config.db)) as db:
            db.execute(sql)
        db.close()

    # A real failure inside SQLite, on the statement retention runs, from another connection.
    await asyncio.to_thread(
        execute,
        "CREATE TRIGGER refuse_deletes BEFORE DELETE ON requests "
        "BEGIN SELECT RAISE(ABORT, 'deletes refused by the test'); END",
    )
    gateway = await start_retaining(FAST, request_retention_days=1.0)
    task = app_of(gateway)[RETENTION]
    await eventually(lambda: task.stats().errors >= 3)
    assert await turn(http, gateway, bearer("seat_a")) == 200

    async with http.get(f"http://127.0.0.1:{gateway.port}/codexgate/healthz") as response:
        health = await response.json()
    assert health["status"] == "ok"  # the recorder's writes are fine
    body = health["retention"]
    assert body["errors"] >= 3
    assert body["last_error"] == "IntegrityError: deletes refused by the test"
    assert body["requests_pruned"] == 0
    assert (body["history_days"], body["request_days"], body["downsample"]) == (90, 1, False)
    assert body["last_run_at"].endswith("Z")

    await asyncio.to_thread(execute, "DROP TRIGGER refuse_deletes")
    await eventually(lambda: task.stats().requests_pruned == 30)
    assert task.stats().last_error is None
    recorder = app_of(gateway)[RECORDER]
    await eventually(lambda: recorder.stats().requests_logged == 1)
    assert await app_of(gateway)[STORE].count_requests() == 1  # the turn's


async def test_stopping_mid_pass_leaves_the_store_usable(store: Store) -> None:
    await store.record([request_record(T0 + i) for i in range(1000)])
    task = Retention(
        store,
        history_days=0,
        request_days=1,
        downsample=False,
        options=RetentionOptions(first_delay=0.0, batch_size=1, pause=0.001),
        clock=lambda: NOW,
    )
    task.start()
    await eventually(lambda: task.stats().requests_pruned >= 5)
    await task.stop()
    left = await store.count_requests()  # the lock is free again
    assert 0 < left < 1000
    # Each batch is all or nothing; one cancelled in its COMMIT is done but not counted.
    assert 1000 - left - task.stats().requests_pruned in (0, 1)
    assert task.stats().errors == 0

    assert await task.run_once()  # and the next pass finishes the job
    assert await store.count_requests() == 0


async def test_stop_does_not_swallow_its_callers_cancellation(store: Store) -> None:
    task = Retention(store, history_days=1, request_days=1, downsample=False)
    task.start()  # sleeps 30 s before its first pass

    async def stopper() -> None:
        await task.stop()

    outer = asyncio.create_task(stopper())
    await asyncio.sleep(0)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert outer.cancelled()
