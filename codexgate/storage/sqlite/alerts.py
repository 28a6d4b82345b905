"""SQLite: the alerts, alert_state and webhooks tables."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from codexgate.core.rows import AlertRow, AlertState, LeaseHeld, NewAlert, WebhookRow
from codexgate.storage.columns import (
    ALERT_COLUMNS,
    checked_limit,
)
from codexgate.storage.interface import LeaseLost
from codexgate.storage.sqlite.connection import SQLiteBase, guarded
from codexgate.storage.sqlite.instances import SINGLETON


class AlertsMixin(SQLiteBase):
    """Fired alerts, the rules' state and the webhooks added through the API."""

    @guarded
    async def alerts(
        self,
        *,
        account_id: int | None = None,
        before_id: int | None = None,
        limit: int = 50,
        exclude_kinds: Sequence[str] = (),
    ) -> list[AlertRow]:
        """Alerts newest first (by id), optionally one account's, before an id, at most limit,
        without those of the kinds in exclude_kinds."""
        sql = f"SELECT {ALERT_COLUMNS} FROM alerts"  # noqa: S608 - column names are constants
        conditions: list[str] = []
        params: list[Any] = []
        if account_id is not None:
            conditions.append("account_id = ?")
            params.append(account_id)
        if before_id is not None:
            conditions.append("id < ?")
            params.append(before_id)
        if exclude_kinds:
            conditions.append(f"kind NOT IN ({', '.join(['?'] * len(exclude_kinds))})")
            params.extend(exclude_kinds)
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(checked_limit(limit))
        return [AlertRow(*row) for row in await self._fetch(sql, params)]

    @guarded
    async def alert_states(self) -> list[AlertState]:
        """Every rule's state: what has fired for the current crossings."""
        rows = await self._fetch(
            "SELECT account_id, limit_id, window, rule, period, fired_at FROM alert_state", ()
        )
        return [AlertState(*row) for row in rows]

    @guarded
    async def record_alerts(
        self,
        fired: Sequence[NewAlert],
        states: Sequence[AlertState],
        cleared: Sequence[tuple[int, str, str, str]],
        *,
        lease: LeaseHeld | None = None,
    ) -> list[AlertRow]:
        """Write fired alerts, set rule states and clear others, in one transaction; a fired
        alert but a test one goes into the outbox. With `lease`, only while it holds the lease."""
        if not (fired or states or cleared):
            return []
        async with self._lock, self._transaction():
            if lease is not None:
                cursor = await self._db.execute(
                    "UPDATE leases SET cursor = max(cursor, ?) "
                    "WHERE name = ? AND holder = ? AND expires_at > ?",
                    (lease.cursor, SINGLETON, lease.holder, time.time()),
                )
                if cursor.rowcount != 1:
                    raise LeaseLost("another process holds the singleton lease now")
            await self._db.executemany(
                "DELETE FROM alert_state "
                "WHERE account_id = ? AND limit_id = ? AND window = ? AND rule = ?",
                cleared,
            )
            # An account deleted meanwhile: its states go with it (the subquery finds nothing).
            await self._db.executemany(
                "INSERT INTO alert_state (account_id, limit_id, window, rule, period, fired_at) "
                "SELECT id, ?, ?, ?, ?, ? FROM accounts WHERE id = ? "
                "ON CONFLICT DO UPDATE SET period = excluded.period, fired_at = excluded.fired_at",
                [
                    (st.limit_id, st.window, st.rule, st.period, st.fired_at, st.account_id)
                    for st in states
                ],
            )
            written: list[AlertRow] = []
            for alert in fired:
                rows = await self._db.execute_fetchall(
                    "INSERT INTO alerts (at, kind, account_id, account, limit_id, window, "  # noqa: S608 - constants
                    "used_percent, threshold, resets_at, exhausts_at, message) "
                    "VALUES (?, ?, (SELECT id FROM accounts WHERE id = ?), ?, ?, ?, ?, ?, ?, ?, ?) "
                    f"RETURNING {ALERT_COLUMNS}",
                    (
                        alert.at,
                        alert.kind,
                        alert.account_id,
                        alert.account,
                        alert.limit_id,
                        alert.window,
                        alert.used_percent,
                        alert.threshold,
                        alert.resets_at,
                        alert.exhausts_at,
                        alert.message,
                    ),
                )
                written.extend(AlertRow(*row) for row in rows)
            await self._db.executemany(
                "INSERT INTO alert_outbox (alert_id) VALUES (?)",
                [(row.id,) for row in written if row.kind != "test"],
            )
            return written

    @guarded
    async def undelivered_alerts(self, since: float) -> list[AlertRow]:
        """The alerts in the outbox (fired, not yet delivered), fired at or after since, by id."""
        rows = await self._fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts "  # noqa: S608 - constants
            "WHERE id IN (SELECT alert_id FROM alert_outbox) AND at >= ? ORDER BY id",
            (since,),
        )
        return [AlertRow(*row) for row in rows]

    @guarded
    async def alerts_delivered(self, alert_ids: Sequence[int], *, before: float = 0.0) -> None:
        """Take these alerts out of the outbox, and every one fired before `before`."""
        async with self._lock, self._transaction():
            await self._db.executemany(
                "DELETE FROM alert_outbox WHERE alert_id = ?", [(i,) for i in alert_ids]
            )
            await self._db.execute(
                "DELETE FROM alert_outbox WHERE alert_id IN (SELECT id FROM alerts WHERE at < ?)",
                (before,),
            )

    @guarded
    async def webhooks(self) -> list[WebhookRow]:
        """The webhooks added through the API, by id."""
        rows = await self._fetch(
            "SELECT id, url, format, name, created_at FROM webhooks ORDER BY id", ()
        )
        return [WebhookRow(*row) for row in rows]

    @guarded
    async def add_webhook(
        self, url: str, format_: str, name: str | None, now: float
    ) -> tuple[WebhookRow, bool]:
        """Add a webhook; (the row, True) or, when the URL is already there, (it, False)."""
        async with self._lock, self._transaction():
            rows = await self._db.execute_fetchall(
                "INSERT INTO webhooks (url, format, name, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (url) DO NOTHING RETURNING id, url, format, name, created_at",
                (url, format_, name, now),
            )
            if rows:
                return WebhookRow(*next(iter(rows))), True
            rows = await self._db.execute_fetchall(
                "SELECT id, url, format, name, created_at FROM webhooks WHERE url = ?", (url,)
            )
            return WebhookRow(*next(iter(rows))), False

    @guarded
    async def delete_webhook(self, webhook_id: int) -> bool:
        """Remove a webhook added through the API; False if there is no such id."""
        async with self._lock, self._transaction():
            cursor = await self._db.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
            return cursor.rowcount > 0
