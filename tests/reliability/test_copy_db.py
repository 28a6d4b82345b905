"""`codexgate copy-db` cut short: by Ctrl-C, by SIGKILL, by the server going away, in the
middle of a large table; the next run of the same command finishes the copy, nothing twice."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import asyncpg

from tests.helpers.copy_db import (
    add_history,
    fill,
    password_of,
    printed_counts,
    run_copy,
    start_copy,
    table_counts,
)
from tests.helpers.postgres import PostgresServer

# Enough usage rows that the copy takes a few seconds: time to cut it short mid-table.
HISTORY_ROWS = 200_000
COMPARED = "id, account_id, captured_at, confirmed_at, limit_id, primary_used_percent"


async def _copied_rows(server: PostgresServer, url: str) -> int:
    """The usage rows committed in the target so far (0 before its tables exist)."""
    try:
        rows = await server.run_sql(url, "SELECT count(*) FROM usage_snapshots")
    except asyncpg.UndefinedTableError:
        return 0
    return int(rows[0][0])


async def _wait_for_more_rows(
    server: PostgresServer, url: str, process: subprocess.Popen[str], than: int
) -> None:
    """Wait until the running copy has committed more usage rows than `than`."""
    for _ in range(1500):
        if await _copied_rows(server, url) > than:
            return
        assert process.poll() is None, process.communicate()
        await asyncio.sleep(0.01)
    raise AssertionError("the copy committed no usage rows within 15 s")


async def _finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    return await asyncio.to_thread(process.communicate, timeout=60)


def _source_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        rows = db.execute(f"SELECT {COMPARED} FROM usage_snapshots ORDER BY id").fetchall()
    db.close()
    return rows


async def test_an_interrupted_copy_resumes_where_it_stopped(
    tmp_path: Path, postgres_database: str, postgres_server: PostgresServer
) -> None:
    source = tmp_path / "big.db"
    await fill(source)
    await asyncio.to_thread(add_history, source, HISTORY_ROWS)
    total = table_counts(source)["usage_snapshots"]
    url = postgres_database

    # Ctrl-C mid-table: it says how to go on, and what was committed stays.
    process = start_copy(source, url, cwd=tmp_path)
    await _wait_for_more_rows(postgres_server, url, process, 0)
    process.send_signal(signal.SIGINT)
    _, err = await _finish(process)
    assert process.returncode == 130
    assert err.splitlines()[-1] == "codexgate: interrupted; run the same command again to resume"
    first = await _copied_rows(postgres_server, url)
    assert 0 < first < total

    # SIGKILL mid-table: no goodbye at all; the batch in flight is rolled back by the server.
    process = start_copy(source, url, cwd=tmp_path)
    await _wait_for_more_rows(postgres_server, url, process, first)
    process.kill()
    await _finish(process)
    second = await _copied_rows(postgres_server, url)
    assert first < second < total

    # The server goes away mid-table: one line, and the same advice.
    process = start_copy(source, url, cwd=tmp_path)
    await _wait_for_more_rows(postgres_server, url, process, second)
    await postgres_server.stop_async(immediate=True)
    _, err = await _finish(process)
    await postgres_server.start_async()
    assert process.returncode == 1
    lost = err.splitlines()[-1]
    assert lost.startswith("codexgate: lost PostgreSQL at 127.0.0.1:")
    assert lost.endswith("run the same command again to resume")
    third = await _copied_rows(postgres_server, url)
    assert second < third < total

    # The same command again: it finds its unfinished copy and completes it.
    done = await asyncio.to_thread(run_copy, source, url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"resuming the unfinished copy of {source} into ")
    assert f"usage_snapshots: {total} rows ({third} there already)" in done.stderr
    counts = printed_counts(done.stdout)
    assert counts["usage_snapshots"] == (total, total, "ok")
    assert all(verdict == "ok" for _, target, verdict in counts.values() if target is not None)
    for result in (err, done.stdout, done.stderr):
        assert password_of(url) not in result

    # Nothing twice, nothing missing, every value as it was; the marker is gone.
    copied = await postgres_server.run_sql(
        url,
        f"SELECT {COMPARED} FROM usage_snapshots ORDER BY id",
    )
    assert [tuple(row) for row in copied] == await asyncio.to_thread(_source_rows, source)
    marker = await postgres_server.run_sql(
        url, "SELECT count(*) FROM settings WHERE name = 'copy_db_in_progress'"
    )
    assert marker[0][0] == 0

    # Finished, it is an ordinary non-empty target again.
    again = await asyncio.to_thread(run_copy, source, url, cwd=tmp_path)
    assert again.returncode == 1
    assert "already holds codexgate data" in again.stderr
