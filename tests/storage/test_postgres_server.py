"""The tests' own PostgreSQL server (tests/helpers/postgres.py): fresh databases, the password
rule over TCP, and a stop and start that keep the data and the port."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.helpers.postgres import SUPERUSER, PostgresServer, child_pids, database_name

# Everything that is not PostgreSQL's own catalogue.
USER_RELATIONS = """
    SELECT count(*) FROM pg_class JOIN pg_namespace ON pg_namespace.oid = relnamespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg_toast%'
"""


async def test_fresh_databases_are_distinct_and_empty(postgres_server: PostgresServer) -> None:
    first = await postgres_server.fresh_database()
    second = await postgres_server.fresh_database()
    assert first != second
    assert [row[0] for row in await postgres_server.run_sql(first, USER_RELATIONS)] == [0]

    connection = await asyncpg.connect(first)
    try:
        await connection.execute("CREATE TABLE marker (id bigint)")
    finally:
        await connection.close()

    assert [row[0] for row in await postgres_server.run_sql(first, USER_RELATIONS)] == [1]
    assert [row[0] for row in await postgres_server.run_sql(second, USER_RELATIONS)] == [0]


async def test_a_dropped_database_is_gone(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    connection = await asyncpg.connect(postgres_database)  # dropped even with a client on it
    try:
        await postgres_server.drop_database(postgres_database)
    finally:
        await connection.close()

    names = await postgres_server.run_sql("postgres", "SELECT datname FROM pg_database")
    assert database_name(postgres_database) not in {row["datname"] for row in names}


async def test_tcp_takes_the_password_and_nothing_else(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    no_passfile = str(tmp_path / "no-pgpass")

    for password in (None, "wrong"):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host="127.0.0.1",
                port=postgres_server.port,
                database="postgres",
                user=SUPERUSER,
                password=password,
                passfile=no_passfile,
            )

    connection = await asyncpg.connect(postgres_server.url)
    try:
        assert await connection.fetchval("SELECT current_user") == SUPERUSER
    finally:
        await connection.close()


@pytest.mark.parametrize("immediate", [False, True], ids=["fast", "crash"])
async def test_a_restart_keeps_the_data_and_the_port(immediate: bool) -> None:
    with PostgresServer() as server:
        url = await server.fresh_database()
        await server.run_sql(url, "CREATE TABLE kept (note text)")
        await server.run_sql(url, "INSERT INTO kept VALUES ('before the outage')")
        port = server.port

        await server.stop_async(immediate=immediate)
        assert not server.running
        with pytest.raises(ConnectionRefusedError):
            await asyncpg.connect(url)

        await server.start_async()
        assert server.port == port
        rows = await server.run_sql(url, "SELECT note FROM kept")
        assert [row["note"] for row in rows] == ["before the outage"]


def test_the_password_stays_out_of_the_repr(postgres_server: PostgresServer) -> None:
    password = postgres_server.url.split("@")[0].rsplit(":", 1)[1]
    assert password not in repr(postgres_server)


def test_a_closed_server_leaves_no_process_and_no_folder() -> None:
    server = PostgresServer()
    postmaster = server.pid
    assert postmaster is not None
    processes = [postmaster, *child_pids(postmaster)]
    assert len(processes) > 1

    server.close()

    assert not server.folder.exists()
    assert not [pid for pid in processes if Path(f"/proc/{pid}").exists()]
