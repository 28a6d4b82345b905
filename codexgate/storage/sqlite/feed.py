"""SQLite: the live feed's replay, rows after an id in id (commit) order, and its cursor.

Every writer hands out ids inside BEGIN IMMEDIATE, holding the file's one write lock, so id order
is commit order also when a second process writes the same file (a rolling restart).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

from codexgate.core.rows import AccountEvent, AlertRow, FeedCursor, RequestRow, UsageRow
from codexgate.storage.columns import (
    ALERT_COLUMNS,
    REQUEST_SELECT,
    USAGE_SELECT,
    checked_limit,
    usage_row,
)
from codexgate.storage.interface import StorageUnavailable
from codexgate.storage.sqlite.connection import SQLiteBase, guarded

LOG = logging.getLogger(__name__)

# How often watch_commits looks for another process's commits. Polling, because SQLite has no
# notification between processes; each look is one PRAGMA data_version, which reads no page
# (only the WAL index) and costs microseconds.
POLL_SECONDS: Final = 0.2


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
        """Until cancelled or closed, call on_commit(()) within POLL_SECONDS of a commit by
        another connection to the file (another codexgate during a rolling restart, the command
        line), and once at the start and after a failed look: what committed meanwhile is then
        read after the cursor. This process's own commits do not count: the store's connection
        reads its data_version, which they leave as it was (the recorder tells the feed of them).
        The usage rows another process only confirmed are not named."""
        seen: tuple[int, int] | None = None
        while not self.closed:
            try:
                version = await self._commit_version()
            except StorageUnavailable as exc:  # locked, or closed (then the loop ends)
                LOG.debug("cannot look for other writers' commits to %s (%s)", self.path, exc)
                seen = None  # what committed meanwhile is unknown: wake the feed once it answers
            else:
                if version != seen:
                    seen = version
                    on_commit(())
            await asyncio.sleep(POLL_SECONDS)

    @guarded
    async def _commit_version(self) -> tuple[int, int]:
        """(which connection, its data_version): a change means another connection committed."""
        async with self._lock:
            return self._connection_number, await self._data_version_now()
