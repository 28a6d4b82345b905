"""What an instance shows of itself: file modes on disk, and healthz to anyone who asks."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from codexgate.cli import main as cli
from codexgate.config import Config
from codexgate.storage.sqlite.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_database_and_its_folder_are_private(tmp_path: Path) -> None:
    db = tmp_path / "new" / "data" / "codexgate.db"
    old = os.umask(0o022)
    try:
        store = await Store.open(db)
        await store.close()
    finally:
        os.umask(old)
    assert mode(db) == 0o600
    assert mode(db.parent) == 0o700


async def test_opening_tightens_a_loose_database_and_its_wal_and_shm(tmp_path: Path) -> None:
    db = tmp_path / "codexgate.db"
    store = await Store.open(db)
    await store.close()
    # Another process keeps the file open in WAL mode, so the -wal and -shm files stay.
    holder = sqlite3.connect(db)
    try:
        holder.execute("PRAGMA journal_mode = WAL")
        holder.execute("INSERT INTO settings (name, value) VALUES ('x', 'y')")
        holder.commit()
        files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
        for path in files:
            path.chmod(0o644)
        store = await Store.open(db)
        await store.close()
        assert [mode(path) for path in files] == [0o600, 0o600, 0o600]
    finally:
        holder.close()


async def test_tightening_adds_no_permission(tmp_path: Path) -> None:
    db = tmp_path / "codexgate.db"
    store = await Store.open(db)
    await store.close()
    db.chmod(0o640)
    store = await Store.open(db)
    await store.close()
    assert mode(db) == 0o600
    db.chmod(0o600)
    store = await Store.open(db)
    await store.close()
    assert mode(db) == 0o600


def test_migrate_tightens_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "old.db"
    sqlite3.connect(db).close()
    db.chmod(0o644)
    assert cli.main(["migrate", "--db", str(db)]) == 0
    capsys.readouterr()
    assert mode(db) == 0o600


async def test_healthz_names_no_upstream_host(
    gateway: TestServer, http: ClientSession, config: Config
) -> None:
    async with http.get(f"http://127.0.0.1:{gateway.port}/codexgate/healthz") as response:
        assert response.status == 200
        body = await response.read()
    assert config.upstream.host_port_subcomponent
    assert config.upstream.host_port_subcomponent.encode() not in body
    health = orjson.loads(body)
    assert "upstream" not in health
    assert health["status"] == "ok"
