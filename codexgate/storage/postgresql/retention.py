"""PostgreSQL: pruning and downsampling, a short transaction per batch."""

from __future__ import annotations

import math
from typing import Any, Final

from codexgate.storage.columns import checked_limit, id_floor_setting
from codexgate.storage.postgresql.connection import PostgresBase, guarded
from codexgate.storage.sql import NEWER_ROW

# Each selects its rows oldest first on a time index and deletes at most $n of them.
# $1 before, $2 limit.
_PRUNE_HISTORY: Final = (
    "DELETE FROM usage_snapshots WHERE id IN (SELECT s.id FROM usage_snapshots AS s "  # noqa: S608
    f"WHERE s.captured_at < $1 AND EXISTS ({NEWER_ROW}) "
    "ORDER BY s.captured_at LIMIT $2) RETURNING id"
)

# A row goes when a newer row of its account and limit lies in the same bucket.
# $1 since, $2 before, $3 bucket seconds, $4 limit.
_DOWNSAMPLE_HISTORY: Final = (
    "DELETE FROM usage_snapshots WHERE id IN (SELECT s.id FROM usage_snapshots AS s "  # noqa: S608
    "WHERE s.captured_at >= $1 AND s.captured_at < $2 "
    f"AND EXISTS ({NEWER_ROW} "
    "AND n.captured_at < (floor(s.captured_at / $3) + 1) * $3) "
    "ORDER BY s.captured_at LIMIT $4) RETURNING id"
)

# $1 before, $2 limit.
_PRUNE_REQUESTS: Final = (
    "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE started_at < $1 "
    "ORDER BY started_at LIMIT $2) RETURNING id"
)

# A prune batch raises the floor to the highest id it deleted, so that pruning the rows that
# hold the newest ids (the whole request log, say) never hands those ids out again.
_RAISE_ID_FLOOR_TO: Final = (
    "INSERT INTO settings (name, value) VALUES ($1, $2::bigint::text) "
    "ON CONFLICT (name) DO UPDATE "
    "SET value = greatest(settings.value::bigint, excluded.value::bigint)::text"
)


class RetentionMixin(PostgresBase):
    """Deleting old rows in batches; each raises the id floor so that no id comes back."""

    @guarded
    async def prune_history_batch(self, before: float, limit: int) -> int:
        """Delete at most limit usage rows captured before `before`, oldest first.

        Never an account and limit's newest row (the one latest_usage shows), however old.
        One short transaction: writers wait for one batch at most.
        """
        return await self._delete_batch(
            "usage_snapshots", _PRUNE_HISTORY, float(before), checked_limit(limit)
        )

    @guarded
    async def prune_requests_batch(self, before: float, limit: int) -> int:
        """Delete at most limit requests that started before `before`, oldest first."""
        return await self._delete_batch(
            "requests", _PRUNE_REQUESTS, float(before), checked_limit(limit)
        )

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
        return await self._delete_batch(
            "usage_snapshots",
            _DOWNSAMPLE_HISTORY,
            float("-inf") if since is None else float(since),
            float(math.floor(before / bucket_seconds) * bucket_seconds),
            float(bucket_seconds),
            checked_limit(limit),
        )

    @guarded
    async def oldest_history_at(self, *, since: float | None = None) -> float | None:
        """The oldest captured_at of the usage rows (at or after since), None without any."""
        rows = await self._fetch(
            "SELECT min(captured_at) FROM usage_snapshots WHERE captured_at >= $1",
            float("-inf") if since is None else float(since),
        )
        oldest = rows[0][0]
        return None if oldest is None else float(oldest)

    async def _delete_batch(self, table: str, sql: str, *args: Any) -> int:
        """Run one DELETE ... RETURNING id in its own transaction; raise the id floor to match."""
        async with self._writing() as conn:
            rows = await conn.fetch(sql, *args)
            if rows:
                await conn.execute(
                    _RAISE_ID_FLOOR_TO, id_floor_setting(table), max(int(row[0]) for row in rows)
                )
        return len(rows)
