"""Two codexgate processes on one SQLite file, as during a rolling restart: each Store below is
what one process holds (its own connection). Both write, one migrates, each sees the other's
commits."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from codexgate import paths
from codexgate.core.models import LimitReport, Snapshot
from codexgate.storage.migrations import read_migrations
from codexgate.storage.sqlite.store import Store
from tests.helpers.builders import OTHER, T0, identity, snap, windows
from tests.helpers.paths import REPO
from tests.helpers.rows import query
from tests.helpers.waiting import eventually

LATEST = read_migrations(paths.migrations_dir())[-1].number

SEATS = (identity(), OTHER)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The file both stores share."""
    return tmp_path / "db" / "codexgate.db"


@pytest.fixture
async def pair(db_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one file: the old process and the new one."""
    old = await Store.open(db_path)
    new = await Store.open(db_path)
    yield old, new
    await new.close()
    await old.close()


def traffic(seed: int, batches: int) -> list[list[Snapshot]]:
    """Batches of reports of two seats and two limit families, in time order, whose values
    often repeat (confirmations), change back and forth, and pass the heartbeat."""
    rng = random.Random(seed)
    at = T0
    found: list[list[Snapshot]] = []
    for _ in range(batches):
        batch = []
        for _ in range(rng.randint(1, 3)):
            at += rng.choice((1.0, 1.0, 5.0, 400.0))  # 400 s is past the 300 s heartbeat
            limits = (
                LimitReport("codex", None, windows(rng.choice((10.0, 20.0)))),
                LimitReport("codex_other", None, windows(rng.choice((1.0, 2.0)), 5.0)),
            )
            batch.append(snap(at, who=rng.choice(SEATS), limits=limits))
        found.append(batch)
    return found


async def history_of(store: Store) -> list[tuple[object, ...]]:
    """Every usage row by seat, limit and time: what the history shows, ids aside."""
    keys = {account.id: account.account_key for account in await store.accounts()}
    rows = []
    for account_id, key in keys.items():
        for row in await store.history(account_id, limit=10_000):
            rows.append(
                (
                    key,
                    row.limit_id,
                    row.captured_at,
                    row.confirmed_at,
                    row.five_hour_used_percent,
                    row.seven_day_used_percent,
                )
            )
    return sorted(rows, key=repr)


async def latest_of(store: Store) -> list[tuple[object, ...]]:
    """latest_usage per seat and limit, ids aside."""
    return sorted(
        (
            latest.account_key,
            latest.usage.limit_id,
            latest.usage.captured_at,
            latest.usage.confirmed_at,
            latest.usage.five_hour_used_percent,
        )
        for latest in await store.latest_usage()
    )


async def test_interleaved_batches_write_what_one_writer_would(
    pair: tuple[Store, Store], tmp_path: Path
) -> None:
    old, new = pair
    batches = traffic(seed=15, batches=80)
    alone = await Store.open(tmp_path / "alone.db")
    try:
        rng = random.Random(7)
        for batch in batches:
            await rng.choice(pair).record(batch)
            await alone.record(batch)
        expected = await history_of(alone)
        assert await latest_of(old) == await latest_of(alone)
    finally:
        await alone.close()
    # Every report written once: a change is a row, a repeat within the heartbeat confirms the
    # newest row (whichever process wrote it), a repeat after it is a new row.
    assert await history_of(old) == expected
    assert await history_of(new) == expected
    assert await latest_of(new) == await latest_of(old)


async def test_a_repeat_confirms_the_other_processs_newer_row(pair: tuple[Store, Store]) -> None:
    old, new = pair
    await old.record([snap(T0, wins=windows(10.0))])
    await new.record([snap(T0 + 1, wins=windows(10.0))])  # new now knows the 10 % row
    await old.record([snap(T0 + 2, wins=windows(20.0))])
    # 10 % again: the newest row is old's 20 %, so this is a change, not a confirmation.
    result = await new.record([snap(T0 + 3, wins=windows(10.0))])
    assert (result.rows_inserted, result.rows_confirmed) == (1, 0)
    # 20 % again through old, then through new: one row, confirmed, never a duplicate.
    await old.record([snap(T0 + 4, wins=windows(30.0))])
    result = await new.record([snap(T0 + 5, wins=windows(30.0))])
    assert (result.rows_inserted, result.rows_confirmed) == (0, 1)
    [account] = await new.accounts()
    assert [
        (row.five_hour_used_percent, row.captured_at, row.confirmed_at)
        for row in await new.history(account.id)
    ] == [
        (10.0, T0, T0 + 1),
        (20.0, T0 + 2, T0 + 2),
        (10.0, T0 + 3, T0 + 3),
        (30.0, T0 + 4, T0 + 5),
    ]


async def test_the_watcher_wakes_for_the_other_processs_commits_only(
    pair: tuple[Store, Store],
) -> None:
    old, new = pair
    woken: list[float] = []
    watcher = asyncio.create_task(new.watch_commits(lambda _ids: woken.append(time.monotonic())))
    try:
        await eventually(lambda: len(woken) == 1)  # once at the start
        for n in range(5):  # its own commits: the recorder tells the feed of those
            await new.record([snap(T0 + n, wins=windows(10.0 + n))])
        await new.set_setting("name", "value")
        await asyncio.sleep(0.6)
        assert len(woken) == 1
        committed = time.monotonic()
        await old.record([snap(T0 + 10, who=OTHER)])
        await eventually(lambda: len(woken) == 2, timeout=2.0)
        assert woken[1] - committed < 1.0
        await old.update_account(1, display_name="Renamed")
        await eventually(lambda: len(woken) == 3, timeout=2.0)
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


async def test_the_watcher_goes_on_past_a_held_write_lock_and_ends_when_closed(
    db_path: Path,
) -> None:
    store = await Store.open(db_path)
    woken: list[Sequence[int]] = []
    watcher = asyncio.create_task(store.watch_commits(woken.append))
    try:
        await eventually(lambda: len(woken) == 1)
        # Another process holds the write lock for a while (a long transaction): the watcher
        # goes on reading, and wakes for that commit once it lands.
        locker = sqlite3.connect(db_path, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            locker.execute("INSERT INTO settings (name, value) VALUES ('held', 'x')")
            await asyncio.sleep(0.5)
            assert not watcher.done()
            assert len(woken) == 1
            locker.execute("COMMIT")
        finally:
            locker.close()
        await eventually(lambda: len(woken) == 2, timeout=2.0)
        assert _has_open(os.getpid(), db_path)
    finally:
        await store.close()
    await asyncio.wait_for(watcher, timeout=2.0)  # returns once its store is closed
    assert not _has_open(os.getpid(), db_path)  # the watcher kept no connection of its own


async def test_two_stores_opening_an_empty_file_at_once_migrate_it_once(db_path: Path) -> None:
    hold_write_lock = _held_wal_file(db_path)
    try:
        # Both read version 0, then wait for the write lock: one applies each file, the other
        # finds it applied once it gets the lock.
        opening = asyncio.gather(Store.open(db_path), Store.open(db_path), return_exceptions=True)
        await asyncio.sleep(0.5)
        hold_write_lock.execute("ROLLBACK")
        opened = await opening
    finally:
        hold_write_lock.close()
    stores = [store for store in opened if isinstance(store, Store)]
    try:
        assert len(stores) == 2, opened
        for store in stores:
            assert await store.schema_version() == LATEST
        await stores[0].record([snap()])
        assert await stores[1].count_history() == 1
    finally:
        for store in stores:
            await store.close()


async def test_two_processes_migrating_one_file_at_once_both_succeed(db_path: Path) -> None:
    hold_write_lock = _held_wal_file(db_path)
    try:
        processes = [
            subprocess.Popen(  # noqa: ASYNC220 - started together; waited for below
                [sys.executable, "-m", "codexgate", "migrate", "--db", str(db_path)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        # Let go of the lock once both have opened the file (and so wait for the lock).
        await eventually(
            lambda: all(_has_open(process.pid, db_path) for process in processes), timeout=15.0
        )
        await asyncio.sleep(0.3)
        hold_write_lock.execute("ROLLBACK")
    finally:
        hold_write_lock.close()
    outputs = [await asyncio.to_thread(process.communicate, timeout=30) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert query(db_path, "PRAGMA user_version") == [(LATEST,)]


def _held_wal_file(path: Path) -> sqlite3.Connection:
    """Create an empty WAL file at path and hold its write lock (roll back to let go)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("BEGIN IMMEDIATE")
    return db


def _has_open(pid: int, path: Path) -> bool:
    """Whether process pid has the file at path open."""
    folder = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(folder / fd) == str(path) for fd in os.listdir(folder))
    except (FileNotFoundError, ProcessLookupError):
        return False
