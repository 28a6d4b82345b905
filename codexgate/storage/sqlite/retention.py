"""SQLite: pruning and downsampling, a short transaction per batch."""

from __future__ import annotations

import math
from typing import Any, Final

from codexgate.storage.columns import (
    checked_limit,
    id_floor_setting,
)
from codexgate.storage.sql import NEWER_ROW
from codexgate.storage.sqlite.columns import (
    RAISE_ID_FLOOR_TO,
)
from codexgate.storage.sqlite.connection import SQLiteBase, guarded

# Each selects its rows oldest first on a time index and deletes at most :limit of them.
_PRUNE_HISTORY: Final = (
    "DELETE FROM usage_snapshots WHERE id IN (SELECT s.id FROM usage_snapshots AS s "  # noqa: S608
    f"WHERE s.captured_at < :before AND EXISTS ({NEWER_ROW}) "
    "ORDER BY s.captured_at LIMIT :limit) RETURNING id"
)

# A row goes when a newer row of its account and limit lies in the same bucket.
_DOWNSAMPLE_HISTORY: Final = (
    "DELETE FROM usage_snapshots WHERE id IN (SELECT s.id FROM usage_snapshots AS s "  # noqa: S608
    "WHERE s.captured_at >= :since AND s.captured_at < :before "
    f"AND EXISTS ({NEWER_ROW} "
    "AND n.captured_at < (CAST(s.captured_at / :bucket AS INTEGER) + 1) * :bucket) "
    "ORDER BY s.captured_at LIMIT :limit) RETURNING id"
)

_PRUNE_REQUESTS: Final = (
    "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE started_at < :before "
    "ORDER BY started_at LIMIT :limit) RETURNING id"
)


class RetentionMixin(SQLiteBase):
    """Deleting old rows in batches; each raises the id floor so that no id comes back."""

    @guarded
    async def prune_history_batch(self, before: float, limit: int) -> int:
        """Delete at most limit usage rows captured before `before`, oldest first.

        Never an account and limit's newest row (the one latest_usage shows), however old.
        One short transaction: writers wait for one batch at most.
        """
        params = {"before": before, "limit": checked_limit(limit)}
        return await self._delete_batch("usage_snapshots", _PRUNE_HISTORY, params)

    @guarded
    async def prune_requests_batch(self, before: float, limit: int) -> int:
        """Delete at most limit requests that started before `before`, oldest first."""
        params = {"before": before, "limit": checked_limit(limit)}
        return await self._delete_batch("requests", _PRUNE_REQUESTS, params)

    @guarded
    async def downsample_history_batch(
        self, before: float, bucket_seconds: float, limit: int, *, since: float | None = None
    ) -> int:
        """Thin usage rows to the newest per account, limit and bucket; at most limit deleted.

        Buckets are bucket_seconds long from the epoch; only whole buckets that end by `before`
        are thinned, and only rows captured at or after since (when given). The newest row of
        a bucket stays, so an account and limit's newest row (latest_usage) always does.
        Every call scans the range from since again: keep it short (the retention task walks
        an hour at a time). Raises ValueError when bucket_seconds <= 0.
        """
        if not bucket_seconds > 0:
            raise ValueError(f"bucket_seconds must be > 0, not {bucket_seconds}")
        params = {
            "since": float("-inf") if since is None else since,
            "before": math.floor(before / bucket_seconds) * bucket_seconds,
            "bucket": bucket_seconds,
            "limit": checked_limit(limit),
        }
        return await self._delete_batch("usage_snapshots", _DOWNSAMPLE_HISTORY, params)

    @guarded
    async def oldest_history_at(self, *, since: float | None = None) -> float | None:
        """The oldest captured_at of the usage rows (at or after since), None without any."""
        rows = await self._fetch(
            "SELECT min(captured_at) FROM usage_snapshots WHERE captured_at >= ?",
            (float("-inf") if since is None else since,),
        )
        oldest = rows[0][0]
        return None if oldest is None else float(oldest)

    async def _delete_batch(self, table: str, sql: str, params: dict[str, Any]) -> int:
        """Run one DELETE ... RETURNING id in its own transaction; raise the id floor to match."""
        async with self._lock, self._transaction():
            rows = list(await self._db.execute_fetchall(sql, params))
            if rows:
                await self._db.execute(
                    RAISE_ID_FLOOR_TO, (id_floor_setting(table), max(int(row[0]) for row in rows))
                )
        return len(rows)
