"""PostgreSQL: the usage_snapshots table and the latest_usage view; record() writes a batch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

from codexgate.core.limits import MAIN_LIMIT
from codexgate.core.models import RequestRecord, Snapshot
from codexgate.core.recording import (
    NewestRow,
    UsageKey,
    UsageValues,
    plan_usage,
    refused_requests,
    seen_accounts,
    split_batch,
    unproven_keys,
)
from codexgate.core.rows import (
    AccountWindows,
    LatestUsageRow,
    LimitWindows,
    OverviewPage,
    RecordResult,
    UpcomingReset,
    UsageRow,
)
from codexgate.core.windows import FIXED_WINDOWS, reported
from codexgate.storage.batch import RecordBatch
from codexgate.storage.columns import (
    ACCOUNT_ID,
    CAPTURED_AT,
    CONFIRMED_AT,
    FIRST_VALUE,
    ID,
    LATEST_SELECT,
    LIMIT_ID,
    USAGE_COLUMNS,
    USAGE_SELECT,
    USAGE_SELECT_S,
    VALUE_COLUMNS,
    checked_limit,
    latest_row,
    usage_row,
)
from codexgate.storage.postgresql.accounts import AccountsMixin
from codexgate.storage.postgresql.connection import (
    COMMITS_CHANNEL,
    MAX_NOTIFY_PAYLOAD,
    Connection,
    guarded,
)
from codexgate.storage.postgresql.requests import RequestsMixin
from codexgate.storage.sql import TITLE, TITLES, account_limits, window_column

LOG = logging.getLogger(__name__)

# The 0/1 value columns (core.recording's values) that are boolean columns here.
_FLAG_VALUES: Final = tuple(
    VALUE_COLUMNS.index(name)
    for name in ("credits_has_credits", "credits_unlimited", "spend_control_reached")
)

# The key guards against an id that was deleted behind the Store; RETURNING says which of the
# rows still existed.
_CONFIRM_USAGE: Final = """
UPDATE usage_snapshots AS s SET confirmed_at = greatest(s.confirmed_at, c.at)
FROM unnest($1::bigint[], $2::double precision[], $3::bigint[], $4::text[])
    AS c (id, at, account_id, limit_id)
WHERE s.id = c.id AND s.account_id = c.account_id AND s.limit_id = c.limit_id
RETURNING s.id
"""

# The newest row of each wanted (account, limit): one backward step on
# usage_snapshots_account_limit_time per key.
_LOAD_LAST: Final = f"""
SELECT {USAGE_SELECT_S}
FROM unnest($1::bigint[], $2::text[]) AS w (account_id, limit_id)
CROSS JOIN LATERAL (
    SELECT * FROM usage_snapshots AS x
    WHERE x.account_id = w.account_id AND x.limit_id = w.limit_id
    ORDER BY x.captured_at DESC, x.id DESC
    LIMIT 1
) AS s
"""  # noqa: S608 - column names are constants

# The newest row of the account and limit `al`, as in the latest_usage view.
_NEWEST_OF_AL: Final = """CROSS JOIN LATERAL (
    SELECT * FROM usage_snapshots AS x
    WHERE x.account_id = al.account_id AND x.limit_id = al.limit_id
    ORDER BY x.captured_at DESC, x.id DESC
    LIMIT 1
) AS s"""

_CLOCK: Final = "(SELECT extract(epoch FROM clock_timestamp())::double precision AS now) AS clock"


def _latest_of(accounts: str, where: str = "") -> str:
    """latest_usage's walk and columns for the account ids that the query `accounts` selects;
    `where` keeps only some of the rows. The view walks every account (its recursive part
    cannot see a WHERE on the outside): this starts the same walk from the given ids."""
    return f"""
WITH RECURSIVE
    chosen (id) AS ({accounts}),
    {account_limits("chosen")}
SELECT {USAGE_SELECT_S}, a.account_key, a.display_name, a.email, a.plan_type,
    clock.now - s.confirmed_at, s.five_hour_resets_at - clock.now,
    s.seven_day_resets_at - clock.now, s.monthly_resets_at - clock.now,
    s.limit_hit_resets_at - clock.now, s.spend_resets_at - clock.now
FROM account_limits AS al
{_NEWEST_OF_AL}
JOIN accounts AS a ON a.id = s.account_id
CROSS JOIN {_CLOCK}
{where}
ORDER BY s.account_id, s.limit_id
"""  # noqa: S608 - the parts are this module's constants


# Some accounts by id; a page of the next $2 ids after $1, for work that walks every account a
# page at a time.
_LATEST_OF: Final = _latest_of("SELECT unnest($1::bigint[])")

_PAGE_OF_ACCOUNTS: Final = "SELECT id FROM accounts WHERE id > $1 ORDER BY id LIMIT $2"

_PAGE_END: Final = f"SELECT count(*), max(id) FROM ({_PAGE_OF_ACCOUNTS}) AS page"  # noqa: S608

# The rows whose stale alert state disagrees with the cutoff: confirmed before it without a
# state (they may fire), or since with one (they re-arm). core/alerts.evaluate_stale decides.
_STALE_CHANGES: Final = (
    "WHERE (s.confirmed_at < $3) <> EXISTS (SELECT 1 FROM alert_state AS st "
    "WHERE st.account_id = s.account_id AND st.limit_id = s.limit_id "
    'AND st."window" = $4 AND st.rule = $5)'
)

# The overview in one statement, so that latest_usage is walked once however many accounts
# there are: the summary counts over every account, one page of account ids in the chosen order,
# and the soonest upcoming resets. The rules are views.py's (CardView.max_used, soonest_reset,
# at_limit, sort_cards), written again in SQL so that no page builds a card per account;
# tests/storage/test_store_overview.py checks that both agree on every backend. Slots count
# only under a label that is not one of the fixed windows (those are already in their own
# columns); used percents are never negative (capture refuses them), so -1 stands for
# "unknown" inside greatest().
# Parameters: $1 now, $2 critical, $3 offset, $4 limit, $5 resets; typed here, since a reset
# column (bigint) compared with $1 would otherwise make it a bigint.
_SLOT: Final = (
    "CASE WHEN s.{slot}_window NOT IN ("
    + ", ".join(f"'{label}'" for label in FIXED_WINDOWS)
    + ") THEN s.{slot}_{field} END"
)

_NOW: Final = "$1::double precision"

_AHEAD: Final = f"CASE WHEN {{value}} > {_NOW} THEN {{value}} ELSE 9e18 END"

# A window's used percent as of now: 0 once its reset time has passed with no newer report
# (core/windows.py as_of: reset, inferred), else as reported (NULL stays unknown).
_AS_OF: Final = (
    f"CASE WHEN ({{reset}}) <= {_NOW} AND ({{used}}) IS NOT NULL THEN 0 ELSE ({{used}}) END"
)

# As SQLite sorts, whatever the database's locale: under the "C" collation lower() changes only
# ASCII letters and the order is byte order.
_BY_NAME: Final = 'title IS NULL, lower(title COLLATE "C"), id'

OVERVIEW_ORDERS: Final = {
    "name": _BY_NAME,
    "used": f"used IS NULL, used DESC, {_BY_NAME}",
    "reset": f"soonest IS NULL, soonest, {_BY_NAME}",
}

# The highest used percent of one row's windows, -1 when none is known.
_ROW_USED: Final = (
    "greatest(coalesce(u1, -1), coalesce(u2, -1), coalesce(u3, -1), "
    "coalesce(u4, -1), coalesce(u5, -1))"
)

_OVERVIEW: Final = (
    "\nWITH RECURSIVE\n    "  # noqa: S608 - the parts are this module's constants
    + account_limits("accounts")
    + """,
    latest AS MATERIALIZED (
        SELECT s.account_id,
            {n1} AS u1, {n2} AS u2, {n3} AS u3, {n4} AS u4, {n5} AS u5,
            s.five_hour_resets_at AS r1, s.seven_day_resets_at AS r2,
            s.monthly_resets_at AS r3, {r4} AS r4, {r5} AS r5,
            s.limit_hit_type IS NOT NULL
                AND (s.limit_hit_resets_at IS NULL OR s.limit_hit_resets_at > {now}) AS hit,
            s.limit_id = '{main}' AS main
        FROM account_limits AS al
        {newest}
    ),
    per_account AS (
        SELECT account_id,
            nullif(CASE WHEN bool_or(main) THEN max(CASE WHEN main THEN {row_used} END)
                        ELSE max({row_used}) END, -1) AS used,
            nullif(min(least({a1}, {a2}, {a3}, {a4}, {a5})), 9e18) AS soonest,
            CASE WHEN bool_or(main) THEN bool_or(hit AND main) ELSE bool_or(hit) END AS hit
        FROM latest GROUP BY account_id
    ),
    facts AS MATERIALIZED (
        SELECT a.id AS id, {title} AS title, p.used AS used, p.soonest AS soonest,
            coalesce(p.hit OR p.used >= 100, false) AS at_limit
        FROM accounts AS a LEFT JOIN per_account AS p ON p.account_id = a.id
    ),
    resets (at, account_id) AS (
        SELECT r1, account_id FROM latest UNION ALL SELECT r2, account_id FROM latest
        UNION ALL SELECT r3, account_id FROM latest UNION ALL SELECT r4, account_id FROM latest
        UNION ALL SELECT r5, account_id FROM latest
    )
SELECT 'count', count(*), coalesce(sum(at_limit::int), 0),
    coalesce(sum((NOT at_limit AND used >= $2::double precision)::int), 0),
    coalesce(max(id), 0), NULL::text
FROM facts
UNION ALL
(
    SELECT 'page', id, row_number() OVER (ORDER BY {order}) AS position, NULL, NULL, NULL
    FROM facts ORDER BY position LIMIT $4::bigint OFFSET $3::bigint
)
UNION ALL
(
    SELECT 'reset', r.account_id, r.at, NULL, NULL, f.title
    FROM (SELECT DISTINCT at, account_id FROM resets WHERE at > {now}
          ORDER BY at, account_id LIMIT $5::bigint) AS r
    JOIN facts AS f ON f.id = r.account_id
)
ORDER BY 1, 3, 2
"""
)

_OVERVIEW_SQL: Final = {
    sort: _OVERVIEW.format(
        n1=_AS_OF.format(used="s.five_hour_used_percent", reset="s.five_hour_resets_at"),
        n2=_AS_OF.format(used="s.seven_day_used_percent", reset="s.seven_day_resets_at"),
        n3=_AS_OF.format(used="s.monthly_used_percent", reset="s.monthly_resets_at"),
        n4=_AS_OF.format(
            used=_SLOT.format(slot="primary", field="used_percent"),
            reset=_SLOT.format(slot="primary", field="resets_at"),
        ),
        n5=_AS_OF.format(
            used=_SLOT.format(slot="secondary", field="used_percent"),
            reset=_SLOT.format(slot="secondary", field="resets_at"),
        ),
        r4=_SLOT.format(slot="primary", field="resets_at"),
        r5=_SLOT.format(slot="secondary", field="resets_at"),
        **{f"a{i}": _AHEAD.format(value=f"r{i}") for i in range(1, 6)},
        row_used=_ROW_USED,
        main=MAIN_LIMIT,
        title=TITLE,
        order=order,
        now=_NOW,
        newest=_NEWEST_OF_AL,
    )
    for sort, order in OVERVIEW_ORDERS.items()
}


# The windows of every account's newest row of each limit family, only the columns the "use next"
# rule reads (core/use_next.py), and every account's title: one walk, no card built.
_LATEST_WINDOWS: Final = (
    "\nWITH RECURSIVE\n    "
    + account_limits("accounts")
    + f"""
SELECT s.account_id, s.limit_id,
    s.five_hour_used_percent, s.five_hour_window_minutes, s.five_hour_resets_at,
    s.seven_day_used_percent, s.seven_day_window_minutes, s.seven_day_resets_at,
    s.monthly_used_percent, s.monthly_window_minutes, s.monthly_resets_at,
    s.primary_window, s.primary_used_percent, s.primary_window_minutes, s.primary_resets_at,
    s.secondary_window, s.secondary_used_percent, s.secondary_window_minutes,
    s.secondary_resets_at, s.limit_hit_type, s.limit_hit_resets_at
FROM account_limits AS al
{_NEWEST_OF_AL}
ORDER BY s.account_id, s.limit_id
"""  # noqa: S608 - the parts are this module's constants
)

# A limit family's newest rows since $3, at most $4 per key, for every key at once: one
# bounded backward range of usage_snapshots_account_limit_time per key.
_RECENT_HISTORIES: Final = f"""
SELECT {USAGE_SELECT_S}
FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS k (account_id, limit_id, position)
CROSS JOIN LATERAL (
    SELECT * FROM usage_snapshots AS x
    WHERE x.account_id = k.account_id AND x.limit_id = k.limit_id
        AND x.captured_at >= $3::double precision
    ORDER BY x.captured_at DESC, x.id DESC
    LIMIT $4::bigint
) AS s
ORDER BY k.position, s.captured_at, s.id
"""  # noqa: S608 - column names are constants


class UsageMixin(AccountsMixin, RequestsMixin):
    """Recording a batch, and every read of usage history."""

    # The first usage id after this process's last committed batch (None: none yet). Another
    # id when a batch starts means rows came from elsewhere (another instance on the same
    # database): the throttle state in _last may then be behind the table.
    _usage_next_id: int | None = None

    @guarded
    async def record(
        self, items: Sequence[Snapshot | RequestRecord], *, max_accounts: int | None = None
    ) -> RecordResult:
        """Write snapshots (throttling unchanged values) and requests in one transaction.

        Snapshots and proven requests create or update their accounts, while the table holds
        fewer than max_accounts (None: no limit); a new seat beyond it is refused: its snapshots
        are not written and its requests have no account. An unproven request joins its
        account only if that exists, changing nothing about it.
        """
        if not items:
            return RecordResult(0, 0, 0, 0)
        ordered, requests = split_batch(items)
        batch = RecordBatch()
        async with self._writing() as conn:
            seen = seen_accounts(ordered, requests)
            await self._resolve_accounts(conn, seen, batch, max_accounts)
            await self._attach_accounts(conn, unproven_keys(requests, seen), batch)
            kept = [s for s in ordered if s.identity.account_key not in batch.refused]
            inserted, confirmed, confirmed_ids, next_id = await self._write_usage(conn, kept, batch)
            if requests:
                await self._insert_requests(conn, requests, batch)
            if confirmed_ids:
                payload = f"{self.instance}:{','.join(map(str, confirmed_ids))}"
                if len(payload) <= MAX_NOTIFY_PAYLOAD:
                    # The other instances' feeds tell their pages these rows were seen again.
                    await conn.execute("SELECT pg_notify($1, $2)", COMMITS_CHANNEL, payload)
        # Committed (an error above leaves the caches as they were, matching the database);
        # nothing awaits between the commit and here, so no other writer sees them half done.
        if batch.purged_accounts:
            purged = batch.purged_accounts
            self._last = {k: v for k, v in self._last.items() if k[0] not in purged}
        self._last.update(batch.last)
        self._account_ids.update(batch.account_ids)
        if next_id is not None:
            self._usage_next_id = next_id
        refused = batch.refused
        return RecordResult(
            batch.accounts_created,
            inserted,
            confirmed,
            len(requests),
            confirmed_ids,
            seats_refused=len(refused),
            snapshots_refused=len(ordered) - len(kept),
            requests_refused=refused_requests(requests, refused),
        )

    async def _write_usage(
        self, conn: Connection, ordered: Sequence[Snapshot], batch: RecordBatch
    ) -> tuple[int, int, tuple[int, ...], int | None]:
        """Insert changed rows, confirm unchanged ones (core.recording.plan_usage decides).

        Returns (inserted, confirmed, ids of the existing rows whose confirmed_at was set, the
        next usage id after this batch or None when it had no samples).
        """
        work = self._sampler.samples(ordered, batch.account_ids)
        if not work:
            return 0, 0, (), None
        # We hold the write lock, so ids after the current maximum are ours to hand out.
        next_id = await self._next_id(conn, "usage_snapshots")
        purged = batch.purged_accounts
        cached = self._last
        keys = {sample.key for sample in work}
        if next_id != self._usage_next_id:
            # Rows this process did not write (or a batch whose commit it never heard back
            # from): forget every newest row it knows; they are read again when needed.
            purged.update(key[0] for key in cached)
            purged.update(key[0] for key in keys)
        wanted = {key for key in keys if key not in cached or key[0] in purged}
        if wanted:
            await self._load_last(conn, wanted, batch)
        loaded = batch.last
        known = {key: loaded[key] if key in loaded else cached[key] for key in keys}
        plan = plan_usage(work, known, heartbeat=self._heartbeat, next_id=next_id)
        state = batch.last
        state.update(plan.newest)
        if plan.inserts:
            rows = [
                (
                    row.id,
                    row.sample.key[0],
                    row.captured_at,
                    row.confirmed_at,
                    row.sample.source,
                    row.sample.http_status,
                    row.sample.key[1],
                    *_column_values(row.sample.values),
                )
                for row in plan.inserts
            ]
            # COPY: one round trip for the whole batch, the fastest way in.
            await conn.copy_records_to_table("usage_snapshots", records=rows, columns=USAGE_COLUMNS)
        confirms = plan.confirms
        confirmed_ids: tuple[int, ...] = ()
        if confirms:
            updated = await conn.fetch(
                _CONFIRM_USAGE,
                [row_id for row_id, _ in confirms.values()],
                [at for _, at in confirms.values()],
                [key[0] for key in confirms],
                [key[1] for key in confirms],
            )
            confirmed_ids = tuple(sorted(int(row["id"]) for row in updated))
            if len(updated) != len(confirms):
                # A row vanished behind our back (deleted by hand): this batch's confirmation
                # of it is lost; reloading the state lets the next report write a fresh row.
                LOG.warning("%s confirmed usage rows were missing", len(confirms) - len(updated))
                for key in confirms:
                    state.pop(key, None)
                batch.purged_accounts.update(key[0] for key in confirms)
        return plan.inserted, plan.confirmed, confirmed_ids, next_id + plan.inserted

    async def _load_last(self, conn: Connection, keys: set[UsageKey], batch: RecordBatch) -> None:
        """Load the newest row of each key into batch.last (None where there is none)."""
        for key in keys:
            batch.last[key] = None
        ordered = sorted(keys)
        rows = await conn.fetch(
            _LOAD_LAST, [key[0] for key in ordered], [key[1] for key in ordered]
        )
        for row in rows:
            key = (int(row[ACCOUNT_ID]), str(row[LIMIT_ID]))
            batch.last[key] = NewestRow(
                int(row[ID]),
                _stored_values(row[FIRST_VALUE:]),
                float(row[CAPTURED_AT]),
                float(row[CONFIRMED_AT]),
            )

    @guarded
    async def latest_usage(self, account_id: int | None = None) -> list[LatestUsageRow]:
        """The newest row per account and limit (of one account if given), by account, limit."""
        if account_id is None:
            rows = await self._fetch(LATEST_SELECT + " ORDER BY account_id, limit_id")
        else:
            # The view would walk every account: start the walk from this one.
            rows = await self._fetch(_LATEST_OF, [account_id])
        return [latest_row(tuple(row)) for row in rows]

    @guarded
    async def latest_usage_of(self, account_ids: Sequence[int]) -> list[LatestUsageRow]:
        """latest_usage of the given accounts (unknown ids are skipped), by account, limit."""
        rows = await self._fetch(_LATEST_OF, sorted(set(account_ids)))
        return [latest_row(tuple(row)) for row in rows]

    @guarded
    async def latest_usage_page(
        self, after_id: int, accounts: int
    ) -> tuple[list[LatestUsageRow], int | None]:
        """latest_usage of the next `accounts` accounts by id after after_id, and the id to read
        the next page after (None once this page reached the last account)."""
        return await self._latest_page(_latest_of(_PAGE_OF_ACCOUNTS), after_id, accounts)

    @guarded
    async def stale_changes_page(
        self, after_id: int, accounts: int, cutoff: float, *, window: str, rule: str
    ) -> tuple[list[LatestUsageRow], int | None]:
        """latest_usage_page, keeping the rows confirmed before cutoff that have no alert_state
        (window, rule) and the rows confirmed since that have one."""
        sql = _latest_of(_PAGE_OF_ACCOUNTS, _STALE_CHANGES)
        return await self._latest_page(sql, after_id, accounts, float(cutoff), window, rule)

    async def _latest_page(
        self, sql: str, after_id: int, accounts: int, *more: Any
    ) -> tuple[list[LatestUsageRow], int | None]:
        checked_limit(accounts)
        async with self._snapshot() as conn:
            rows = await conn.fetch(sql, after_id, accounts, *more)
            ends = await conn.fetchrow(_PAGE_END, after_id, accounts)
        # An aggregate without GROUP BY gives one row.
        count, last = ends if ends is not None else (0, None)
        if count < accounts or last is None:
            return [latest_row(tuple(row)) for row in rows], None
        return [latest_row(tuple(row)) for row in rows], int(last)

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Connection]:
        """A read-only transaction whose statements all see the database as of its start."""
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield conn

    @guarded
    async def overview(
        self,
        *,
        now: float,
        critical: float,
        sort: str,
        offset: int,
        limit: int,
        resets: int,
    ) -> OverviewPage:
        """Counts over every account, one page of account ids in `sort` order, upcoming resets.

        sort is a key of OVERVIEW_ORDERS (else ValueError). Near the limit: a window at
        `critical` percent or more, and not at the limit (a limit hit not yet back, or a window
        at 100 %). One pass over latest_usage, whatever offset and limit are.
        """
        sql = _OVERVIEW_SQL.get(sort)
        if sql is None:
            raise ValueError(f"unknown sort {sort!r}: use one of {sorted(_OVERVIEW_SQL)}")
        rows = await self._fetch(
            sql,
            float(now),
            float(critical),
            checked_limit(offset),
            checked_limit(limit),
            checked_limit(resets),
        )
        counts = next(row for row in rows if row[0] == "count")
        return OverviewPage(
            accounts=int(counts[1]),
            at_limit=int(counts[2]),
            near_limit=int(counts[3]),
            max_account_id=int(counts[4]),
            account_ids=[int(row[1]) for row in rows if row[0] == "page"],
            resets=[
                UpcomingReset(int(row[2]), int(row[1]), row[5]) for row in rows if row[0] == "reset"
            ],
        )

    @guarded
    async def latest_windows(self) -> list[AccountWindows]:
        """Every account by id with its title and the windows of each limit family's newest row."""
        async with self._snapshot() as conn:
            titles = await conn.fetch(TITLES)
            rows = await conn.fetch(_LATEST_WINDOWS)
        limits: dict[int, list[LimitWindows]] = {}
        for row in rows:
            windows = reported(
                (row[2], row[3], row[4]),
                (row[5], row[6], row[7]),
                (row[8], row[9], row[10]),
                (row[11], row[12], row[13], row[14]),
                (row[15], row[16], row[17], row[18]),
            )
            found = LimitWindows(str(row[1]), windows, row[19], row[20])
            limits.setdefault(int(row[0]), []).append(found)
        return [
            AccountWindows(int(account_id), title, tuple(limits.get(int(account_id), ())))
            for account_id, title in titles
        ]

    @guarded
    async def history(
        self,
        account_id: int,
        *,
        limit_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[UsageRow]:
        """An account's rows with since <= captured_at < until, oldest first, at most limit."""
        query = _Query(
            f"SELECT {USAGE_SELECT} FROM usage_snapshots WHERE account_id = $1",  # noqa: S608
            account_id,
        )
        # Only the conditions given, so that the plan is the (account, limit, time) index range.
        if limit_id is not None:
            query.add("limit_id = {}", limit_id)
        if since is not None:
            query.add("captured_at >= {}", float(since))
        if until is not None:
            query.add("captured_at < {}", float(until))
        query.sql += f" ORDER BY captured_at, id LIMIT {query.bind(checked_limit(limit))}"
        rows = await self._fetch(query.sql, *query.params)
        return [usage_row(tuple(row)) for row in rows]

    @guarded
    async def history_page(
        self,
        account_id: int,
        *,
        limit_id: str | None = None,
        window: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: tuple[float, int] | None = None,
        limit: int = 500,
    ) -> list[UsageRow]:
        """One page of an account's history, oldest first: (captured_at, id) ascending.

        Rows with since <= captured_at < until; after is the (captured_at, id) of the previous
        page's last row, and only rows strictly after it come back (a keyset cursor: a row
        written or pruned between pages neither repeats nor shifts a page). window ("5h",
        "7d" or "monthly") keeps only the rows that reported that window's used_percent.
        Raises ValueError for another window or a negative limit.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        query = _Query(
            f"SELECT {USAGE_SELECT} FROM usage_snapshots WHERE account_id = $1",  # noqa: S608
            account_id,
        )
        if window is not None:
            column = window_column(window)
            query.sql += f" AND {column} IS NOT NULL"
        if limit_id is not None:
            query.add("limit_id = {}", limit_id)
        if since is not None:
            query.add("captured_at >= {}", float(since))
        if until is not None:
            query.add("captured_at < {}", float(until))
        if after is not None:
            # A row comparison: with limit_id given, a range on the (account, limit, time, id)
            # index. The plain bound lets it seek without limit_id.
            at = query.bind(float(after[0]))
            query.sql += f" AND captured_at >= {at} AND (captured_at, id) > ({at}, "
            query.sql += f"{query.bind(after[1])})"
        query.sql += f" ORDER BY captured_at, id LIMIT {query.bind(limit)}"
        rows = await self._fetch(query.sql, *query.params)
        return [usage_row(tuple(row)) for row in rows]

    @guarded
    async def usage_rows(self, ids: Sequence[int]) -> list[UsageRow]:
        """The usage_snapshots rows with these ids (missing ones skipped), by id."""
        rows = await self._fetch(
            f"SELECT {USAGE_SELECT} FROM usage_snapshots "  # noqa: S608 - constants
            "WHERE id = ANY($1::bigint[]) ORDER BY id",
            sorted(set(ids)),
        )
        return [usage_row(tuple(row)) for row in rows]

    @guarded
    async def count_history(self) -> int:
        """The number of usage_snapshots rows."""
        rows = await self._fetch("SELECT count(*) FROM usage_snapshots")
        return int(rows[0][0])

    @guarded
    async def recent_history(
        self, account_id: int, limit_id: str, *, since: float, limit: int
    ) -> list[UsageRow]:
        """A limit family's newest rows captured at or after since (at most limit), oldest first."""
        rows = await self._fetch(
            f"SELECT {USAGE_SELECT} FROM usage_snapshots "  # noqa: S608 - constants
            "WHERE account_id = $1 AND limit_id = $2 AND captured_at >= $3 "
            "ORDER BY captured_at DESC, id DESC LIMIT $4",
            account_id,
            limit_id,
            float(since),
            checked_limit(limit),
        )
        return [usage_row(tuple(row)) for row in reversed(rows)]

    @guarded
    async def recent_histories(
        self, keys: Sequence[tuple[int, str]], *, since: float, limit: int
    ) -> dict[tuple[int, str], list[UsageRow]]:
        """recent_history of each (account id, limit id), all in one statement."""
        wanted = list(dict.fromkeys(keys))
        found: dict[tuple[int, str], list[UsageRow]] = {key: [] for key in wanted}
        if not wanted:
            return found
        rows = await self._fetch(
            _RECENT_HISTORIES,
            [key[0] for key in wanted],
            [key[1] for key in wanted],
            float(since),
            checked_limit(limit),
        )
        for row in rows:
            found[(int(row[ACCOUNT_ID]), str(row[LIMIT_ID]))].append(usage_row(tuple(row)))
        return found


class _Query:
    """A statement built from optional conditions, numbering its parameters as it goes."""

    def __init__(self, sql: str, *params: Any) -> None:
        """Start from sql, whose placeholders $1.. are params."""
        self.sql = sql
        self.params: list[Any] = list(params)

    def bind(self, value: Any) -> str:
        """Add a parameter; returns its placeholder."""
        self.params.append(value)
        return f"${len(self.params)}"

    def add(self, condition: str, value: Any) -> None:
        """AND a condition whose `{}` is value's placeholder."""
        self.sql += " AND " + condition.format(self.bind(value))


def _column_values(values: UsageValues) -> list[Any]:
    """Sample values as the columns take them: the 0/1 flags as booleans."""
    columns = list(values)
    for index in _FLAG_VALUES:
        if columns[index] is not None:
            columns[index] = bool(columns[index])
    return columns


def _stored_values(values: Sequence[Any]) -> UsageValues:
    """Column values as core.recording compares them: the boolean flags as 0/1."""
    stored = list(values)
    for index in _FLAG_VALUES:
        if stored[index] is not None:
            stored[index] = int(stored[index])
    return tuple(stored)
