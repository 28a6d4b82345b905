"""The SQLite-only SQL the per-table modules share: bound-variable chunks, id floors, events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from codexgate.storage.columns import ID_FLOOR_TABLES

# SQLite allows 32766 bound variables per statement; stay far below with room for every column.
CHUNK: Final = 500

# The most rows one INSERT of a batch writes (insert_rows): a power of two. Each run of an INSERT
# opens anew the small b-tree that SQLite makes of a CHECK (x IN (...)) list (zeroing its pages):
# once per row with executemany, once per 64 rows here; fewer steps, fewer GIL hand-overs too.
# Powers of two keep the statements few enough to stay in sqlite3's statement cache.
MAX_INSERT_ROWS: Final = 64


def multi_row_inserts(table: str, columns: Sequence[str]) -> tuple[str, ...]:
    """INSERT statements for 1, 2, 4, ... MAX_INSERT_ROWS rows of columns: the nth takes 2**n."""
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 - constants
    row = "(" + ", ".join("?" for _ in columns) + ")"
    return tuple(
        head + ", ".join([row] * (1 << level)) for level in range(MAX_INSERT_ROWS.bit_length())
    )


INSERT_EVENT: Final = "INSERT INTO account_events (account_id, kind, at) VALUES (?, ?, ?)"

NEXT_ID: Final = {
    table: (
        f"SELECT max(coalesce((SELECT max(id) FROM {table}), 0), "  # noqa: S608 - constants
        "coalesce((SELECT CAST(value AS INTEGER) FROM settings WHERE name = ?), 0)) + 1"
    )
    for table in ID_FLOOR_TABLES
}

RAISE_ID_FLOOR: Final = {
    table: (
        "INSERT INTO settings (name, value) "  # noqa: S608 - constants
        f"SELECT ?, CAST(coalesce(max(id), 0) AS TEXT) FROM {table} WHERE true "
        "ON CONFLICT (name) DO UPDATE SET value = CAST(max(CAST(settings.value AS INTEGER), "
        "CAST(excluded.value AS INTEGER)) AS TEXT)"
    )
    for table in ID_FLOOR_TABLES
}


# Retention. A prune batch raises the floor to the highest id it deleted, so that pruning the
# rows that hold the newest ids (the whole request log, say) never hands those ids out again.
RAISE_ID_FLOOR_TO: Final = (
    "INSERT INTO settings (name, value) VALUES (?, CAST(? AS TEXT)) "
    "ON CONFLICT (name) DO UPDATE SET value = CAST(max(CAST(settings.value AS INTEGER), "
    "CAST(excluded.value AS INTEGER)) AS TEXT)"
)
