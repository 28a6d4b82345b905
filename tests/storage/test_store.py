"""The SQLite store: migrations, file modes, recording with throttling, the view and reads."""

from __future__ import annotations

import shutil
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codexgate import paths
from codexgate.core.models import (
    Credits,
    Identity,
    LimitReport,
    RequestRecord,
    Slot,
    Snapshot,
    Source,
    UsageReport,
    Window,
)
from codexgate.core.rows import RecordResult
from codexgate.storage.sqlite.store import Store, StoreError

LATEST = 5  # the number of the newest file in migrations/
T0 = 1_890_000_000.0  # a capture time; reset times below are a few hours/days after it
FIVE_H_RESET = 1_890_010_000
SEVEN_D_RESET = 1_890_400_000


def identity(
    key: str = "seat:acct-1:user-1",
    *,
    fingerprint: str = "f" * 64,
    email: str | None = "one@example.com",
    plan: str | None = "plus",
) -> Identity:
    """A seat identity as capture would build it."""
    parts = key.split(":")
    return Identity(
        account_key=key,
        token_fingerprint=fingerprint,
        chatgpt_account_id=parts[1] if len(parts) == 3 else None,
        chatgpt_user_id=parts[2] if len(parts) == 3 else None,
        email=email,
        plan_type=plan,
    )


def windows(
    five_hour: float | None = 10.0,
    seven_day: float | None = 40.0,
    *,
    five_hour_reset: int = FIVE_H_RESET,
    seven_day_reset: int = SEVEN_D_RESET,
) -> tuple[Window, ...]:
    """A 5h window in the primary slot and a 7d window in the secondary slot."""
    result: list[Window] = []
    if five_hour is not None:
        result.append(Window("primary", "5h", "length", five_hour, 300, five_hour_reset))
    if seven_day is not None:
        slot: Slot = "secondary" if result else "primary"
        result.append(Window(slot, "7d", "length", seven_day, 10080, seven_day_reset))
    return tuple(result)


def snap(
    at: float = T0,
    *,
    who: Identity | None = None,
    wins: tuple[Window, ...] | None = None,
    limits: tuple[LimitReport, ...] | None = None,
    source: Source = "headers",
    plan: str | None = None,
    credits: Credits | None = None,
) -> Snapshot:
    """A snapshot of one report (by default the 'codex' family with 5h and 7d windows)."""
    if limits is None:
        limits = (LimitReport("codex", None, windows() if wins is None else wins),)
    report = UsageReport(limits=limits, plan_type=plan, credits=credits)
    return Snapshot(
        identity=who or identity(),
        captured_at=at,
        source=source,
        report=report,
        http_status=200,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store with a 300 s heartbeat."""
    opened = await Store.open(tmp_path / "db" / "codexgate.db")
    yield opened
    await opened.close()


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


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the database through a separate plain sqlite3 connection."""
    with sqlite3.connect(path) as db:
        rows = db.execute(sql).fetchall()
    db.close()
    return rows


# -- migrations -----------------------------------------------------------------------------


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
    with pytest.raises(StoreError, match=rf"schema version 99 is newer .* supports \({LATEST}\)"):
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
    with pytest.raises(StoreError, match=r"0002_broken\.sql"):
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
        assert {row[len(before[0]) :] for row in after} == {(None,) * 8}
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
    with pytest.raises(StoreError, match=r"NNNN_name\.sql"):
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
    with pytest.raises(StoreError, match="cannot open database"):
        await Store.open(tmp_path / "a-file" / "codexgate.db")


# -- accounts -------------------------------------------------------------------------------


async def test_first_sight_creates_an_account_from_the_identity(store: Store) -> None:
    result = await store.record([snap(at=T0), snap(at=T0 + 1)])
    assert result.accounts_created == 1
    [account] = await store.accounts()
    assert account.account_key == "seat:acct-1:user-1"
    assert account.chatgpt_account_id == "acct-1"
    assert account.chatgpt_user_id == "user-1"
    assert account.email == "one@example.com"
    assert account.plan_type == "plus"
    assert account.display_name is None
    assert account.token_fingerprint == "f" * 64
    assert account.first_seen_at == T0
    assert account.last_seen_at == T0 + 1
    assert await store.account(account.id) == account
    assert await store.account(account.id + 1) is None


async def test_two_keys_are_two_accounts(store: Store) -> None:
    other = identity("seat:acct-1:user-2", email="two@example.com")
    result = await store.record([snap(who=identity()), snap(who=other)])
    assert result.accounts_created == 2
    accounts = await store.accounts()
    assert [a.account_key for a in accounts] == ["seat:acct-1:user-1", "seat:acct-1:user-2"]
    assert [a.email for a in accounts] == ["one@example.com", "two@example.com"]


async def test_new_fingerprint_updates_the_same_account(store: Store) -> None:
    await store.record([snap(at=T0, who=identity(fingerprint="a" * 64))])
    result = await store.record([snap(at=T0 + 60, who=identity(fingerprint="b" * 64, email=None))])
    assert result.accounts_created == 0
    [account] = await store.accounts()
    assert account.token_fingerprint == "b" * 64
    assert account.email == "one@example.com"  # a missing claim does not erase a known one
    assert account.last_seen_at == T0 + 60
    assert account.first_seen_at == T0


async def test_an_older_batch_does_not_overwrite_newer_account_fields(store: Store) -> None:
    await store.record([snap(at=T0 + 60, who=identity(fingerprint="b" * 64))])
    await store.record([snap(at=T0, who=identity(fingerprint="a" * 64))])
    [account] = await store.accounts()
    assert account.token_fingerprint == "b" * 64
    assert account.first_seen_at == T0
    assert account.last_seen_at == T0 + 60


async def test_report_plan_wins_over_the_token_claim(store: Store) -> None:
    await store.record([snap(who=identity(plan="plus"), plan="pro")])
    [account] = await store.accounts()
    assert account.plan_type == "pro"
    [row] = await store.history(account.id)
    assert row.plan_type == "pro"


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


async def test_rename_and_delete_account(store: Store) -> None:
    await store.record([snap(at=T0)])
    [account] = await store.accounts()
    assert await store.rename_account(account.id, "Work seat")
    assert (await store.accounts())[0].display_name == "Work seat"
    assert not await store.rename_account(account.id + 1, "nobody")
    assert await store.delete_account(account.id)
    assert await store.accounts() == []
    assert await store.count_history() == 0
    assert not await store.delete_account(account.id)
    # Seen again after deletion: a new account with fresh history, not a confirmation.
    result = await store.record([snap(at=T0 + 1)])
    assert result == RecordResult(accounts_created=1, rows_inserted=1, rows_confirmed=0)


# -- throttled history ----------------------------------------------------------------------


async def test_same_values_confirm_one_row(store: Store) -> None:
    first = await store.record([snap(at=T0)])
    assert first == RecordResult(accounts_created=1, rows_inserted=1, rows_confirmed=0)
    second = await store.record([snap(at=T0 + 5), snap(at=T0 + 10)])
    assert second == RecordResult(accounts_created=0, rows_inserted=0, rows_confirmed=2)
    [account] = await store.accounts()
    [row] = await store.history(account.id)
    assert row.captured_at == T0
    assert row.confirmed_at == T0 + 10


async def test_unchanged_snapshots_in_a_batch_cost_one_update(store: Store) -> None:
    await store.record([snap(at=T0)])
    statements: list[str] = []
    await store._db.set_trace_callback(statements.append)
    await store.record([snap(at=T0 + i) for i in range(1, 11)])
    await store._db.set_trace_callback(None)  # type: ignore[arg-type]  # None removes it
    updates = [s for s in statements if s.lstrip().startswith("UPDATE usage_snapshots")]
    assert len(updates) == 1
    assert not [s for s in statements if s.lstrip().startswith("INSERT INTO usage_snapshots")]


async def test_changed_value_writes_a_new_row(store: Store) -> None:
    await store.record([snap(at=T0, wins=windows(10.0))])
    result = await store.record([snap(at=T0 + 5, wins=windows(11.0)), snap(at=T0 + 6)])
    assert result.rows_inserted == 2  # 10 -> 11 -> 10: every change is history
    [account] = await store.accounts()
    rows = await store.history(account.id)
    assert [r.five_hour_used_percent for r in rows] == [10.0, 11.0, 10.0]
    assert [r.captured_at for r in rows] == [T0, T0 + 5, T0 + 6]


async def test_confirmation_within_a_batch_lands_on_the_row_it_inserted(store: Store) -> None:
    result = await store.record([snap(at=T0), snap(at=T0 + 1), snap(at=T0 + 2)])
    assert result == RecordResult(accounts_created=1, rows_inserted=1, rows_confirmed=2)
    [account] = await store.accounts()
    [row] = await store.history(account.id)
    assert (row.captured_at, row.confirmed_at) == (T0, T0 + 2)


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


async def test_reset_jitter_within_tolerance_is_the_same(store: Store) -> None:
    await store.record([snap(at=T0, wins=windows(five_hour_reset=FIVE_H_RESET))])
    same = await store.record([snap(at=T0 + 1, wins=windows(five_hour_reset=FIVE_H_RESET + 2))])
    assert (same.rows_inserted, same.rows_confirmed) == (0, 1)
    changed = await store.record([snap(at=T0 + 2, wins=windows(five_hour_reset=FIVE_H_RESET + 60))])
    assert (changed.rows_inserted, changed.rows_confirmed) == (1, 0)
    [account] = await store.accounts()
    rows = await store.history(account.id)
    assert [r.five_hour_resets_at for r in rows] == [FIVE_H_RESET, FIVE_H_RESET + 60]


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


async def test_batch_is_recorded_in_time_order_and_never_behind_the_newest_row(
    store: Store,
) -> None:
    await store.record([snap(at=T0 + 2, wins=windows(12.0)), snap(at=T0 + 1, wins=windows(11.0))])
    [account] = await store.accounts()
    rows = await store.history(account.id)
    assert [r.five_hour_used_percent for r in rows] == [11.0, 12.0]
    # A report older than the newest row is written at the newest row's time, so that the
    # newest row (by time and by id) is still the last one written.
    await store.record([snap(at=T0, wins=windows(13.0))])
    rows = await store.history(account.id)
    assert [(r.five_hour_used_percent, r.captured_at) for r in rows][-1] == (13.0, T0 + 2)
    [latest] = await store.latest_usage()
    assert latest.usage.five_hour_used_percent == 13.0


async def test_weekly_only_report_leaves_five_hour_unknown(store: Store) -> None:
    weekly = (Window("primary", "7d", "length", 31.5, 10080, SEVEN_D_RESET),)
    await store.record([snap(wins=weekly, credits=Credits(True, False, "120.50"))])
    [account] = await store.accounts()
    [row] = await store.history(account.id)
    assert row.five_hour_used_percent is None
    assert row.five_hour_window_minutes is None
    assert row.five_hour_resets_at is None
    assert (row.seven_day_used_percent, row.seven_day_window_minutes) == (31.5, 10080)
    assert row.seven_day_resets_at == SEVEN_D_RESET
    assert (row.primary_window, row.primary_classified_by) == ("7d", "length")
    assert row.primary_used_percent == 31.5
    assert row.secondary_window is None
    assert row.secondary_used_percent is None
    assert (row.credits_has_credits, row.credits_unlimited) == (True, False)
    assert row.credits_balance == "120.50"
    [latest] = await store.latest_usage()
    assert latest.five_hour_reset_in_seconds is None


async def test_slot_order_fallback_and_raw_slots_are_kept(store: Store) -> None:
    unknown_length = (
        Window("primary", "5h", "slot", 5.0, None, FIVE_H_RESET),
        Window("secondary", "7d", "slot", 50.0, None, SEVEN_D_RESET),
    )
    await store.record([snap(wins=unknown_length)])
    [account] = await store.accounts()
    [row] = await store.history(account.id)
    assert (row.five_hour_used_percent, row.five_hour_window_minutes) == (5.0, None)
    assert (row.primary_classified_by, row.secondary_classified_by) == ("slot", "slot")
    assert (row.secondary_window, row.secondary_used_percent) == ("7d", 50.0)


async def test_extra_limit_family_gets_its_own_rows(store: Store) -> None:
    limits = (
        LimitReport("codex", None, windows(12.5, 40.0)),
        LimitReport(
            "codex_bengalfox",
            "gpt-5.2-codex-sonic",
            (Window("primary", "5h", "length", 3.0, 300, FIVE_H_RESET + 100),),
        ),
    )
    result = await store.record([snap(limits=limits)])
    assert result.rows_inserted == 2
    [account] = await store.accounts()
    assert [r.limit_id for r in await store.history(account.id)] == ["codex", "codex_bengalfox"]
    [extra] = await store.history(account.id, limit_id="codex_bengalfox")
    assert extra.limit_name == "gpt-5.2-codex-sonic"
    assert extra.five_hour_used_percent == 3.0
    assert extra.seven_day_used_percent is None
    # The families are throttled separately: only the changed one gets a new row.
    changed = (limits[0], LimitReport("codex_bengalfox", "gpt-5.2-codex-sonic", ()))
    result = await store.record([snap(at=T0 + 1, limits=changed)])
    assert (result.rows_inserted, result.rows_confirmed) == (1, 1)
    assert len(await store.history(account.id, limit_id="codex_bengalfox")) == 2


# -- the latest_usage view ------------------------------------------------------------------


async def test_latest_usage_is_the_newest_row_per_account_and_limit(store: Store) -> None:
    now = time.time()
    other = identity("seat:acct-2:user-9", email="nine@example.com")
    five_h_reset = int(now) + 3600
    seven_d_reset = int(now) + 86400
    await store.record(
        [
            snap(at=now - 120, wins=windows(10.0, 40.0)),
            snap(at=now - 60, wins=windows(20.0, 41.0, five_hour_reset=five_h_reset)),
            snap(
                at=now - 30,
                wins=windows(
                    21.0, 41.0, five_hour_reset=five_h_reset, seven_day_reset=seven_d_reset
                ),
            ),
            snap(at=now - 10, who=other, wins=windows(None, 70.0)),
            snap(
                at=now - 50,
                limits=(LimitReport("codex_bengalfox", "sonic", windows(1.0, None)),),
            ),
        ]
    )
    await store.rename_account(1, "First")
    latest = await store.latest_usage()
    assert [(r.account_key, r.usage.limit_id) for r in latest] == [
        ("seat:acct-1:user-1", "codex"),
        ("seat:acct-1:user-1", "codex_bengalfox"),
        ("seat:acct-2:user-9", "codex"),
    ]
    first, extra, second = latest
    assert first.usage.five_hour_used_percent == 21.0
    assert first.usage.captured_at == pytest.approx(now - 30)
    assert first.display_name == "First"
    assert first.email == "one@example.com"
    assert first.account_plan_type == "plus"
    assert first.age_seconds == pytest.approx(30, abs=2)
    assert first.five_hour_reset_in_seconds == pytest.approx(five_h_reset - now, abs=2)
    assert first.seven_day_reset_in_seconds == pytest.approx(seven_d_reset - now, abs=2)
    assert first.monthly_reset_in_seconds is None
    assert extra.usage.limit_name == "sonic"
    assert second.usage.five_hour_used_percent is None
    assert second.usage.seven_day_used_percent == 70.0
    assert second.age_seconds == pytest.approx(10, abs=2)
    only = await store.latest_usage(second.usage.account_id)
    assert only == [second] or [r.usage for r in only] == [second.usage]


async def test_latest_usage_age_follows_confirmation(store: Store) -> None:
    now = time.time()
    await store.record([snap(at=now - 100)])
    await store.record([snap(at=now - 5)])
    [latest] = await store.latest_usage()
    assert latest.usage.captured_at == pytest.approx(now - 100)
    assert latest.age_seconds == pytest.approx(5, abs=2)


# -- failures -------------------------------------------------------------------------------


async def test_failed_batch_rolls_back_and_leaves_the_caches_consistent(store: Store) -> None:
    await store.record([snap(at=T0, wins=windows(10.0))])
    newcomer = identity("seat:acct-3:user-3", email="three@example.com")
    bad = snap(at=T0 + 2, source="bogus")  # type: ignore[arg-type]  # violates the CHECK
    with pytest.raises(sqlite3.IntegrityError):
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
    await store.record([snap(at=T0 + 1)])  # confirms a row that is gone: lost, state reloaded
    await store.record([snap(at=T0 + 2)])
    [account] = await store.accounts()
    assert [r.captured_at for r in await store.history(account.id)] == [T0 + 2]


async def test_record_after_close_raises(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "codexgate.db")
    await store.close()
    with pytest.raises(ValueError, match=r"closed|no active connection"):
        await store.record([snap()])


# -- reading --------------------------------------------------------------------------------


async def test_history_filters_by_time_and_limit(store: Store) -> None:
    snapshots = []
    for minute in range(6):
        limits = (
            LimitReport("codex", None, windows(float(minute))),
            LimitReport("codex_bengalfox", None, windows(float(100 - minute))),
        )
        snapshots.append(snap(at=T0 + 60 * minute, limits=limits))
    await store.record(snapshots)
    assert await store.count_history() == 12
    [account] = await store.accounts()
    rows = await store.history(account.id, limit_id="codex", since=T0 + 60, until=T0 + 240)
    assert [r.captured_at for r in rows] == [T0 + 60, T0 + 120, T0 + 180]
    assert {r.limit_id for r in rows} == {"codex"}
    both = await store.history(account.id, since=T0 + 240)
    assert [(r.captured_at, r.limit_id) for r in both] == [
        (T0 + 240, "codex"),
        (T0 + 240, "codex_bengalfox"),
        (T0 + 300, "codex"),
        (T0 + 300, "codex_bengalfox"),
    ]
    assert len(await store.history(account.id, limit=5)) == 5
    assert await store.history(account.id, until=T0) == []
    assert await store.history(account.id + 1) == []


async def test_prune_keeps_the_newest_row_of_each_limit(store: Store) -> None:
    await store.record(
        [snap(at=T0 + i, wins=windows(float(i))) for i in range(5)]
        + [snap(at=T0, who=identity("token:" + "0" * 64, email=None))]
    )
    assert await store.prune_history(T0 + 100) == 4
    assert await store.count_history() == 2
    latest = await store.latest_usage()
    assert sorted(r.usage.captured_at for r in latest) == [T0, T0 + 4]
    # The throttle still confirms the kept row.
    assert (await store.record([snap(at=T0 + 6, wins=windows(4.0))])).rows_confirmed == 1


def _request(at: float, who: Identity | None, *, proven: bool) -> RequestRecord:
    """A request-log record of a turn the upstream answered (proven) or not."""
    return RequestRecord(at, who, "POST", "/backend-api/codex/responses", "sse", 200, proven=proven)


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
            [_request(T0 + 5, liar, proven=False), _request(T0 + 6, stranger, proven=False)]
        )
        assert result == RecordResult(0, 0, 0, 2)
        assert await store.accounts() == [before]
        rows = await store.requests()
        assert [row.account_id for row in rows] == [None, before.id]
    finally:
        await store.close()


async def test_new_accounts_stop_at_max_accounts_and_known_ones_keep_recording(
    store: Store,
) -> None:
    first, second, third = (identity(f"seat:acct-1:user-{n}") for n in (1, 2, 3))
    await store.record([snap(at=T0, who=first)], max_accounts=2)
    result = await store.record(
        [
            snap(at=T0 + 1, who=second),
            snap(at=T0 + 1, who=third),
            _request(T0 + 2, third, proven=True),  # new seats are taken in time order
            snap(at=T0 + 2, who=first, wins=windows(20.0)),
        ],
        max_accounts=2,
    )
    assert result == RecordResult(
        1, 2, 0, 1, seats_refused=1, snapshots_refused=1, requests_refused=1
    )
    assert [a.account_key for a in await store.accounts()] == [
        first.account_key,
        second.account_key,
    ]
    [request] = await store.requests()
    assert request.account_id is None
    assert (await store.record([snap(at=T0 + 3, who=third)])).accounts_created == 1  # no limit
