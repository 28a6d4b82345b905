"""SQLite: the live feed's replay, rows after an id in id (commit) order, and its cursor."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from codexgate.core.rows import AccountEvent, AlertRow, FeedCursor, RequestRow, UsageRow
from codexgate.storage.columns import (
    ALERT_COLUMNS,
    REQUEST_SELECT,
    USAGE_SELECT,
    checked_limit,
    usage_row,
)
from codexgate.storage.sqlite.connection import SQLiteBase, guarded


class FeedMixin(SQLiteBase):
    """Rows after a position, by id, for the live feed."""

    @guarded
    async def usage_after(self, after_id: int, limit: int = 500) -> list[UsageRow]:
        """usage_snapshots rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            f"SELECT {USAGE_SELECT} FROM usage_snapshots WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (after_id, checked_limit(limit)),
        )
        return [usage_row(row) for row in rows]

    @guarded
    async def requests_after(self, after_id: int, limit: int = 500) -> list[RequestRow]:
        """requests rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            f"SELECT {REQUEST_SELECT} FROM requests WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (after_id, checked_limit(limit)),
        )
        return [RequestRow(*row) for row in rows]

    @guarded
    async def account_events_after(self, after_id: int, limit: int = 500) -> list[AccountEvent]:
        """account_events rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            "SELECT id, account_id, kind, at FROM account_events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, checked_limit(limit)),
        )
        return [AccountEvent(*row) for row in rows]

    @guarded
    async def alerts_after(self, after_id: int, limit: int = 500) -> list[AlertRow]:
        """alerts rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (after_id, checked_limit(limit)),
        )
        return [AlertRow(*row) for row in rows]

    @guarded
    async def feed_cursor(self) -> FeedCursor:
        """The newest id of usage_snapshots, requests, account_events and alerts (0 when empty)."""
        rows = await self._fetch(
            "SELECT (SELECT coalesce(max(id), 0) FROM usage_snapshots), "
            "(SELECT coalesce(max(id), 0) FROM requests), "
            "(SELECT coalesce(max(id), 0) FROM account_events), "
            "(SELECT coalesce(max(id), 0) FROM alerts)",
            (),
        )
        usage, request, account, alert = next(iter(rows))
        return FeedCursor(int(usage), int(request), int(account), int(alert))

    @guarded
    async def watch_commits(self, on_commit: Callable[[Sequence[int]], None]) -> None:
        """Nothing to watch: this process is the file's only writer."""
        return
