"""PostgreSQL: the live feed's replay, rows after an id in id (commit) order, and its cursor.

Every writer holds the one advisory write lock while it hands out ids (connection.py), so id
order is commit order and `id > cursor` never skips a row that committed late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Final

import asyncpg

from codexgate.core.rows import AccountEvent, AlertRow, FeedCursor, RequestRow, UsageRow
from codexgate.storage.columns import (
    ALERT_COLUMNS,
    REQUEST_SELECT,
    USAGE_SELECT,
    checked_limit,
    usage_row,
)
from codexgate.storage.postgresql.connection import (
    COMMITS_CHANNEL,
    PostgresBase,
    guarded,
    is_unavailable,
)

LOG = logging.getLogger(__name__)

# The commit listener: how long a connect may take, how often a quiet connection is checked,
# and the pause before listening again after losing the server (doubling up to the maximum).
CONNECT_SECONDS: Final = 5.0
CHECK_SECONDS: Final = 15.0
RETRY_SECONDS: Final = 0.5
MAX_RETRY_SECONDS: Final = 5.0


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

    @guarded
    async def watch_commits(self, on_commit: Callable[[Sequence[int]], None]) -> None:
        """Until cancelled, call on_commit after each commit of another instance (with the
        usage row ids it confirmed), and once after each (re)connection: what committed while
        nobody listened is then read after the cursor. LISTEN on a connection of its own,
        checked every CHECK_SECONDS, made again with a growing pause when it is lost."""
        delay = RETRY_SECONDS
        while True:
            try:
                await self._listen(on_commit)
                delay = RETRY_SECONDS
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                LOG.debug("the commit listener lost PostgreSQL (%s); listening again", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def _listen(self, on_commit: Callable[[Sequence[int]], None]) -> None:
        """LISTEN until the connection is lost (returns) or fails (raises)."""

        def heard(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            instance, _, ids = str(payload).partition(":")
            if instance == self.instance:
                return  # this store's own commit: its recorder already told the feed
            try:
                confirmed = tuple(int(part) for part in ids.split(",") if part)
            except ValueError:
                confirmed = ()  # not ours to read; the wake-up still counts
            on_commit(confirmed)

        conn = await asyncpg.connect(self.url.dsn, timeout=CONNECT_SECONDS)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(COMMITS_CHANNEL, heard)
            on_commit(())
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), CHECK_SECONDS)
                if not lost.is_set():
                    # A server behind a dead network never closes the socket: ask.
                    await conn.fetchval("SELECT 1", timeout=CONNECT_SECONDS)
        finally:
            conn.terminate()
