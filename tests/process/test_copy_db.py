"""`codexgate copy-db` as a real process: a SQLite database built by the real store, copied
into a real PostgreSQL database, then read back through the PostgreSQL store."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from codexgate import paths
from codexgate.core.models import Identity
from codexgate.storage import open_storage
from codexgate.storage.location import PostgresURL
from codexgate.storage.migrations import read_migrations
from tests.helpers.copy_db import (
    SECRET_WEBHOOK,
    clean_environment,
    copy_command,
    fill,
    password_of,
    printed_counts,
    run_copy,
    snapshot,
    table_counts,
)
from tests.helpers.postgres import PostgresServer
from tests.helpers.processes import free_port, terminal_output

COPIED = (
    "accounts",
    "usage_snapshots",
    "requests",
    "account_events",
    "alerts",
    "alert_state",
    "webhooks",
    "settings",
)

NEWEST = read_migrations(paths.migrations_dir())[-1].number  # the SQLite schema's


@pytest.fixture
async def source(tmp_path: Path) -> Path:
    """A SQLite database with every kind of row, written through the real store."""
    path = tmp_path / "codexgate.db"
    await fill(path)
    return path


async def test_copy_gives_the_same_answers_and_counts(
    source: Path, postgres_database: str, tmp_path: Path
) -> None:
    before = await asyncio.to_thread(source.read_bytes)
    done = run_copy(source, postgres_database, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    password = password_of(postgres_database)
    assert password not in done.stdout + done.stderr

    # Every table's count, source against target, and sessions said not to be copied.
    counts = printed_counts(done.stdout)
    expected = table_counts(source)
    assert set(counts) == {*COPIED, "sessions"}
    for table in COPIED:
        assert counts[table] == (expected[table], expected[table], "ok")
    assert counts["sessions"][:2] == (1, None)
    assert "sign in again" in done.stdout
    # Said before the copy starts too.
    assert done.stderr.splitlines()[0] == (
        f"copying {source} into {PostgresURL(postgres_database).where}; "
        "sessions are not copied: signed-in browsers sign in again"
    )
    # Not a terminal: one line per table, no bar.
    assert "\r" not in done.stderr
    assert [line.split(":")[0] for line in done.stderr.splitlines()[1:]] == list(COPIED)

    # The source is never written.
    assert await asyncio.to_thread(source.read_bytes) == before

    # Through the stores, the copy answers as the source does (floats exactly).
    url = PostgresURL(postgres_database)
    copied = await snapshot(url)
    assert copied == await snapshot(source)
    assert copied["webhooks"][0][1] == SECRET_WEBHOOK
    assert copied["settings"]["usage_snapshots_id_floor"] is not None

    # New rows take ids above the copied ones: the sequences and id floors moved.
    store = await open_storage(url)
    try:
        highest = max(row[0] for row in copied["accounts"])
        account, created = await store.create_account(
            Identity(account_key="seat:acct-new:user-new", token_fingerprint="e" * 64),
            "new",
            time.time(),
        )
        assert created
        assert account.id > highest
        webhook, _ = await store.add_webhook("https://example.com/hook", "json", None, 1.0)
        assert webhook.id > max(row[0] for row in copied["webhooks"])
        cursor = await store.feed_cursor()
        assert cursor.account > copied["feed_cursor"].account
    finally:
        await store.close()


async def test_a_second_copy_is_refused_unless_into_non_empty(
    source: Path, postgres_database: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    assert run_copy(source, postgres_database, cwd=tmp_path).returncode == 0
    before = await postgres_server.run_sql(postgres_database, "SELECT count(*) FROM settings")

    again = run_copy(source, postgres_database, cwd=tmp_path)
    assert again.returncode == 1
    error = again.stderr.splitlines()[-1]
    assert error.startswith("codexgate: ")
    assert "already holds codexgate data" in error
    assert "--into-non-empty" in error
    assert password_of(postgres_database) not in again.stdout + again.stderr
    after = await postgres_server.run_sql(postgres_database, "SELECT count(*) FROM settings")
    assert after == before

    # Told to, it copies what is missing: nothing here, every row skipped, the counts equal.
    merged = run_copy(source, postgres_database, "--into-non-empty", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    counts = printed_counts(merged.stdout)
    expected = table_counts(source)
    for table in COPIED:
        assert counts[table] == (expected[table], expected[table], "ok")
    assert "skipped" in merged.stdout
    assert await snapshot(PostgresURL(postgres_database)) == await snapshot(source)


async def test_into_non_empty_adds_the_missing_rows_and_keeps_the_targets(
    source: Path, postgres_database: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A target a gateway started on (its admin token hash) and a part of an earlier copy."""
    url = PostgresURL(postgres_database)
    store = await open_storage(url)
    try:
        await store.set_setting("admin_token_sha256", "1" * 64)
        await store.set_setting("usage_snapshots_id_floor", "1000")
    finally:
        await store.close()
    refused = run_copy(source, postgres_database, cwd=tmp_path)
    assert refused.returncode == 1
    assert "in settings" in refused.stderr

    done = run_copy(source, postgres_database, "--into-non-empty", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    counts = printed_counts(done.stdout)
    expected = table_counts(source)
    assert counts["usage_snapshots"] == (
        expected["usage_snapshots"],
        expected["usage_snapshots"],
        "ok",
    )
    # The target's own settings count too; its own admin token stays, the higher floor too.
    assert counts["settings"] == (expected["settings"], expected["settings"], "ok")
    rows = await postgres_server.run_sql(
        postgres_database,
        "SELECT name, value FROM settings WHERE name IN "
        "('admin_token_sha256', 'usage_snapshots_id_floor', 'alert_rules')",
    )
    assert dict((row["name"], row["value"]) for row in rows) == {
        "admin_token_sha256": "1" * 64,
        "usage_snapshots_id_floor": "1000",
        "alert_rules": '{"thresholds": [30, 90]}',
    }
    assert "skipped" in done.stdout.splitlines()[0]


async def test_merging_refuses_an_account_id_that_is_another_seat(
    source: Path, postgres_database: str, tmp_path: Path
) -> None:
    store = await open_storage(PostgresURL(postgres_database))
    try:
        other = Identity(account_key="seat:acct-x:user-x", token_fingerprint="c" * 64)
        await store.create_account(other, "someone else", 1.0)
    finally:
        await store.close()
    done = run_copy(source, postgres_database, "--into-non-empty", cwd=tmp_path)
    assert done.returncode == 1
    error = done.stderr.splitlines()[-1]
    assert "account 1 of the source is another account" in error
    assert "copy into an empty database" in error


async def test_source_and_usage_errors_are_one_line(postgres_database: str, tmp_path: Path) -> None:
    password = password_of(postgres_database)
    missing = run_copy(tmp_path / "nothing.db", postgres_database, cwd=tmp_path)
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == f"codexgate: no database file at {tmp_path / 'nothing.db'}; check --from"
    )

    old = tmp_path / "old.db"
    with sqlite3.connect(old) as db:
        db.execute("PRAGMA user_version = 3")
    db.close()
    old_bytes = old.read_bytes()
    outdated = run_copy(old, postgres_database, cwd=tmp_path)
    assert outdated.returncode == 1
    assert outdated.stderr.splitlines()[-1] == (
        f"codexgate: {old} is at schema version 3, not the newest ({NEWEST}): "
        f"run `codexgate migrate --db {old}` first"
    )
    assert old.read_bytes() == old_bytes  # not migrated: never written

    into_a_file = run_copy(old, str(tmp_path / "other.db"), cwd=tmp_path)
    assert into_a_file.returncode == 2
    assert "--to must be a postgresql:// URL" in into_a_file.stderr
    from_a_url = run_copy(postgres_database, postgres_database, cwd=tmp_path)
    assert from_a_url.returncode == 2
    assert "--from must be a SQLite database file" in from_a_url.stderr
    for result in (missing, outdated, into_a_file, from_a_url):
        assert len(result.stderr.strip().splitlines()) <= 2
        assert password not in result.stdout + result.stderr


async def test_an_unreachable_server_is_one_line_after_the_connect_timeout(
    source: Path, tmp_path: Path
) -> None:
    url = f"postgresql://someone:hunter2secret@127.0.0.1:{free_port()}/codexgate"
    started = time.monotonic()
    done = run_copy(source, url, "--db-connect-timeout", "1", cwd=tmp_path)
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    error = done.stderr.splitlines()[-1]
    assert error.startswith("codexgate: cannot connect to PostgreSQL at 127.0.0.1:")
    assert "(tried for 1 s)" in error
    assert "hunter2secret" not in done.stdout + done.stderr


def test_a_terminal_gets_a_progress_bar(source: Path, postgres_database: str) -> None:
    """stderr on a pseudo-terminal: each table's line redrawn with \\r, then a newline."""
    drawn = terminal_output(
        copy_command(source, postgres_database), stream="stderr", env=clean_environment()
    )
    assert "\r" in drawn
    assert "rows/s" in drawn
    assert "[" + "#" * 24 + "]" in drawn  # a finished table's full bar
    assert password_of(postgres_database) not in drawn


def test_help_lists_the_options(tmp_path: Path) -> None:
    done = subprocess.run(
        [*copy_command(tmp_path, "x")[:4], "--help"],
        capture_output=True,
        text=True,
        env=clean_environment(),
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    for option in ("--from PATH", "--to URL", "--into-non-empty", "--db-connect-timeout"):
        assert option in done.stdout
    # The --db settings are not its own: its databases are --from and --to.
    assert "[--db " not in done.stdout
    assert "--db-pool-size" not in done.stdout


@pytest.mark.parametrize(
    ("change", "error"),
    [
        # The driver would cut the fraction off without a word.
        (
            "UPDATE requests SET status = 200.5 WHERE id = 2",
            "cannot copy requests.status (id 2): 200.5 is not a whole number",
        ),
        # The driver refuses it; the batch is looked at value by value to name it.
        (
            "UPDATE usage_snapshots SET captured_at = 'soon' WHERE id = 2",
            "cannot copy usage_snapshots.captured_at (id 2): 'soon' is not a number",
        ),
        (
            "UPDATE usage_snapshots SET credits_unlimited = 2 WHERE id = 3",
            "cannot copy usage_snapshots.credits_unlimited (id 3): 2 is not 0 or 1",
        ),
    ],
)
def test_a_value_the_target_cannot_take_is_named(
    source: Path, postgres_database: str, tmp_path: Path, change: str, error: str
) -> None:
    """SQLite keeps a value of any type in any column; PostgreSQL does not."""
    with sqlite3.connect(source) as db:
        db.execute(change)
    db.close()
    done = run_copy(source, postgres_database, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"codexgate: {error}"


async def test_counts_that_differ_fail(
    source: Path, postgres_database: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A copy cut short, then rows deleted from the file before the copy resumes: the target
    keeps them, and the end says so."""
    assert run_copy(source, postgres_database, cwd=tmp_path).returncode == 0
    # As an interrupted copy leaves it: the marker naming this file.
    status = await asyncio.to_thread(source.stat)
    marker = {"source": str(source), "device": status.st_dev, "inode": status.st_ino}
    await postgres_server.run_sql(
        postgres_database,
        "INSERT INTO settings (name, value) VALUES ('copy_db_in_progress', $1)",
        orjson.dumps({**marker, "into_non_empty": False}).decode(),
    )
    with sqlite3.connect(source) as db:
        db.execute("DELETE FROM requests WHERE id = 1")
    db.close()

    done = run_copy(source, postgres_database, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("resuming the unfinished copy of")
    counts = printed_counts(done.stdout)
    source_requests = table_counts(source)["requests"]
    assert counts["requests"] == (source_requests, source_requests + 1, "MISMATCH")
    assert counts["usage_snapshots"][2] == "ok"
    assert "the counts differ" in done.stdout
