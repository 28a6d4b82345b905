"""`codexgate backup` and `codexgate restore` as real processes, against a gateway process that
records traffic from the fake upstream process while the copy is taken."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codexgate import paths
from codexgate.storage.migrations import read_migrations
from tests.helpers.processes import GatewayProcess, UpstreamProcess, free_port, health
from tests.helpers.soak import DELTAS, EVENT_DELAY, Tally, load
from tests.helpers.waiting import eventually

HISTORY_ROWS = 200_000  # enough pages that a killed backup is caught mid-way
NEWEST = read_migrations(paths.migrations_dir())[-1].number


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m codexgate ARGS` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "codexgate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def codexgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The same without blocking the loop."""
    return await asyncio.to_thread(run, *args, cwd=cwd)


def request_ids(path: Path, up_to: int | None = None) -> list[int]:
    """The request log's ids (those <= up_to), read through SQLite."""
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        limit = up_to if up_to is not None else 2**62
        rows = db.execute("SELECT id FROM requests WHERE id <= ? ORDER BY id", (limit,))
        return [int(row[0]) for row in rows]


def integrity(path: Path) -> tuple[str, str]:
    """(integrity_check, journal_mode) of a file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        checked = db.execute("PRAGMA integrity_check").fetchone()[0]
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        return str(checked), str(mode)


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[UpstreamProcess]:
    started = UpstreamProcess(free_port(), EVENT_DELAY, DELTAS, tmp_path / "upstream.log")
    try:
        await started.wait_ready()
        yield started
    finally:
        await started.kill()


async def serve(db: Path, upstream: UpstreamProcess, workdir: Path) -> GatewayProcess:
    await asyncio.to_thread(workdir.mkdir)
    gateway = GatewayProcess(["serve", "--db", str(db), "--upstream", upstream.base], workdir)
    try:
        await gateway.wait_ready()
    except BaseException:
        gateway.kill()
        raise
    return gateway


async def test_backup_under_load_then_restore(upstream: UpstreamProcess, tmp_path: Path) -> None:
    db = tmp_path / "live" / "codexgate.db"
    dest = tmp_path / "backups" / "copy.db"
    dest.parent.mkdir()
    gateway = await serve(db, upstream, tmp_path / "gateway-1")
    try:
        tally = Tally()
        traffic = asyncio.create_task(load(gateway, 4.0, tally))
        # The newest id committed before the backup starts.
        committed = (await eventually(lambda: request_ids(db), timeout=20.0))[-1]
        done = await codexgate("backup", "--db", str(db), str(dest), cwd=tmp_path)
        await traffic
        assert done.returncode == 0, done.stderr
        assert tally.errors == []

        # One line; the copy is whole, one file of its own, private.
        assert done.stdout.startswith(f"{dest}: {dest.stat().st_size} bytes, schema version ")
        assert done.stdout.count("\n") == 1
        assert integrity(dest) == ("ok", "delete")
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
        assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.db"]
        # Every row committed before it started, and nothing but whole rows after.
        backed_up = request_ids(dest)
        assert request_ids(dest, committed) == request_ids(db, committed)
        assert committed in backed_up
        assert backed_up == request_ids(db, backed_up[-1])

        # An existing DEST is kept unless --force.
        before = dest.read_bytes()
        again = await codexgate("backup", "--db", str(db), str(dest), cwd=tmp_path)
        assert again.returncode == 1
        assert again.stderr == (
            f"codexgate: {dest} exists; give another name, or --force to replace it\n"
        )
        assert dest.read_bytes() == before

        # Not while the gateway serves on the file: its heartbeat names it.
        refused = await codexgate("restore", "--db", str(db), str(dest), cwd=tmp_path)
        assert refused.returncode == 1
        assert f"pid {gateway.process.pid}" in refused.stderr
        assert "stop it first, or --force" in refused.stderr
        assert not db.with_name(db.name + ".before-restore").exists()
    finally:
        if gateway.process.poll() is None:
            await gateway.terminate()
        gateway.kill()

    restored = await codexgate("restore", "--db", str(db), str(dest), cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    kept = db.with_name(db.name + ".before-restore")
    assert restored.stdout == (
        f"restored {dest} into {db} (schema version {NEWEST}); the replaced file is {kept}\n"
    )
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert sorted(p.name for p in db.parent.iterdir()) == ["codexgate.db", kept.name]
    assert request_ids(db) == backed_up
    assert len(request_ids(kept)) >= len(backed_up)

    gateway = await serve(db, upstream, tmp_path / "gateway-2")
    try:
        assert (await health(gateway))["status"] == "ok"
    finally:
        await gateway.terminate()
        gateway.kill()


def test_killed_backup_leaves_no_file(tmp_path: Path) -> None:
    db = tmp_path / "codexgate.db"
    made = run("migrate", "--db", str(db), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    with contextlib.closing(sqlite3.connect(db)) as writer, writer:
        writer.execute(
            "INSERT INTO accounts (id, account_key, first_seen_at, last_seen_at) "
            "VALUES (1, 'seat:w:u', 0, 0)"
        )
        writer.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO usage_snapshots (account_id, captured_at, confirmed_at, source, "
            "limit_id, limit_name) SELECT 1, i, i, 'headers', 'codex', hex(randomblob(64)) FROM n",
            (HISTORY_ROWS,),
        )
    dest = tmp_path / "copy.db"
    backup = subprocess.Popen(
        [sys.executable, "-m", "codexgate", "backup", "--db", str(db), str(dest)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    partial = dest.with_name(f".{dest.name}.partial-{backup.pid}")
    try:
        while not (partial.exists() and partial.stat().st_size > 0):
            assert backup.poll() is None, "the backup ended before it could be interrupted"
            time.sleep(0.001)
        backup.send_signal(signal.SIGKILL)
    finally:
        backup.kill()
        backup.communicate()
    assert backup.returncode == -signal.SIGKILL
    assert not dest.exists()

    # The next backup of the same file is whole.
    done = run("backup", "--db", str(db), str(dest), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{HISTORY_ROWS} usage history rows" in done.stdout
    assert integrity(dest) == ("ok", "delete")
    # ... and removes what the killed one left, whose process is gone.
    assert not partial.exists()


async def test_restore_refuses_a_newer_or_broken_file(tmp_path: Path) -> None:
    db = tmp_path / "codexgate.db"
    assert (await codexgate("migrate", "--db", str(db), cwd=tmp_path)).returncode == 0
    newer = tmp_path / "newer.db"
    assert (await codexgate("backup", "--db", str(db), str(newer), cwd=tmp_path)).returncode == 0
    with contextlib.closing(sqlite3.connect(newer)) as writer:
        writer.execute("PRAGMA user_version = 999")
    refused = await codexgate("restore", "--db", str(db), str(newer), cwd=tmp_path)
    assert refused.returncode == 1
    assert "schema version 999, newer than this codexgate" in refused.stderr

    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database" * 100)
    refused = await codexgate("restore", "--db", str(db), str(broken), cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.startswith("codexgate: cannot read ")
    assert not db.with_name(db.name + ".before-restore").exists()

    url = await codexgate("backup", "--db", "postgresql://u@h/d", str(newer), cwd=tmp_path)
    assert url.returncode == 1
    assert url.stderr == (
        "codexgate: backup works on a SQLite file; for PostgreSQL use pg_dump "
        "(docs/operations.md#backups)\n"
    )


def test_forced_restore_over_an_open_file_keeps_what_its_holder_wrote(tmp_path: Path) -> None:
    """A process holding the file with rows only in its -wal: restore refuses, then with --force
    puts the backup in place and moves the -wal and -shm aside with the old file, so the rows the
    holder committed stay readable in <db>.before-restore and none of them leak into the restore."""
    db = tmp_path / "codexgate.db"
    assert run("migrate", "--db", str(db), cwd=tmp_path).returncode == 0
    saved = tmp_path / "saved.db"
    assert run("backup", "--db", str(db), str(saved), cwd=tmp_path).returncode == 0
    holder_code = (
        "import sqlite3, sys\n"
        f"db = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "db.execute('PRAGMA journal_mode = WAL')\n"
        "db.execute('PRAGMA wal_autocheckpoint = 0')\n"
        'db.execute("INSERT INTO accounts (id, account_key, first_seen_at, last_seen_at) '
        "VALUES (7, 'seat:held:u', 0, 0)\")\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        wal = db.with_name(db.name + "-wal")
        assert wal.stat().st_size > 0, "the holder's row must still be in the -wal only"

        refused = run("restore", "--db", str(db), str(saved), cwd=tmp_path)
        assert refused.returncode == 1
        assert f"is open in process {holder.pid} on this machine" in refused.stderr

        forced = run("restore", "--force", "--db", str(db), str(saved), cwd=tmp_path)
        assert forced.returncode == 0, forced.stderr
        kept = db.with_name(db.name + ".before-restore")
        assert kept.with_name(kept.name + "-wal").exists()
        assert not wal.exists()
    finally:
        holder.communicate("", timeout=30)
    with contextlib.closing(sqlite3.connect(db)) as restored:
        assert restored.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0
    with contextlib.closing(sqlite3.connect(kept)) as old:
        assert old.execute("SELECT account_key FROM accounts").fetchall() == [("seat:held:u",)]
    assert integrity(db)[0] == "ok"
