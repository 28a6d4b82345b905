"""What only the SQLite backend has: migrations, PRAGMAs, file modes, raw SQL, reconnects."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from codexgate import paths
from codexgate.core.models import (
    LimitReport,
    RequestRecord,
    Snapshot,
    Source,
    SpendControl,
    TokenUsage,
    UsageReport,
    Window,
)
from codexgate.core.rows import FeedCursor, RecordResult, SessionRow
from codexgate.storage.interface import StorageSetupError
from codexgate.storage.sqlite.store import Store
from tests.helpers.builders import FIVE_H_RESET, OTHER, T0, identity, request_record, snap, windows
from tests.helpers.paths import REPO
from tests.helpers.rows import kinds, query

LATEST = 8  # the number of the newest file in migrations/

# The columns of latest_usage as migration 0001 created it, in order.
V1_LATEST_USAGE_COLUMNS = (
    "id",
    "account_id",
    "account_key",
    "display_name",
    "email",
    "account_plan_type",
    "limit_id",
    "limit_name",
    "captured_at",
    "confirmed_at",
    "age_seconds",
    "source",
    "http_status",
    "plan_type",
    "active_limit",
    "rate_limit_reached_type",
    "five_hour_used_percent",
    "five_hour_window_minutes",
    "five_hour_resets_at",
    "five_hour_reset_in_seconds",
    "seven_day_used_percent",
    "seven_day_window_minutes",
    "seven_day_resets_at",
    "seven_day_reset_in_seconds",
    "monthly_used_percent",
    "monthly_window_minutes",
    "monthly_resets_at",
    "monthly_reset_in_seconds",
    "primary_window",
    "primary_classified_by",
    "primary_used_percent",
    "primary_window_minutes",
    "primary_resets_at",
    "secondary_window",
    "secondary_classified_by",
    "secondary_used_percent",
    "secondary_window_minutes",
    "secondary_resets_at",
    "over_secondary_limit_percent",
    "credits_has_credits",
    "credits_unlimited",
    "credits_balance",
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's database lives."""
    return tmp_path / "db" / "codexgate.db"


def add_trigger(path: Path, sql: str) -> None:
    """Create a trigger through a separate connection (to make a write fail on purpose)."""
    with sqlite3.connect(path) as db:
        db.execute(sql)
    db.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh SQLite store with a 300 s heartbeat."""
    opened = await Store.open(tmp_path / "db" / "codexgate.db")
    yield opened
    await opened.close()


async def test_migrates_empty_database_to_latest(tmp_path: Path) -> None:
    path = tmp_path / "codexgate.db"
    store = await Store.open(path)
    try:
        assert await store.schema_version() == LATEST
    finally:
        await store.close()
    names = {
        (kind, name)
        for kind, name in query(path, "SELECT type, name FROM sqlite_master WHERE sql IS NOT NULL")
    }
    assert ("table", "accounts") in names
    assert ("table", "usage_snapshots") in names
    assert ("view", "latest_usage") in names
    assert ("index", "usage_snapshots_account_limit_time") in names
    assert ("index", "usage_snapshots_time") in names
    assert ("table", "requests") in names
    assert ("index", "requests_time") in names
    assert ("index", "requests_account_time") in names
    assert query(path, "PRAGMA user_version") == [(LATEST,)]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]


async def test_reopen_is_a_no_op_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "codexgate.db"
    store = await Store.open(path)
    await store.record([snap()])
    await store.close()
    store = await Store.open(path)
    try:
        assert await store.schema_version() == LATEST
        assert len(await store.accounts()) == 1
        assert await store.count_history() == 1
    finally:
        await store.close()


async def test_newer_database_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE from_the_future (x)")
        db.execute("PRAGMA user_version = 99")
    db.close()
    before = path.read_bytes()
    with pytest.raises(
        StorageSetupError, match=rf"schema version 99 is newer .* supports \({LATEST}\)"
    ):
        await Store.open(path)
    assert path.read_bytes() == before
    assert query(path, "PRAGMA user_version") == [(99,)]
    assert query(path, "PRAGMA journal_mode") == [("delete",)]


async def test_failing_migration_rolls_back_and_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(paths.migrations_dir() / "0001_initial.sql", folder)
    (folder / "0002_broken.sql").write_text(
        "CREATE TABLE half_done (x);\nINSERT INTO half_done VALUES (1);\nTHIS IS NOT SQL;\n"
    )
    path = tmp_path / "codexgate.db"
    with pytest.raises(StorageSetupError, match=r"0002_broken\.sql"):
        await Store.open(path, migrations=folder)
    assert query(path, "PRAGMA user_version") == [(1,)]
    assert query(path, "SELECT name FROM sqlite_master WHERE name = 'half_done'") == []
    # The good migration stays applied and the database still opens with it alone.
    (folder / "0002_broken.sql").unlink()
    store = await Store.open(path, migrations=folder)
    await store.close()


async def test_version_1_database_with_data_migrates_to_latest(tmp_path: Path) -> None:
    only_first = tmp_path / "migrations"
    only_first.mkdir()
    shutil.copy(paths.migrations_dir() / "0001_initial.sql", only_first)
    path = tmp_path / "codexgate.db"
    old = await Store.open(path, migrations=only_first)
    try:
        assert await old.schema_version() == 1
    finally:
        await old.close()
    # Rows as a version 1 codexgate wrote them (this code's writes need version 2).
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO accounts (id, account_key, email, first_seen_at, last_seen_at) "
            "VALUES (1, 'seat:acct-1:user-1', 'one@example.com', ?, ?)",
            (T0, T0 + 60),
        )
        db.executemany(
            "INSERT INTO usage_snapshots (account_id, captured_at, confirmed_at, source, "
            "http_status, limit_id, plan_type, five_hour_used_percent, five_hour_window_minutes, "
            "five_hour_resets_at, primary_window, primary_classified_by, primary_used_percent, "
            "primary_window_minutes, primary_resets_at) "
            "VALUES (1, ?, ?, 'headers', 200, 'codex', 'plus', "
            "?, 300, ?, '5h', 'length', ?, 300, ?)",
            [
                (at, at, used, FIVE_H_RESET, used, FIVE_H_RESET)
                for at, used in ((T0, 10.0), (T0 + 60, 20.0))
            ],
        )
    db.close()
    before = query(path, "SELECT * FROM usage_snapshots ORDER BY id")
    store = await Store.open(path)
    try:
        assert await store.schema_version() == LATEST
        [account] = await store.accounts()
        assert account.account_key == "seat:acct-1:user-1"
        rows = await store.history(account.id)
        assert [r.five_hour_used_percent for r in rows] == [10.0, 20.0]
        for row in rows:
            assert {row.limit_hit_type, row.limit_hit_resets_at} == {None}
            assert {row.spend_control_reached, row.spend_limit, row.spend_used} == {None}
            assert {row.spend_used_percent, row.spend_resets_at, row.spend_source} == {None}
        [latest] = await store.latest_usage()
        assert latest.usage == rows[-1]
        assert {latest.limit_hit_reset_in_seconds, latest.spend_reset_in_seconds} == {None}
        assert await store.count_requests() == 0
        # The old rows are untouched (the new columns are appended, NULL) and still throttle.
        after = query(path, "SELECT * FROM usage_snapshots ORDER BY id")
        assert [row[: len(before[0])] for row in after] == before
        assert {row[len(before[0]) :] for row in after} == {(None,) * 12}
        result = await store.record([snap(at=T0 + 61, wins=windows(20.0, None))])
        assert (result.rows_inserted, result.rows_confirmed) == (0, 1)
    finally:
        await store.close()
    # Every column the version 1 view had is still there, under the same name.
    columns = [row[1] for row in query(path, "PRAGMA table_info(latest_usage)")]
    assert columns[: len(V1_LATEST_USAGE_COLUMNS)] == list(V1_LATEST_USAGE_COLUMNS)


async def test_migration_statements_split_like_sqlite(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(paths.migrations_dir() / "0001_initial.sql", folder)
    # Semicolons inside a string, a comment and a trigger body do not end a statement.
    (folder / "0002_tricky.sql").write_text(
        "-- a comment; with a semicolon\n"
        "CREATE TABLE notes (text TEXT); CREATE TABLE log (n INTEGER);\n"
        "INSERT INTO notes VALUES ('a; b');\n"
        "CREATE TRIGGER notes_log AFTER INSERT ON notes BEGIN\n"
        "    INSERT INTO log VALUES (1);\n"
        "    INSERT INTO log VALUES (2);\n"
        "END;\n"
        "INSERT INTO notes VALUES ('c')\n"
        "-- trailing comment\n"
    )
    path = tmp_path / "codexgate.db"
    store = await Store.open(path, migrations=folder)
    try:
        assert await store.schema_version() == 2
    finally:
        await store.close()
    assert query(path, "SELECT text FROM notes ORDER BY rowid") == [("a; b",), ("c",)]
    assert query(path, "SELECT n FROM log ORDER BY rowid") == [(1,), (2,)]


async def test_badly_named_migration_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "1_initial.sql").write_text("CREATE TABLE x (y);")
    with pytest.raises(StorageSetupError, match=r"NNNN_name\.sql"):
        await Store.open(tmp_path / "codexgate.db", migrations=folder)


async def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new-folder" / "codexgate.db"
    store = await Store.open(path)
    try:
        await store.record([snap()])
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        wal_files = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
        assert any(file.exists() for file in wal_files)
        for file in wal_files:
            if file.exists():
                assert stat.S_IMODE(file.stat().st_mode) & 0o077 == 0, file
    finally:
        await store.close()


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StorageSetupError, match="cannot open database"):
        await Store.open(tmp_path / "a-file" / "codexgate.db")


async def test_account_deleted_behind_the_cache_is_recreated(store: Store) -> None:
    await store.record([snap(at=T0)])
    with sqlite3.connect(store.path) as db:
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM accounts")
    db.close()
    result = await store.record([snap(at=T0 + 1)])
    assert result == RecordResult(accounts_created=1, rows_inserted=1, rows_confirmed=0)
    [account] = await store.accounts()
    assert [row.captured_at for row in await store.history(account.id)] == [T0 + 1]


async def test_unchanged_snapshots_in_a_batch_cost_one_update(store: Store) -> None:
    await store.record([snap(at=T0)])
    statements: list[str] = []
    await store._db.set_trace_callback(statements.append)
    await store.record([snap(at=T0 + i) for i in range(1, 11)])
    await store._db.set_trace_callback(None)  # type: ignore[arg-type]  # None removes it
    updates = [s for s in statements if s.lstrip().startswith("UPDATE usage_snapshots")]
    assert len(updates) == 1
    assert not [s for s in statements if s.lstrip().startswith("INSERT INTO usage_snapshots")]


async def test_a_batch_is_one_trip_to_the_database_thread(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await store.record([snap(at=T0)])
    caplog.set_level(logging.DEBUG, logger="aiosqlite")  # it logs each call it runs
    caplog.clear()
    changes = [snap(at=T0 + n, wins=windows(float(n))) for n in range(1, 40)]
    await store.record([*changes, snap(at=T0 + 50), request_record(T0 + 50)])
    calls = [r for r in caplog.records if r.name == "aiosqlite" and r.msg == "executing %s"]
    assert len(calls) == 1


async def test_rows_go_in_up_to_64_a_statement(store: Store) -> None:
    statements: list[str] = []
    await store._db.set_trace_callback(statements.append)
    await store.record([snap(at=T0 + n, wins=windows(float(n))) for n in range(100)])
    await store._db.set_trace_callback(None)  # type: ignore[arg-type]  # None removes it
    inserts = [s for s in statements if s.lstrip().startswith("INSERT INTO usage_snapshots")]
    assert [s.count("), (") + 1 for s in inserts] == [64, 32, 4]


async def test_a_cancelled_batch_rolls_back_and_the_next_one_is_written_right(
    store: Store,
) -> None:
    await store.record([snap(at=T0, wins=windows(10.0))])
    gate = threading.Event()
    # Hold the database thread, so that the batch still waits there when it is cancelled.
    holding = asyncio.create_task(store._on_connection(lambda conn: gate.wait(10)))
    batch: list[Snapshot | RequestRecord] = [
        snap(at=T0 + 1, wins=windows(20.0)),
        request_record(T0 + 1),
    ]
    cancelled = asyncio.create_task(store.record(batch))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.set()
    await holding
    assert (await store.count_history(), await store.count_requests()) == (1, 0)
    result = await store.record([snap(at=T0 + 2, wins=windows(20.0))])
    assert result == RecordResult(accounts_created=0, rows_inserted=1, rows_confirmed=0)
    [account] = await store.accounts()
    rows = await store.history(account.id)
    assert [(r.five_hour_used_percent, r.captured_at) for r in rows] == [(10.0, T0), (20.0, T0 + 2)]


async def test_heartbeat_writes_a_new_row(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "codexgate.db", heartbeat_seconds=10)
    try:
        await store.record([snap(at=T0)])
        assert (await store.record([snap(at=T0 + 5)])).rows_confirmed == 1
        assert (await store.record([snap(at=T0 + 20)])).rows_inserted == 1
        [account] = await store.accounts()
        rows = await store.history(account.id)
        assert [(r.captured_at, r.confirmed_at) for r in rows] == [(T0, T0 + 5), (T0 + 20, T0 + 20)]
    finally:
        await store.close()


async def test_throttle_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "codexgate.db"
    store = await Store.open(path)
    await store.record([snap(at=T0)])
    await store.close()
    store = await Store.open(path)
    try:
        result = await store.record([snap(at=T0 + 30), snap(at=T0 + 40, wins=windows(12.0))])
        assert result == RecordResult(accounts_created=0, rows_inserted=1, rows_confirmed=1)
        [account] = await store.accounts()
        rows = await store.history(account.id)
        assert [(r.captured_at, r.confirmed_at) for r in rows] == [
            (T0, T0 + 30),
            (T0 + 40, T0 + 40),
        ]
    finally:
        await store.close()


async def test_failed_batch_rolls_back_and_leaves_the_caches_consistent(store: Store) -> None:
    await store.record([snap(at=T0, wins=windows(10.0))])
    newcomer = identity("seat:acct-3:user-3", email="three@example.com")
    bad = snap(at=T0 + 2, source="bogus")  # type: ignore[arg-type]  # violates the CHECK
    with pytest.raises(sqlite3.IntegrityError):  # a bug, not an outage: not retried
        await store.record([snap(at=T0 + 1, wins=windows(20.0)), snap(who=newcomer), bad])
    assert len(await store.accounts()) == 1
    assert await store.count_history() == 1
    assert "seat:acct-3:user-3" not in store._account_ids
    # The rolled-back 20 % row must not be mistaken for the newest one, nor the newcomer's
    # rolled-back account id for a real one.
    result = await store.record([snap(at=T0 + 3, wins=windows(20.0)), snap(who=newcomer)])
    assert result == RecordResult(accounts_created=1, rows_inserted=2, rows_confirmed=0)
    accounts = {a.account_key: a for a in await store.accounts()}
    assert accounts["seat:acct-3:user-3"].email == "three@example.com"
    first = accounts["seat:acct-1:user-1"]
    rows = await store.history(first.id)
    assert [(r.five_hour_used_percent, r.confirmed_at) for r in rows] == [
        (10.0, T0),
        (20.0, T0 + 3),
    ]
    [row] = await store.history(accounts["seat:acct-3:user-3"].id)
    assert row.account_id == accounts["seat:acct-3:user-3"].id


async def test_newest_row_deleted_behind_the_store_is_rewritten(store: Store) -> None:
    await store.record([snap(at=T0)])
    with sqlite3.connect(store.path) as db:
        db.execute("DELETE FROM usage_snapshots")
    db.close()
    # Another connection's commit: the store looks its newest rows up again and writes anew.
    await store.record([snap(at=T0 + 1)])
    await store.record([snap(at=T0 + 2)])
    [account] = await store.accounts()
    rows = await store.history(account.id)
    assert [(r.captured_at, r.confirmed_at) for r in rows] == [(T0 + 1, T0 + 2)]


def test_every_public_method_turns_driver_errors_into_storage_unavailable() -> None:
    public = [name for name in dir(Store) if not name.startswith("_") and name != "closed"]
    unguarded = [
        name
        for name in public
        if callable(getattr(Store, name))
        and name not in ("open", "schema_status")
        and not hasattr(getattr(Store, name), "__wrapped__")
    ]
    assert unguarded == []


async def test_prune_keeps_the_newest_row_of_each_limit(store: Store) -> None:
    await store.record(
        [snap(at=T0 + i, wins=windows(float(i))) for i in range(5)]
        + [snap(at=T0, who=identity("token:" + "0" * 64, email=None))]
    )
    assert await store.prune_history_batch(T0 + 100, 1000) == 4
    assert await store.count_history() == 2
    latest = await store.latest_usage()
    assert sorted(r.usage.captured_at for r in latest) == [T0, T0 + 4]
    # The throttle still confirms the kept row.
    assert (await store.record([snap(at=T0 + 6, wins=windows(4.0))])).rows_confirmed == 1


async def test_an_unproven_request_joins_an_account_that_exists_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "codexgate.db"
    store = await Store.open(path)
    await store.record([snap(at=T0)])
    await store.close()
    store = await Store.open(path)  # nothing cached: the account is looked up
    try:
        [before] = await store.accounts()
        liar = identity(fingerprint="e" * 64, email="liar@example.com", plan="pro")
        stranger = identity("seat:acct-9:user-9")
        result = await store.record(
            [
                request_record(T0 + 5, who=liar, proven=False),
                request_record(T0 + 6, who=stranger, proven=False),
            ]
        )
        assert result == RecordResult(0, 0, 0, 2)
        assert await store.accounts() == [before]
        rows = await store.requests()
        assert [row.account_id for row in rows] == [None, before.id]
    finally:
        await store.close()


async def test_settings_roundtrip(store: Store, db_path: Path) -> None:
    assert await store.get_setting("admin_token_hash") is None
    await store.set_setting("admin_token_hash", "h1")
    assert await store.get_setting("admin_token_hash") == "h1"
    await store.set_setting("admin_token_hash", "h2")  # an upsert, not a second row
    assert await store.get_setting("admin_token_hash") == "h2"
    await store.set_setting("cookie_key", "")
    assert await store.get_setting("cookie_key") == ""
    assert query(db_path, "SELECT name, value FROM settings ORDER BY name") == [
        ("admin_token_hash", "h2"),
        ("cookie_key", ""),
    ]


async def test_two_starts_racing_agree_on_one_value(store: Store, db_path: Path) -> None:
    other = await Store.open(db_path)
    try:
        values = await asyncio.gather(
            *(
                s.set_setting_if_absent("cookie_key", f"value-{n}")
                for n in range(10)
                for s in (store, other)
            )
        )
        assert len(set(values)) == 1
        assert await other.get_setting("cookie_key") == values[0]
        assert await store.get_setting("cookie_key") == values[0]
    finally:
        await other.close()


async def test_traffic_creating_accounts_writes_created_events(store: Store) -> None:
    before = time.time()
    await store.record([snap(), snap(who=OTHER), request_record(anonymous=True)])
    after = time.time()
    first, second = await store.accounts()
    events = await store.account_events_after(0)
    assert kinds(events) == [(first.id, "created"), (second.id, "created")]
    assert all(before <= event.at <= after for event in events)
    assert events[0].id < events[1].id
    # Seeing the seats again (cached or not) creates nothing.
    await store.record([snap(T0 + 60), request_record(T0 + 61)])
    restarted = await Store.open(store.path)
    try:
        await restarted.record([snap(T0 + 120, who=OTHER)])
    finally:
        await restarted.close()
    assert await store.account_events_after(events[-1].id) == []


async def test_a_failed_batch_writes_no_events(store: Store) -> None:
    bad = snap(source=cast("Source", "bogus"))  # violates the CHECK after the account insert
    with pytest.raises(sqlite3.IntegrityError):
        await store.record([bad])
    assert await store.accounts() == []
    assert await store.account_events_after(0) == []
    result = await store.record([snap()])
    assert result.accounts_created == 1
    [account] = await store.accounts()
    assert kinds(await store.account_events_after(0)) == [(account.id, "created")]


async def test_failed_account_changes_write_no_events(store: Store, db_path: Path) -> None:
    await store.record([snap()])
    [account] = await store.accounts()
    add_trigger(
        db_path,
        "CREATE TRIGGER refuse AFTER INSERT ON account_events WHEN NEW.kind != 'created' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        await store.delete_account(account.id)
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        await store.update_account(account.id, display_name="x")
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        await store.create_account(identity(), "y", T0)
    assert await store.accounts() == [account]
    assert len(await store.history(account.id)) == 1
    assert kinds(await store.account_events_after(0)) == [(account.id, "created")]
    # The store still works, its throttle state intact or reloaded.
    result = await store.record([snap(T0 + 1)])
    assert (result.accounts_created, result.rows_confirmed) == (0, 1)


async def test_version_2_database_migrates_and_keeps_its_data(tmp_path: Path) -> None:
    first_two = tmp_path / "migrations"
    first_two.mkdir()
    for name in ("0001_initial.sql", "0002_request_log.sql"):
        shutil.copy(paths.migrations_dir() / name, first_two)
    path = tmp_path / "codexgate.db"
    old = await Store.open(path, migrations=first_two)
    try:
        assert await old.schema_version() == 2
    finally:
        await old.close()
    # Rows as a version 2 codexgate wrote them (it had no account_events and no settings).
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO requests (started_at, method, path, transport, status) "
            "VALUES (?, 'GET', '/backend-api/codex/models', 'http', 200)",
            (T0,),
        )
        db.execute(
            "INSERT INTO accounts (id, account_key, display_name, first_seen_at, last_seen_at) "
            "VALUES (1, 'seat:acct-1:user-1', 'Named', ?, ?)",
            (T0, T0),
        )
        db.execute(
            "INSERT INTO usage_snapshots (account_id, captured_at, confirmed_at, source, "
            "limit_id, five_hour_used_percent) VALUES (1, ?, ?, 'headers', 'codex', 10.0)",
            (T0, T0),
        )
    db.close()
    before = [
        query(path, f"SELECT * FROM {table} ORDER BY id")
        for table in ("accounts", "usage_snapshots", "requests")
    ]
    store = await Store.open(path)
    try:
        assert await store.schema_version() == LATEST
        after = [
            query(path, f"SELECT * FROM {table} ORDER BY id")
            for table in ("accounts", "usage_snapshots", "requests")
        ]
        # Rows as they were; the usage rows gained version 8's columns, NULL (not reported).
        assert after[0] == before[0]
        assert after[2] == before[2]
        width = len(before[1][0])
        assert [row[:width] for row in after[1]] == before[1]
        assert {row[width:] for row in after[1]} == {(None,) * 4}
        assert await store.account_events_after(0) == []
        assert await store.get_setting("cookie_key") is None
        assert await store.feed_cursor() == FeedCursor(usage=1, request=1, account=0)
        # Old accounts get events from now on; traffic of the known seat creates none.
        result = await store.record([snap(T0 + 1, wins=windows(10.0, None))])
        assert result.accounts_created == 0
        assert await store.delete_account(1)
        assert kinds(await store.account_events_after(0)) == [(1, "deleted")]
    finally:
        await store.close()


async def test_sessions_roundtrip_and_end(store: Store, db_path: Path) -> None:
    await store.create_session("a" * 64, T0, T0 + 100, keep=10)
    row = await store.session("a" * 64)
    assert row == SessionRow("a" * 64, T0, T0 + 100, T0)
    assert await store.session("b" * 64) is None
    await store.touch_session("a" * 64, T0 + 5)
    await store.touch_session("a" * 64, T0 + 1)  # never moves back
    row = await store.session("a" * 64)
    assert row is not None
    assert row.last_used_at == T0 + 5
    await store.create_session("b" * 64, T0 + 1, T0 + 100, keep=10)
    assert await store.delete_session("a" * 64)
    assert not await store.delete_session("a" * 64)
    assert await store.delete_sessions() == 1
    assert query(db_path, "SELECT count(*) FROM sessions") == [(0,)]


async def test_new_sessions_drop_expired_ones_and_keep_the_newest(
    store: Store, db_path: Path
) -> None:
    await store.create_session("0" * 64, T0, T0 + 10, keep=3)
    for n in range(1, 6):
        await store.create_session(str(n) * 64, T0 + 20 + n, T0 + 1000, keep=3)
    kept = query(db_path, "SELECT substr(id_sha256, 1, 1) FROM sessions ORDER BY created_at")
    assert kept == [("3",), ("4",), ("5",)]  # "0" expired; "1" and "2" were the oldest


async def test_version_4_database_loses_the_cookie_key_and_gains_sessions(
    tmp_path: Path,
) -> None:
    first_four = tmp_path / "migrations"
    first_four.mkdir()
    for file in sorted(paths.migrations_dir().glob("000[1-4]_*.sql")):
        shutil.copy(file, first_four)
    path = tmp_path / "codexgate.db"
    old = await Store.open(path, migrations=first_four)
    try:
        assert await old.schema_version() == 4
        await old.set_setting("admin_token_sha256", "f" * 64)
        await old.set_setting("cookie_key", "k" * 64)
    finally:
        await old.close()
    store = await Store.open(path)
    try:
        assert await store.schema_version() == LATEST
        assert await store.get_setting("cookie_key") is None  # the old cookies end with it
        assert await store.get_setting("admin_token_sha256") == "f" * 64
        assert await store.session("a" * 64) is None
    finally:
        await store.close()
    assert query(path, "SELECT name FROM sqlite_master WHERE name = 'sessions_expiry'") == [
        ("sessions_expiry",)
    ]


async def test_a_bad_request_rolls_back_the_whole_batch(store: Store) -> None:
    await store.record([snap(at=T0)])
    bad = request_record(T0 + 2, who=OTHER, transport="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        await store.record([snap(at=T0 + 1, wins=windows(20.0)), bad])
    assert len(await store.accounts()) == 1
    assert await store.count_history() == 1
    assert await store.count_requests() == 0
    assert OTHER.account_key not in store._account_ids
    result = await store.record(
        [snap(at=T0 + 3, wins=windows(20.0)), request_record(T0 + 3, who=OTHER)]
    )
    assert result == RecordResult(
        accounts_created=1, rows_inserted=1, rows_confirmed=0, requests_inserted=1
    )


async def test_deleting_an_account_deletes_its_requests(store: Store) -> None:
    await store.record(
        [
            request_record(T0),
            request_record(T0 + 1, who=OTHER),
            request_record(T0 + 2, anonymous=True),
            snap(),
        ]
    )
    first, second = await store.accounts()
    assert await store.delete_account(first.id)
    rows = await store.requests()
    assert [row.account_id for row in rows] == [None, second.id]
    assert query(store.path, "SELECT count(*) FROM requests") == [(2,)]
    # The account comes back with the next request, with none of the old ones.
    result = await store.record([request_record(T0 + 3)])
    assert result.accounts_created == 1
    [again] = [a for a in await store.accounts() if a.account_key == first.account_key]
    assert [row.started_at for row in await store.requests(account_id=again.id)] == [T0 + 3]


async def test_the_documented_request_query_sums_each_account(store: Store) -> None:
    # docs/database.md's example over the request log, run against known rows (test_readme.py
    # runs it against a gateway's database too).
    doc = (REPO / "docs" / "database.md").read_text()
    sqlite_part = doc[: doc.index("## PostgreSQL")]
    [sql] = [
        q for q in re.findall(r"```sql\n(.*?)```", sqlite_part, flags=re.DOTALL) if "requests" in q
    ]
    now = time.time()
    turn = TokenUsage(
        input_tokens=1000,
        cached_input_tokens=800,
        output_tokens=200,
        reasoning_tokens=50,
        total_tokens=1200,
    )
    await store.record(
        [
            request_record(now - 60, tokens=turn),
            request_record(now - 30, tokens=turn),
            request_record(now - 20, status=429),
            request_record(now - 10, who=OTHER, tokens=TokenUsage(10, 0, 5, 0, 15)),
            request_record(now - 5, anonymous=True, status=None),
            request_record(now - 2 * 86400, tokens=turn),  # too old
        ]
    )
    await store.update_account(1, display_name="Work seat")
    rows = query(store.path, sql)
    assert rows == [
        ("Work seat", 3, 1, 2000, 1600, 400, None),
        ("two@example.com", 1, 0, 10, 0, 5, None),
        ("(no credential)", 1, 1, None, None, None, None),
    ]


async def test_spend_control_only_writes_a_codex_row_without_windows(store: Store) -> None:
    # A business seat: wham/usage reports no codex windows, a spend limit and another family.
    now = time.time()
    resets = int(now) + 920_777
    spend = SpendControl(
        reached=False,
        limit="15000",
        used="3831.74",
        used_percent=26.0,
        resets_at=resets,
        source="workspace_spend_controls",
    )
    extra = LimitReport(
        "codex_bengalfox",
        "gpt-5.2-codex-sonic",
        (Window("primary", "5h", "length", 3.0, 300, FIVE_H_RESET),),
    )

    def body(at: float, control: SpendControl) -> Snapshot:
        report = UsageReport(limits=(extra,), plan_type="business", spend_control=control)
        return Snapshot(identity(plan="business"), at, "usage_body", report, 200)

    result = await store.record([body(now, spend)])
    assert result.rows_inserted == 2
    codex, sonic = await store.latest_usage()
    assert codex.usage.limit_id == "codex"
    assert codex.usage.source == "usage_body"
    assert {codex.usage.five_hour_used_percent, codex.usage.seven_day_used_percent} == {None}
    assert {codex.usage.monthly_used_percent, codex.usage.primary_used_percent} == {None}
    assert codex.usage.spend_control_reached is False
    assert (codex.usage.spend_limit, codex.usage.spend_used) == ("15000", "3831.74")
    assert codex.usage.spend_used_percent == 26.0
    assert codex.usage.spend_resets_at == resets
    assert codex.usage.spend_source == "workspace_spend_controls"
    assert codex.spend_reset_in_seconds == pytest.approx(920_777, abs=2)
    assert codex.usage.plan_type == "business"
    assert sonic.usage.limit_id == "codex_bengalfox"
    assert sonic.usage.five_hour_used_percent == 3.0
    assert {sonic.usage.spend_limit, sonic.usage.spend_control_reached} == {None}
    # Reset jitter within the tolerance confirms; spending more or reaching the limit changes.
    jitter = SpendControl(False, "15000", "3831.74", 26.0, resets + 1, "workspace_spend_controls")
    result = await store.record([body(now + 1, jitter)])
    assert (result.rows_inserted, result.rows_confirmed) == (0, 2)
    more = SpendControl(False, "15000", "4000.00", 26.7, resets, "workspace_spend_controls")
    reached = SpendControl(True, "15000", "15000.00", 100.0, resets, "workspace_spend_controls")
    result = await store.record([body(now + 2, more), body(now + 3, reached)])
    assert (result.rows_inserted, result.rows_confirmed) == (2, 2)
    [account] = await store.accounts()
    rows = await store.history(account.id, limit_id="codex")
    assert [(row.spend_used, row.spend_control_reached) for row in rows] == [
        ("3831.74", False),
        ("4000.00", False),
        ("15000.00", True),
    ]
    # Stored as 0/1 (NULL on the other family's row).
    stored = query(store.path, "SELECT DISTINCT spend_control_reached FROM usage_snapshots")
    assert set(stored) == {(None,), (0,), (1,)}


@pytest.mark.parametrize(
    ("account", "index"), [(False, "requests_time"), (True, "requests_account_time")]
)
async def test_the_query_seeks_a_time_index(store: Store, account: bool, index: str) -> None:
    statements: list[str] = []
    await store._db.set_trace_callback(statements.append)
    await store.request_activity(
        since=T0, until=T0 + 300, bucket_seconds=60, account_id=1 if account else None
    )
    [sql] = statements  # with its bound values written in
    plan = " ".join(str(row[-1]) for row in query(store.path, "EXPLAIN QUERY PLAN " + sql))
    assert f"SEARCH requests USING INDEX {index}" in plan, plan
    assert "started_at>? AND started_at<?" in plan, plan
