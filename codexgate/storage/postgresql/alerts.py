"""PostgreSQL: the alerts, alert_state and webhooks tables ("window" is a reserved word)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from codexgate.core.rows import AlertRow, AlertState, LeaseHeld, NewAlert, WebhookRow
from codexgate.storage.columns import ALERT_COLUMNS, checked_limit
from codexgate.storage.interface import LeaseLost
from codexgate.storage.postgresql.connection import NOW, SINGLETON, PostgresBase, guarded

_WEBHOOK_COLUMNS: Final = "id, url, format, name, created_at"


class AlertsMixin(PostgresBase):
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
        conditions: list[str] = []
        params: list[Any] = []

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if account_id is not None:
            conditions.append(f"account_id = {bind(account_id)}")
        if before_id is not None:
            conditions.append(f"id < {bind(before_id)}")
        if exclude_kinds:
            conditions.append(f"kind <> ALL({bind(list(exclude_kinds))}::text[])")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = (
            f"SELECT {ALERT_COLUMNS} FROM alerts{where} "  # noqa: S608 - constants and $n only
            f"ORDER BY id DESC LIMIT {bind(checked_limit(limit))}"
        )
        return [AlertRow(*row) for row in await self._fetch(sql, *params)]

    @guarded
    async def alert_states(self) -> list[AlertState]:
        """Every rule's state: what has fired for the current crossings."""
        rows = await self._fetch(
            'SELECT account_id, limit_id, "window", rule, period, fired_at FROM alert_state'
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
        async with self._writing() as conn:
            if lease is not None:
                held = await conn.fetchval(
                    "UPDATE leases SET cursor = greatest(cursor, $3) "  # noqa: S608 - constants
                    f"WHERE name = $1 AND holder = $2 AND expires_at > {NOW} RETURNING 1",
                    SINGLETON,
                    lease.holder,
                    lease.cursor,
                )
                if held is None:
                    raise LeaseLost("another instance holds the singleton lease now")
            if cleared:
                await conn.executemany(
                    "DELETE FROM alert_state "
                    'WHERE account_id = $1 AND limit_id = $2 AND "window" = $3 AND rule = $4',
                    cleared,
                )
            if states:
                # An account deleted meanwhile: its states go with it (the SELECT finds nothing).
                await conn.executemany(
                    'INSERT INTO alert_state (account_id, limit_id, "window", rule, period, '
                    "fired_at) SELECT id, $1::text, $2::text, $3::text, $4::bigint, "
                    "$5::double precision FROM accounts WHERE id = $6 "
                    'ON CONFLICT (account_id, limit_id, "window", rule) '
                    "DO UPDATE SET period = excluded.period, fired_at = excluded.fired_at",
                    [
                        (st.limit_id, st.window, st.rule, st.period, st.fired_at, st.account_id)
                        for st in states
                    ],
                )
            written: list[AlertRow] = []
            for alert in fired:
                # An account deleted meanwhile: the alert stays, with no account id.
                rows = await conn.fetch(
                    'INSERT INTO alerts (at, kind, account_id, account, limit_id, "window", '  # noqa: S608 - constants
                    "used_percent, threshold, resets_at, exhausts_at, message) "
                    "VALUES ($1, $2, (SELECT id FROM accounts WHERE id = $3), "
                    "$4, $5, $6, $7, $8, $9, $10, $11) "
                    f"RETURNING {ALERT_COLUMNS}",
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
                )
                written.extend(AlertRow(*row) for row in rows)
            outbox = [(row.id,) for row in written if row.kind != "test"]
            if outbox:
                await conn.executemany("INSERT INTO alert_outbox (alert_id) VALUES ($1)", outbox)
            return written

    @guarded
    async def undelivered_alerts(self, since: float) -> list[AlertRow]:
        """The alerts in the outbox (fired, not yet delivered), fired at or after since, by id."""
        rows = await self._fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts "  # noqa: S608 - constants
            "WHERE id IN (SELECT alert_id FROM alert_outbox) AND at >= $1 ORDER BY id",
            since,
        )
        return [AlertRow(*row) for row in rows]

    @guarded
    async def alerts_delivered(self, alert_ids: Sequence[int], *, before: float = 0.0) -> None:
        """Take these alerts out of the outbox, and every one fired before `before`."""
        # Not a feed table: no write lock, no notification.
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM alert_outbox WHERE alert_id = ANY($1::bigint[]) "
                "OR alert_id IN (SELECT id FROM alerts WHERE at < $2)",
                list(alert_ids),
                before,
            )

    @guarded
    async def webhooks(self) -> list[WebhookRow]:
        """The webhooks added through the API, by id."""
        rows = await self._fetch(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks ORDER BY id")  # noqa: S608
        return [WebhookRow(*row) for row in rows]

    @guarded
    async def add_webhook(
        self, url: str, format_: str, name: str | None, now: float
    ) -> tuple[WebhookRow, bool]:
        """Add a webhook; (the row, True) or, when the URL is already there, (it, False)."""
        async with self._writing() as conn:
            added = await conn.fetchrow(
                "INSERT INTO webhooks (url, format, name, created_at) VALUES ($1, $2, $3, $4) "  # noqa: S608
                f"ON CONFLICT (url) DO NOTHING RETURNING {_WEBHOOK_COLUMNS}",
                url,
                format_,
                name,
                now,
            )
            if added is not None:
                return WebhookRow(*added), True
            there = await conn.fetchrow(
                f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE url = $1",  # noqa: S608
                url,
            )
            assert there is not None  # the conflict was with this row; the write lock is held
            return WebhookRow(*there), False

    @guarded
    async def delete_webhook(self, webhook_id: int) -> bool:
        """Remove a webhook added through the API; False if there is no such id."""
        async with self._writing() as conn:
            gone = await conn.fetchval(
                "DELETE FROM webhooks WHERE id = $1 RETURNING true", webhook_id
            )
        return gone is not None
