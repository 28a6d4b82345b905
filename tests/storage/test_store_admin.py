"""The store's admin additions of schema version 3: settings, account events, paging, feed."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from codexgate import paths
from codexgate.core.models import LimitReport, RequestRecord, Source
from codexgate.core.rows import AccountEvent, FeedCursor, SessionRow, UsageRow
from codexgate.storage.sqlite.store import Store
from tests.storage.test_store import T0, identity, query, snap, windows

OTHER = identity("seat:acct-2:user-2", email="two@example.com", plan="team")
TOKEN = identity("token:" + "a" * 64, fingerprint="a" * 64, email=None, plan=None)


def request(at: float = T0, *, anonymous: bool = False) -> RequestRecord:
    """A proxied /responses turn of the default seat (or of no seat)."""
    return RequestRecord(
        started_at=at,
        identity=None if anonymous else identity(),
        method="POST",
        path="/backend-api/codex/responses",
        transport="sse",
        status=200,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's database lives."""
    return tmp_path / "db" / "codexgate.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    """A fresh store with a 300 s heartbeat."""
    opened = await Store.open(db_path)
    yield opened
    await opened.close()


def kinds(events: list[AccountEvent]) -> list[tuple[int, str]]:
    """(account_id, kind) of each event, in order."""
    return [(event.account_id, event.kind) for event in events]


def add_trigger(path: Path, sql: str) -> None:
    """Create a trigger through a separate connection (to make a write fail on purpose)."""
    with sqlite3.connect(path) as db:
        db.execute(sql)
    db.close()


# -- settings -------------------------------------------------------------------------------


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


async def test_set_setting_if_absent_keeps_the_first_value(store: Store) -> None:
    assert await store.set_setting_if_absent("cookie_key", "first") == "first"
    assert await store.set_setting_if_absent("cookie_key", "second") == "first"
    assert await store.get_setting("cookie_key") == "first"
    await store.set_setting("cookie_key", "rotated")
    assert await store.set_setting_if_absent("cookie_key", "third") == "rotated"


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


# -- account events -------------------------------------------------------------------------


async def test_traffic_creating_accounts_writes_created_events(store: Store) -> None:
    before = time.time()
    await store.record([snap(), snap(who=OTHER), request(anonymous=True)])
    after = time.time()
    first, second = await store.accounts()
    events = await store.account_events_after(0)
    assert kinds(events) == [(first.id, "created"), (second.id, "created")]
    assert all(before <= event.at <= after for event in events)
    assert events[0].id < events[1].id
    # Seeing the seats again (cached or not) creates nothing.
    await store.record([snap(T0 + 60), request(T0 + 61)])
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


async def test_create_account_then_again_updates(store: Store) -> None:
    row, created = await store.create_account(TOKEN, "Scripted", T0)
    assert created
    assert (row.account_key, row.display_name) == (TOKEN.account_key, "Scripted")
    assert (row.token_fingerprint, row.first_seen_at, row.last_seen_at) == ("a" * 64, T0, T0)
    assert await store.account(row.id) == row
    again, created = await store.create_account(TOKEN, None, T0 + 10)
    assert not created
    assert again == row  # None keeps the name; the seen times follow traffic only
    renamed, created = await store.create_account(TOKEN, "Renamed", T0 + 20)
    assert not created
    assert (renamed.id, renamed.display_name) == (row.id, "Renamed")
    assert await store.account_events_after(0) == [
        AccountEvent(1, row.id, "created", T0),
        AccountEvent(2, row.id, "updated", T0 + 10),
        AccountEvent(3, row.id, "updated", T0 + 20),
    ]
    assert len(await store.accounts()) == 1


async def test_create_account_and_traffic_share_the_account(store: Store) -> None:
    # Traffic first: create_account finds the seat and takes the identity's fields.
    await store.record([snap()])
    [seen] = await store.accounts()
    newer = identity(fingerprint="e" * 64, email="new@example.com")
    row, created = await store.create_account(newer, "Mine", T0 + 5)
    assert not created
    assert row.id == seen.id
    assert (row.display_name, row.email, row.token_fingerprint) == (
        "Mine",
        "new@example.com",
        "e" * 64,
    )
    assert (row.first_seen_at, row.last_seen_at) == (seen.first_seen_at, seen.last_seen_at)
    # create_account first: traffic then records into that account, creating nothing.
    made, created = await store.create_account(OTHER, None, T0)
    assert created
    result = await store.record([snap(T0 + 30, who=OTHER)])
    assert result.accounts_created == 0
    assert [r.account_id for r in await store.history(made.id)] == [made.id]
    assert kinds(await store.account_events_after(0)) == [
        (seen.id, "created"),
        (seen.id, "updated"),
        (made.id, "created"),
    ]


async def test_update_account_writes_updated_events(store: Store) -> None:
    await store.record([snap()])
    [account] = await store.accounts()
    row = await store.update_account(account.id, display_name="Work seat", now=T0 + 1)
    assert row is not None
    assert row.display_name == "Work seat"
    assert await store.account(account.id) == row
    cleared = await store.update_account(account.id, display_name=None, now=T0 + 2)
    assert cleared is not None
    assert cleared.display_name is None
    assert await store.update_account(account.id + 1, display_name="nobody") is None
    assert await store.rename_account(account.id, "Again")
    assert not await store.rename_account(account.id + 1, "nobody")
    events = await store.account_events_after(0)
    assert kinds(events) == [(account.id, kind) for kind in ("created", *["updated"] * 3)]
    assert [event.at for event in events[1:3]] == [T0 + 1, T0 + 2]


async def test_delete_account_writes_a_deleted_event_and_cascades(store: Store) -> None:
    await store.record([snap(), request(), snap(who=OTHER)])
    first, second = await store.accounts()
    assert await store.delete_account(first.id, now=T0 + 9)
    assert not await store.delete_account(first.id)  # no second event
    assert await store.history(first.id) == []
    assert await store.requests() == []
    assert [a.id for a in await store.accounts()] == [second.id]
    events = await store.account_events_after(0)
    assert kinds(events) == [(first.id, "created"), (second.id, "created"), (first.id, "deleted")]
    assert events[-1].at == T0 + 9
    # The caches forgot the account: its next report makes a new account with a fresh row.
    result = await store.record([snap(T0 + 10)])
    assert (result.accounts_created, result.rows_inserted, result.rows_confirmed) == (1, 1, 0)
    back = next(a for a in await store.accounts() if a.account_key == first.account_key)
    assert kinds(await store.account_events_after(events[-1].id)) == [(back.id, "created")]


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


# -- paged history --------------------------------------------------------------------------


async def fill_history(store: Store) -> int:
    """Two limit families, rows at equal times, some without a 7d window; the account id."""
    two = (
        LimitReport("codex", None, windows(10.0, 40.0)),
        LimitReport("codex_bengalfox", "Other", windows(1.0, None)),
    )
    items = [snap(T0, limits=two)]  # two rows with the same captured_at
    for n in range(1, 8):
        seven = None if n % 3 == 0 else 40.0 + n
        items.append(snap(T0 + 10 * n, wins=windows(10.0 + n, seven)))
    items.append(
        snap(
            T0 + 80,
            limits=(
                LimitReport("codex", None, windows(50.0, 60.0)),
                LimitReport("codex_bengalfox", "Other", windows(2.0, None)),
            ),
        )
    )
    await store.record(items)
    [account] = await store.accounts()
    return account.id


async def all_pages(store: Store, account_id: int, size: int, **filters: object) -> list[UsageRow]:
    """Walk history_page with the keyset cursor until a short page."""
    rows: list[UsageRow] = []
    after: tuple[float, int] | None = None
    while True:
        page = await store.history_page(account_id, after=after, limit=size, **filters)  # type: ignore[arg-type]
        rows += page
        if len(page) < size:
            return rows
        after = (page[-1].captured_at, page[-1].id)


async def test_history_page_cursor_returns_each_row_once(store: Store) -> None:
    account_id = await fill_history(store)
    everything = await store.history(account_id)
    assert len(everything) == 11
    assert everything[0].captured_at == everything[1].captured_at  # a tie broken by id
    for size in (1, 2, 3, 11, 50):
        assert await all_pages(store, account_id, size) == everything
    codex = await store.history(account_id, limit_id="codex")
    assert await all_pages(store, account_id, 2, limit_id="codex") == codex
    # since/until bound the pages as they bound history().
    ranged = await store.history(account_id, since=T0 + 10, until=T0 + 80)
    assert await all_pages(store, account_id, 2, since=T0 + 10, until=T0 + 80) == ranged
    # A cursor in the middle of a tie: the other row of the same time still comes.
    first = everything[0]
    page = await store.history_page(account_id, after=(first.captured_at, first.id), limit=1)
    assert page == [everything[1]]
    assert await store.history_page(account_id, limit=0) == []
    assert await store.history_page(account_id + 1) == []


async def test_history_page_window_filter(store: Store) -> None:
    account_id = await fill_history(store)
    everything = await store.history(account_id)
    seven_day = [r for r in everything if r.seven_day_used_percent is not None]
    assert 0 < len(seven_day) < len(everything)
    assert await all_pages(store, account_id, 2, window="7d") == seven_day
    assert await store.history_page(account_id, window="5h") == everything
    assert await store.history_page(account_id, window="monthly") == []
    bengalfox = await store.history_page(account_id, limit_id="codex_bengalfox", window="7d")
    assert bengalfox == []


@pytest.mark.parametrize("window", ["1h", "", "five_hour_used_percent", "7D"])
async def test_history_page_rejects_an_unknown_window(store: Store, window: str) -> None:
    with pytest.raises(ValueError, match="window"):
        await store.history_page(1, window=window)


async def test_negative_limits_are_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.history_page(1, limit=-1)
    with pytest.raises(ValueError, match="limit"):
        await store.usage_after(0, limit=-1)
    with pytest.raises(ValueError, match="limit"):
        await store.requests_after(0, limit=-1)
    with pytest.raises(ValueError, match="limit"):
        await store.account_events_after(0, limit=-1)


# -- feed replay ----------------------------------------------------------------------------


async def test_feed_cursor_and_replay(store: Store) -> None:
    assert await store.feed_cursor() == FeedCursor(usage=0, request=0, account=0)
    assert await store.usage_after(0) == []
    assert await store.requests_after(0) == []
    assert await store.account_events_after(0) == []
    await store.record([snap(), request(), request(T0 + 1, anonymous=True)])
    cursor = await store.feed_cursor()
    assert cursor == FeedCursor(usage=1, request=2, account=1)
    await store.record([snap(T0 + 10, wins=windows(20.0)), snap(who=OTHER), request(T0 + 2)])
    usage = await store.usage_after(cursor.usage)
    # A batch is written in time order: OTHER's report (at T0) before the change (at T0 + 10).
    assert [(r.id, r.account_id, r.five_hour_used_percent) for r in usage] == [
        (2, 2, 10.0),
        (3, 1, 20.0),
    ]
    assert await store.usage_after(0, limit=2) == (await store.history(1))[:1] + usage[:1]
    requests = await store.requests_after(cursor.request)
    assert [(r.id, r.started_at) for r in requests] == [(3, T0 + 2)]
    assert [r.id for r in await store.requests_after(0, limit=2)] == [1, 2]
    [event] = await store.account_events_after(cursor.account)
    assert (event.id, event.kind) == (2, "created")
    assert await store.feed_cursor() == FeedCursor(usage=3, request=3, account=2)
    assert await store.usage_after(3) == []


async def test_confirmed_row_ids(store: Store) -> None:
    first = await store.record([snap()])
    assert first.confirmed_row_ids == ()
    # A row inserted and confirmed within one batch counts as inserted, not confirmed.
    both = await store.record([snap(T0 + 1, who=OTHER), snap(T0 + 2, who=OTHER)])
    assert (both.rows_inserted, both.rows_confirmed, both.confirmed_row_ids) == (1, 1, ())
    again = await store.record([snap(T0 + 5), snap(T0 + 6, who=OTHER), snap(T0 + 7)])
    assert (again.rows_inserted, again.rows_confirmed) == (0, 3)
    assert again.confirmed_row_ids == (1, 2)
    rows = await store.usage_rows([2, 1, 2, 99])
    assert [(r.id, r.confirmed_at) for r in rows] == [(1, T0 + 7), (2, T0 + 6)]
    changed = await store.record([snap(T0 + 8, wins=windows(11.0))])
    assert changed.confirmed_row_ids == ()
    assert await store.usage_rows([]) == []


async def test_latest_usage_of_several_accounts(store: Store) -> None:
    two = (
        LimitReport("codex", None, windows()),
        LimitReport("codex_bengalfox", None, windows(1.0, None)),
    )
    third = identity("seat:acct-3:user-3")
    await store.record([snap(limits=two), snap(who=OTHER), snap(who=third)])
    first, second, _ = await store.accounts()
    everything = await store.latest_usage()
    wanted = [r for r in everything if r.usage.account_id in (first.id, second.id)]
    assert len(wanted) == 3
    got = await store.latest_usage_of([second.id, first.id, first.id, 999])
    assert [(r.usage.account_id, r.usage.limit_id) for r in got] == [
        (r.usage.account_id, r.usage.limit_id) for r in wanted
    ]
    assert [r.usage for r in got] == [r.usage for r in wanted]
    assert got[0].account_key == first.account_key
    assert await store.latest_usage_of([]) == []
    assert await store.latest_usage_of([999]) == []


# -- migration ------------------------------------------------------------------------------


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
        assert await store.schema_version() == 5
        after = [
            query(path, f"SELECT * FROM {table} ORDER BY id")
            for table in ("accounts", "usage_snapshots", "requests")
        ]
        assert after == before
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


async def test_ids_never_come_back_after_deleting_the_account_with_the_newest_rows(
    store: Store,
) -> None:
    await store.record([snap(T0), request(T0, anonymous=True)])
    newest = RequestRecord(T0 + 11, OTHER, "POST", "/backend-api/codex/responses", "sse", 200)
    await store.record([snap(T0 + 10, who=OTHER), newest])
    before = await store.feed_cursor()
    [doomed] = [a for a in await store.accounts() if a.account_key == OTHER.account_key]
    assert await store.delete_account(doomed.id)
    await store.record([snap(T0 + 20, plan="pro"), request(T0 + 21, anonymous=True)])
    after = await store.feed_cursor()
    # The feed's positions only move forward, so a reconnecting client misses nothing.
    assert after.usage > before.usage
    assert after.request > before.request


# -- sessions (schema version 5) --------------------------------------------------------------


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
        assert await store.schema_version() == 5
        assert await store.get_setting("cookie_key") is None  # the old cookies end with it
        assert await store.get_setting("admin_token_sha256") == "f" * 64
        assert await store.session("a" * 64) is None
    finally:
        await store.close()
    assert query(path, "SELECT name FROM sqlite_master WHERE name = 'sessions_expiry'") == [
        ("sessions_expiry",)
    ]
