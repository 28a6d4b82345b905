"""PostgreSQL: the requests table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from codexgate.core.models import RequestRecord
from codexgate.core.recording import request_rows
from codexgate.core.rows import ActivityBucket, RequestRow
from codexgate.storage.batch import RecordBatch
from codexgate.storage.columns import (
    REQUEST_COLUMNS,
    REQUEST_SELECT,
    checked_limit,
)
from codexgate.storage.postgresql.connection import Connection, PostgresBase, guarded


class RequestsMixin(PostgresBase):
    """The request log: pages, counts and activity buckets."""

    async def _insert_requests(
        self, conn: Connection, requests: Sequence[RequestRecord], batch: RecordBatch
    ) -> None:
        """Insert a batch's requests with their accounts, in the order given (write lock held)."""
        first_id = await self._next_id(conn, "requests")
        rows = request_rows(requests, first_id, batch.account_ids)
        # COPY: the fastest way in, one round trip for the whole batch.
        await conn.copy_records_to_table("requests", records=rows, columns=REQUEST_COLUMNS)

    @guarded
    async def requests(
        self,
        *,
        account_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[RequestRow]:
        """Requests with since <= started_at < until, newest first, at most limit.

        Newest first is (started_at, id) descending. before_id is the last id of the previous
        page: only rows strictly older than that row in this order are returned, none if no
        row has that id (pruned, or deleted with its account).
        """
        sql = f"SELECT {REQUEST_SELECT} FROM requests"  # noqa: S608 - column names are constants
        conditions: list[str] = []
        params: list[Any] = []

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if account_id is not None:
            conditions.append(f"account_id = {bind(account_id)}")
        if since is not None:
            conditions.append(f"started_at >= {bind(since)}")
        if until is not None:
            conditions.append(f"started_at < {bind(until)}")
        if before_id is not None:
            # A row comparison: a range on requests_time (or requests_account_time), both
            # ending in id, so a page costs its rows, not the rows before it.
            row = f"SELECT c.started_at, c.id FROM requests AS c WHERE c.id = {bind(before_id)}"  # noqa: S608
            conditions.append(f"(started_at, id) < ({row})")
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += f" ORDER BY started_at DESC, id DESC LIMIT {bind(checked_limit(limit))}"
        rows = await self._fetch(sql, *params)
        return [RequestRow(*row) for row in rows]

    @guarded
    async def count_requests(self) -> int:
        """The number of requests rows."""
        rows = await self._fetch("SELECT count(*) FROM requests")
        return int(rows[0][0])

    @guarded
    async def request_activity(
        self,
        *,
        since: float,
        until: float,
        bucket_seconds: float,
        account_id: int | None = None,
    ) -> list[ActivityBucket]:
        """Requests with since <= started_at < until per bucket_seconds from since, by index.

        Only non-empty buckets come back. Raises ValueError when bucket_seconds <= 0 or
        until < since.
        """
        if not bucket_seconds > 0:
            raise ValueError(f"bucket_seconds must be > 0, not {bucket_seconds}")
        if not until >= since:
            raise ValueError(f"until must not be before since, not {until} < {since}")
        # A range scan of requests_time, or of requests_account_time with an account. sum()
        # of bigint is numeric in PostgreSQL: back to bigint.
        sql = (
            "SELECT floor((started_at - $1) / $2)::bigint AS bucket, count(*), "
            "coalesce(sum(total_tokens), 0)::bigint FROM requests "
            "WHERE started_at >= $1 AND started_at < $3"
        )
        params: list[Any] = [since, bucket_seconds, until]
        if account_id is not None:
            sql += " AND account_id = $4"
            params.append(account_id)
        sql += " GROUP BY bucket ORDER BY bucket"
        rows = await self._fetch(sql, *params)
        return [ActivityBucket(*row) for row in rows]
