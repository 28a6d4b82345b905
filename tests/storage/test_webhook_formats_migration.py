"""Migration 0006: the webhooks table takes the chat formats and keeps its rows."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from codexgate import paths
from codexgate.storage.sqlite.store import Store


async def test_version_5_webhooks_keep_their_rows_and_take_the_chat_formats(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v5.db"
    first_five = tmp_path / "migrations"
    first_five.mkdir()
    for migration in sorted(paths.migrations_dir().glob("*.sql"))[:5]:
        shutil.copy(migration, first_five)
    old = await Store.open(path, migrations=first_five)
    try:
        assert await old.schema_version() == 5
        row, _ = await old.add_webhook("https://hooks.slack.com/x", "slack", "team", 1.0)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint"):
            await old.add_webhook("https://ntfy.sh/topic", "ntfy", None, 2.0)
    finally:
        await old.close()
    store = await Store.open(path)
    try:
        assert await store.schema_version() >= 6
        assert [(r.id, r.url, r.format, r.name) for r in await store.webhooks()] == [
            (row.id, "https://hooks.slack.com/x", "slack", "team")
        ]
        for format_ in ("telegram", "feishu", "dingtalk", "wecom", "ntfy"):
            added, created = await store.add_webhook(
                f"https://x.example/{format_}", format_, None, 2.0
            )
            assert created
            assert added.format == format_
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint"):
            await store.add_webhook("smtp://mail.example.com", "email", None, 3.0)
    finally:
        await store.close()
