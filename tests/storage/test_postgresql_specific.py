"""What only the PostgreSQL backend has: the error guard, migrating under an advisory lock, a
server that goes away and comes back, ids in commit order across instances, the docs' queries."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codexgate import paths
from codexgate.storage import open_storage
from codexgate.storage.interface import Storage, StorageSetupError, StorageUnavailable
from codexgate.storage.location import PostgresURL, parse_database
from codexgate.storage.migrations import read_migrations
from codexgate.storage.postgresql.store import PostgresStore
from tests.helpers.builders import T0, identity, request_record, snap, windows
from tests.helpers.paths import REPO
from tests.helpers.postgres import PostgresServer


def _url(database: str) -> PostgresURL:
    location = parse_database(database)
    assert isinstance(location, PostgresURL)
    return location


@pytest.fixture
async def pg(postgres_database: str) -> AsyncIterator[Storage]:
    store = await open_storage(_url(postgres_database))
    yield store
    await store.close()


def test_every_public_method_turns_driver_errors_into_storage_unavailable() -> None:
    public = [name for name in dir(PostgresStore) if not name.startswith("_") and name != "closed"]
    unguarded = [
        name
        for name in public
        if callable(getattr(PostgresStore, name))
        and name not in ("open", "schema_status", "url")
        and not hasattr(getattr(PostgresStore, name), "__wrapped__")
    ]
    assert unguarded == []


async def test_instances_starting_together_migrate_once(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    stores = await asyncio.gather(*(open_storage(_url(postgres_database)) for _ in range(4)))
    try:
        newest = read_migrations(paths.migrations_dir("postgresql"))[-1].number
        assert [await store.schema_version() for store in stores] == [newest] * 4
        rows = await postgres_server.run_sql(
            postgres_database, "SELECT version FROM codexgate_schema"
        )
        assert [row["version"] for row in rows] == [newest]
    finally:
        for store in stores:
            await store.close()


async def test_a_database_newer_than_the_code_is_refused(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    store = await open_storage(_url(postgres_database))
    await store.close()
    await postgres_server.run_sql(postgres_database, "UPDATE codexgate_schema SET version = 999")
    with pytest.raises(StorageSetupError, match="newer than this codexgate supports"):
        await open_storage(_url(postgres_database))


async def test_a_version_7_database_migrates_and_keeps_its_rows(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    up_to_7 = tmp_path / "migrations"
    up_to_7.mkdir()
    for name in ("0001_initial.sql", "0007_instances.sql"):
        shutil.copy(paths.migrations_dir("postgresql") / name, up_to_7)
    old = await PostgresStore.open(_url(postgres_database), migrations=up_to_7)
    try:
        assert await old.schema_version() == 7
    finally:
        await old.close()
    view_before = await _columns(postgres_server, postgres_database, "latest_usage")
    # A row as a version 7 codexgate wrote it (this code's writes need version 8).
    await postgres_server.run_sql(
        postgres_database,
        "INSERT INTO accounts (id, account_key, first_seen_at, last_seen_at) "
        "VALUES (1, 'seat:acct-1:user-1', $1, $1)",
        T0,
    )
    await postgres_server.run_sql(
        postgres_database,
        "INSERT INTO usage_snapshots (id, account_id, captured_at, confirmed_at, source, "
        "limit_id, five_hour_used_percent, limit_hit_type, spend_limit) "
        "VALUES (1, 1, $1, $1, 'error', 'codex', 10.0, 'usage_limit_reached', '50')",
        T0,
    )
    store = await open_storage(_url(postgres_database))
    try:
        assert await store.schema_version() == 8
        [row] = await store.history(1)
        assert (row.five_hour_used_percent, row.limit_hit_type, row.spend_limit) == (
            10.0,
            "usage_limit_reached",
            "50",
        )
        new = (row.spend_reached_limit_type, row.spend_limits, row.reset_credits, row.promo_message)
        assert new == (None,) * 4
        [latest] = await store.latest_usage()
        assert latest.usage == row
    finally:
        await store.close()
    # Every column the view had is still there, under the same name, in the same order.
    view_after = await _columns(postgres_server, postgres_database, "latest_usage")
    assert view_after == [*view_before, "spend_reached_limit_type", "spend_limits",
                          "reset_credits", "promo_message"]  # fmt: skip


async def _columns(server: PostgresServer, database: str, table: str) -> list[str]:
    """A table's or view's column names, in order."""
    rows = await server.run_sql(
        database,
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
        "ORDER BY ordinal_position",
        table,
    )
    return [str(row["column_name"]) for row in rows]


async def test_a_server_that_goes_away_is_unavailable_then_used_again(
    postgres_server: PostgresServer, pg: Storage
) -> None:
    await pg.record([snap(T0)])
    await postgres_server.stop_async(immediate=True)
    try:
        with pytest.raises(StorageUnavailable):
            await pg.record([snap(T0 + 1, wins=windows(20.0))])
        with pytest.raises(StorageUnavailable):
            await pg.accounts()
    finally:
        await postgres_server.start_async()
    # The pool replaces its dead connections by itself; the failed batch wrote nothing.
    result = await pg.record([snap(T0 + 2, wins=windows(30.0))])
    assert result.rows_inserted == 1
    [account] = await pg.accounts()
    assert [row.five_hour_used_percent for row in await pg.history(account.id)] == [10.0, 30.0]


async def test_ids_follow_commit_order_when_two_instances_write(postgres_database: str) -> None:
    """A reader that follows `id > cursor` never skips a row that another instance committed
    late: writers hold one advisory lock, so ids are handed out in commit order."""
    writers = [await open_storage(_url(postgres_database)) for _ in range(2)]
    reader = await open_storage(_url(postgres_database))
    seen: list[int] = []
    done = asyncio.Event()

    async def write(store: Storage, seat: int) -> None:
        who = identity(f"seat:acct-{seat}:user-{seat}", email=f"{seat}@example.com")
        for n in range(60):
            await store.record(
                [
                    snap(T0 + n, who=who, wins=windows(float(n % 100))),
                    request_record(T0 + n, who=who),
                ]
            )

    async def follow() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            rows = await reader.usage_after(cursor, 50)
            seen.extend(row.id for row in rows)
            cursor = rows[-1].id if rows else cursor
            if finished and not rows:
                return
            await asyncio.sleep(0)

    try:
        follower = asyncio.create_task(follow())
        await asyncio.gather(write(writers[0], 1), write(writers[1], 2))
        done.set()
        await follower
        every = [row.id for row in await reader.usage_after(0, 1000)]
        assert len(every) == 120
        assert seen == every
    finally:
        for store in (*writers, reader):
            await store.close()


def _psql_examples() -> list[str]:
    text = (REPO / "docs" / "database.md").read_text()
    section = text[text.index("## PostgreSQL") :]
    return re.findall(r"```sql\n(.*?)```", section, re.DOTALL)


async def test_the_documented_psql_queries_run(
    postgres_server: PostgresServer, postgres_database: str, pg: Storage
) -> None:
    who = identity(email="alice@example.com")
    await pg.record([snap(T0, who=who), request_record(T0, who=who)])
    examples = _psql_examples()
    assert len(examples) == 4
    for sql in examples:
        await postgres_server.run_sql(postgres_database, sql)
