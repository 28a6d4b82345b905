"""Reading back what the store wrote: rows through a plain sqlite3 connection, events by kind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from codexgate.core.rows import AccountEvent


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the database through a separate plain sqlite3 connection."""
    with sqlite3.connect(path) as db:
        rows = db.execute(sql).fetchall()
    db.close()
    return rows


def kinds(events: list[AccountEvent]) -> list[tuple[int, str]]:
    """(account_id, kind) of each event, in order."""
    return [(event.account_id, event.kind) for event in events]
