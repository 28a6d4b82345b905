"""PostgreSQL: the live feed's replay, rows after an id in id (commit) order, and its cursor.

Every writer holds the one advisory write lock while it hands out ids (connection.py), so id
order is commit order and `id > cursor` never skips a row that committed late.
"""

from __future__ import annotations

from codexgate.core.rows import AccountEvent, AlertRow, FeedCursor, RequestRow, UsageRow
from codexgate.storage.columns import (
    ALERT_COLUMNS,
    REQUEST_SELECT,
    USAGE_SELECT,
    checked_limit,
    usage_row,
)
from codexgate.storage.postgresql.connection import PostgresBase, guarded


class FeedMixin(PostgresBase):
    """Rows after a position, by id, for the live feed."""

    @guarded
    async def usage_after(self, after_id: int, limit: int = 500) -> list[UsageRow]:
        """usage_snapshots rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            f"SELECT {USAGE_SELECT} FROM usage_snapshots WHERE id > $1 ORDER BY id LIMIT $2",  # noqa: S608
            after_id,
            checked_limit(limit),
        )
        return [usage_row(tuple(row)) for row in rows]

    @guarded
    async def requests_after(self, after_id: int, limit: int = 500) -> list[RequestRow]:
        """requests rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            f"SELECT {REQUEST_SELECT} FROM requests WHERE id > $1 ORDER BY id LIMIT $2",  # noqa: S608
            after_id,
            checked_limit(limit),
        )
        return [RequestRow(*row) for row in rows]

    @guarded
    async def account_events_after(self, after_id: int, limit: int = 500) -> list[AccountEvent]:
        """account_events rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            "SELECT id, account_id, kind, at FROM account_events WHERE id > $1 "
            "ORDER BY id LIMIT $2",
            after_id,
            checked_limit(limit),
        )
        return [AccountEvent(*row) for row in rows]

    @guarded
    async def alerts_after(self, after_id: int, limit: int = 500) -> list[AlertRow]:
        """alerts rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id > $1 ORDER BY id LIMIT $2",  # noqa: S608
            after_id,
            checked_limit(limit),
        )
        return [AlertRow(*row) for row in rows]

    @guarded
    async def feed_cursor(self) -> FeedCursor:
        """The newest id of usage_snapshots, requests, account_events and alerts (0 when empty)."""
        rows = await self._fetch(
            "SELECT (SELECT coalesce(max(id), 0) FROM usage_snapshots), "
            "(SELECT coalesce(max(id), 0) FROM requests), "
            "(SELECT coalesce(max(id), 0) FROM account_events), "
            "(SELECT coalesce(max(id), 0) FROM alerts)"
        )
        usage, request, account, alert = rows[0]
        return FeedCursor(int(usage), int(request), int(account), int(alert))
