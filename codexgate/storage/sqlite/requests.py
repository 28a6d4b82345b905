"""SQLite: the requests table."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from codexgate.core.models import RequestRecord
from codexgate.core.recording import request_rows
from codexgate.core.rows import ActivityBucket, RequestRow
from codexgate.storage.batch import RecordBatch
from codexgate.storage.columns import (
    REQUEST_COLUMNS,
    REQUEST_SELECT,
)
from codexgate.storage.sqlite.columns import multi_row_inserts
from codexgate.storage.sqlite.connection import SQLiteBase, guarded, insert_rows, next_id

_INSERT_REQUEST: Final = multi_row_inserts("requests", REQUEST_COLUMNS)


class RequestsMixin(SQLiteBase):
    """The request log: pages, counts and activity buckets."""

    def _insert_requests(
        self, conn: sqlite3.Connection, requests: Sequence[RequestRecord], batch: RecordBatch
    ) -> None:
        """Insert a batch's requests with their accounts, in the order given (in record()'s
        transaction, on the connection's thread)."""
        first_id = next_id(conn, "requests")
        rows = request_rows(requests, first_id, batch.account_ids)
        insert_rows(conn, _INSERT_REQUEST, rows)

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
        if account_id is not None:
            conditions.append("account_id = ?")
            params.append(account_id)
        if since is not None:
            conditions.append("started_at >= ?")
            params.append(since)
        if until is not None:
            conditions.append("started_at < ?")
            params.append(until)
        if before_id is not None:
            # A row value: SQLite turns it into a range on the started_at index (whose last
            # column is the rowid id), so a page costs its rows, not the rows before it.
            conditions.append(
                "(started_at, id) < (SELECT c.started_at, c.id FROM requests AS c WHERE c.id = ?)"
            )
            params.append(before_id)
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        params.append(limit)
        rows = await self._fetch(sql, params)
        return [RequestRow(*row) for row in rows]

    @guarded
    async def count_requests(self) -> int:
        """The number of requests rows."""
        rows = await self._fetch("SELECT count(*) FROM requests", ())
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
        # A range scan of requests_time, or of requests_account_time with an account.
        sql = (
            "SELECT CAST((started_at - ?) / ? AS INTEGER) AS bucket, count(*), "
            "coalesce(sum(total_tokens), 0) FROM requests WHERE started_at >= ? AND started_at < ?"
        )
        params: list[Any] = [since, bucket_seconds, since, until]
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        sql += " GROUP BY bucket ORDER BY bucket"
        rows = await self._fetch(sql, params)
        return [ActivityBucket(*row) for row in rows]
