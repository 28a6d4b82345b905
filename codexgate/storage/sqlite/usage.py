"""SQLite: the usage_snapshots table and the latest_usage view; record() writes a batch."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from codexgate.core.limits import MAIN_LIMIT
from codexgate.core.models import RequestRecord, Snapshot
from codexgate.core.recording import (
    NewestRow,
    UsageKey,
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
    checked_limit,
    chunks,
    latest_row,
    usage_row,
)
from codexgate.storage.sql import TITLE, TITLES, account_limits, window_column
from codexgate.storage.sqlite.accounts import AccountsMixin
from codexgate.storage.sqlite.columns import CHUNK, multi_row_inserts
from codexgate.storage.sqlite.connection import (
    data_version,
    guarded,
    insert_rows,
    is_file_error,
    next_id,
    roll_back,
    select_in,
)
from codexgate.storage.sqlite.requests import RequestsMixin

LOG = logging.getLogger(__name__)

_INSERT_USAGE: Final = multi_row_inserts("usage_snapshots", USAGE_COLUMNS)

# The key guards against an id that was deleted behind the Store and handed out again.
_CONFIRM_USAGE: Final = (
    "UPDATE usage_snapshots SET confirmed_at = max(confirmed_at, ?) "
    "WHERE id = ? AND account_id = ? AND limit_id = ?"
)


# The newest row of the account and limit `al`, as in the latest_usage view: one backward step
# on the (account, limit, time) index.
_NEWEST_OF_AL: Final = """JOIN usage_snapshots AS s
    ON s.id = (SELECT x.id FROM usage_snapshots AS x
               WHERE x.account_id = al.account_id AND x.limit_id = al.limit_id
               ORDER BY x.captured_at DESC, x.id DESC
               LIMIT 1)"""


def _latest_of(accounts: str, where: str = "") -> str:
    """latest_usage's walk and columns for the account ids that the query `accounts` selects;
    `where` keeps only some of the rows. The view walks every account (its recursive part
    cannot see a WHERE on the outside): this starts the same walk from the given ids."""
    return f"""
WITH RECURSIVE
    chosen (id) AS ({accounts}),
    {account_limits("chosen")},
    clock (now) AS (SELECT (julianday('now') - 2440587.5) * 86400.0)
SELECT {USAGE_SELECT_S}, a.account_key, a.display_name, a.email, a.plan_type,
    clock.now - s.confirmed_at, s.five_hour_resets_at - clock.now,
    s.seven_day_resets_at - clock.now, s.monthly_resets_at - clock.now,
    s.limit_hit_resets_at - clock.now, s.spend_resets_at - clock.now
FROM account_limits AS al
{_NEWEST_OF_AL}
JOIN accounts AS a ON a.id = s.account_id
CROSS JOIN clock
{where}
ORDER BY s.account_id, s.limit_id
"""  # noqa: S608 - the parts are this module's constants


# Some accounts by id (`{marks}` is filled by _select_in); a page of the next :accounts ids after
# :after, for work that walks every account a page at a time.
_LATEST_OF: Final = _latest_of("SELECT id FROM accounts WHERE id IN ({marks})")

_PAGE_OF_ACCOUNTS: Final = "SELECT id FROM accounts WHERE id > :after ORDER BY id LIMIT :accounts"

_PAGE_END: Final = f"SELECT count(*), max(id) FROM ({_PAGE_OF_ACCOUNTS})"  # noqa: S608

# The rows whose stale alert state disagrees with the cutoff: confirmed before it without a
# state (they may fire), or since with one (they re-arm). core/alerts.evaluate_stale decides.
_STALE_CHANGES: Final = (
    "WHERE (s.confirmed_at < :cutoff) <> EXISTS (SELECT 1 FROM alert_state AS st "
    "WHERE st.account_id = s.account_id AND st.limit_id = s.limit_id "
    "AND st.window = :window AND st.rule = :rule)"
)

# The overview in one statement, so that latest_usage is walked once however many accounts
# there are: the summary counts over every account, one page of account ids in the chosen order,
# and the soonest upcoming resets. The rules are views.py's (CardView.max_used, soonest_reset,
# at_limit, sort_cards), written again in SQL so that no page builds a card per account;
# tests/storage/test_store_overview.py checks that both agree on every backend. used and hit are
# the seat's: of its main limit's row when it has one, else of all its rows (core/use_next.py
# seat_limits). Slots count
# only under a label that is not one of the fixed windows (those are already in their own
# columns); used percents are never negative (capture refuses them), so -1 stands for
# "unknown" inside max().
_SLOT: Final = (
    "CASE WHEN {slot}_window NOT IN ("
    + ", ".join(f"'{label}'" for label in FIXED_WINDOWS)
    + ") THEN {slot}_{field} END"
)

_AHEAD: Final = "CASE WHEN {value} > :now THEN {value} ELSE 9e18 END"

# A window's used percent as of :now: 0 once its reset time has passed with no newer report
# (core/windows.py as_of: reset, inferred), else as reported (NULL stays unknown).
_AS_OF: Final = "CASE WHEN ({reset}) <= :now AND ({used}) IS NOT NULL THEN 0 ELSE ({used}) END"

_BY_NAME: Final = "title IS NULL, lower(title), id"

OVERVIEW_ORDERS: Final = {
    "name": _BY_NAME,
    "used": f"used IS NULL, used DESC, {_BY_NAME}",
    "reset": f"soonest IS NULL, soonest, {_BY_NAME}",
}

# The highest used percent of one row's windows, -1 when none is known.
_ROW_USED: Final = (
    "max(coalesce(u1, -1), coalesce(u2, -1), coalesce(u3, -1), coalesce(u4, -1), coalesce(u5, -1))"
)

_OVERVIEW: Final = (
    "\nWITH RECURSIVE\n    "  # noqa: S608 - the parts are this module's constants
    + account_limits("accounts")
    + """,
    latest AS MATERIALIZED (
        SELECT account_id,
            {n1} AS u1, {n2} AS u2, {n3} AS u3, {n4} AS u4, {n5} AS u5,
            five_hour_resets_at AS r1, seven_day_resets_at AS r2, monthly_resets_at AS r3,
            {r4} AS r4, {r5} AS r5,
            limit_hit_type IS NOT NULL
                AND (limit_hit_resets_at IS NULL OR limit_hit_resets_at > :now) AS hit,
            limit_id = '{main}' AS main
        FROM usage_snapshots
        WHERE id IN (
            SELECT (SELECT x.id FROM usage_snapshots AS x
                    WHERE x.account_id = al.account_id AND x.limit_id = al.limit_id
                    ORDER BY x.captured_at DESC, x.id DESC LIMIT 1)
            FROM account_limits AS al WHERE al.limit_id IS NOT NULL
        )
    ),
    per_account AS (
        SELECT account_id,
            nullif(CASE WHEN max(main) THEN max(CASE WHEN main THEN {row_used} END)
                        ELSE max({row_used}) END, -1) AS used,
            nullif(min(min({a1}, {a2}, {a3}, {a4}, {a5})), 9e18) AS soonest,
            CASE WHEN max(main) THEN max(hit AND main) ELSE max(hit) END AS hit
        FROM latest GROUP BY account_id
    ),
    facts AS MATERIALIZED (
        SELECT a.id AS id, {title} AS title, p.used AS used, p.soonest AS soonest,
            coalesce(p.hit OR p.used >= 100, 0) AS at_limit
        FROM accounts AS a LEFT JOIN per_account AS p ON p.account_id = a.id
    ),
    resets (at, account_id) AS (
        SELECT r1, account_id FROM latest UNION ALL SELECT r2, account_id FROM latest
        UNION ALL SELECT r3, account_id FROM latest UNION ALL SELECT r4, account_id FROM latest
        UNION ALL SELECT r5, account_id FROM latest
    )
SELECT 'count', count(*), coalesce(sum(at_limit), 0),
    coalesce(sum(NOT at_limit AND used >= :critical), 0), coalesce(max(id), 0)
FROM facts
UNION ALL
SELECT * FROM (
    SELECT 'page', id, row_number() OVER (ORDER BY {order}) AS position, NULL, NULL
    FROM facts ORDER BY position LIMIT :limit OFFSET :offset
)
UNION ALL
SELECT * FROM (
    SELECT 'reset', r.account_id, r.at, NULL, f.title
    FROM (SELECT DISTINCT at, account_id FROM resets WHERE at > :now
          ORDER BY at, account_id LIMIT :resets) AS r
    JOIN facts AS f ON f.id = r.account_id
)
ORDER BY 1, 3, 2
"""
)

_OVERVIEW_SQL: Final = {
    sort: _OVERVIEW.format(
        n1=_AS_OF.format(used="five_hour_used_percent", reset="five_hour_resets_at"),
        n2=_AS_OF.format(used="seven_day_used_percent", reset="seven_day_resets_at"),
        n3=_AS_OF.format(used="monthly_used_percent", reset="monthly_resets_at"),
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


@dataclass(frozen=True, slots=True)
class _Written:
    """What record()'s transaction committed, for record() to update the caches with."""

    batch: RecordBatch
    data_version: int  # the connection's, as the transaction began
    inserted: int
    confirmed: int
    confirmed_ids: tuple[int, ...]
    snapshots_refused: int


class _Abandoned(Exception):
    """record() was cancelled before its transaction committed: it rolls back."""


def _load_last(conn: sqlite3.Connection, keys: set[UsageKey], batch: RecordBatch) -> None:
    """Load the newest row of each key into batch.last (None where there is none)."""
    for key in keys:
        batch.last[key] = None
    for chunk in chunks(sorted(keys), CHUNK):
        wanted = ", ".join("(?, ?)" for _ in chunk)
        params = [part for key in chunk for part in key]
        rows = conn.execute(
            f"WITH wanted (account_id, limit_id) AS (VALUES {wanted}) "  # noqa: S608
            f"SELECT {USAGE_SELECT_S} FROM wanted AS w JOIN usage_snapshots AS s ON s.id = ("
            "SELECT x.id FROM usage_snapshots AS x "
            "WHERE x.account_id = w.account_id AND x.limit_id = w.limit_id "
            "ORDER BY x.captured_at DESC, x.id DESC LIMIT 1)",
            params,
        ).fetchall()
        for row in rows:
            key = (int(row[ACCOUNT_ID]), str(row[LIMIT_ID]))
            batch.last[key] = NewestRow(
                int(row[ID]),
                tuple(row[FIRST_VALUE:]),
                float(row[CAPTURED_AT]),
                float(row[CONFIRMED_AT]),
            )


class UsageMixin(AccountsMixin, RequestsMixin):
    """Recording a batch, and every read of usage history."""

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
        async with self._lock:
            if self._reopen:
                await self._reconnect()
            abandoned = threading.Event()
            write = partial(self._write_batch, ordered, requests, max_accounts, abandoned)
            try:
                written = await self._on_connection(write)
            except asyncio.CancelledError:
                # The write goes on without us: it rolls back unless it is already committing,
                # and whether it did is not known here, so the caches are read again next time.
                abandoned.set()
                self._data_version = None
                raise
            except BaseException as exc:
                # Rolled back: the caches were left alone and still match the database.
                self._reopen = is_file_error(exc)
                raise
            batch = written.batch
            if written.data_version != self._data_version:
                if self._data_version is not None:
                    LOG.debug("another connection wrote to %s: reloaded the newest rows", self.path)
                self._account_ids.clear()
                self._last.clear()
                self._data_version = written.data_version
            if batch.purged_accounts:
                purged = batch.purged_accounts
                self._last = {k: v for k, v in self._last.items() if k[0] not in purged}
            self._last.update(batch.last)
            self._account_ids.update(batch.account_ids)
        refused = batch.refused
        return RecordResult(
            batch.accounts_created,
            written.inserted,
            written.confirmed,
            len(requests),
            written.confirmed_ids,
            seats_refused=len(refused),
            snapshots_refused=written.snapshots_refused,
            requests_refused=refused_requests(requests, refused),
        )

    def _write_batch(
        self,
        ordered: Sequence[Snapshot],
        requests: Sequence[RequestRecord],
        max_accounts: int | None,
        abandoned: threading.Event,
        conn: sqlite3.Connection,
    ) -> _Written:
        """record()'s transaction, on the connection's thread: it reads the caches, and leaves
        them to record() to update once it has committed."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Holding the write lock, nobody can commit between this check and our writes.
            version = data_version(conn)
            if version == self._data_version:
                account_ids, last = self._account_ids, self._last
            else:  # another connection committed: what the caches say may be out of date
                account_ids, last = {}, {}
            batch = RecordBatch()
            seen = seen_accounts(ordered, requests)
            self._resolve_accounts(conn, account_ids, seen, batch, max_accounts)
            self._attach_accounts(conn, account_ids, unproven_keys(requests, seen), batch)
            kept: Sequence[Snapshot] = ordered
            if batch.refused:
                kept = [s for s in ordered if s.identity.account_key not in batch.refused]
            inserted, confirmed, confirmed_ids = self._write_usage(conn, last, kept, batch)
            if requests:
                self._insert_requests(conn, requests, batch)
            if abandoned.is_set():
                raise _Abandoned
            conn.execute("COMMIT")
        except BaseException:
            roll_back(conn, self.path)
            raise
        return _Written(
            batch, version, inserted, confirmed, confirmed_ids, len(ordered) - len(kept)
        )

    def _write_usage(
        self,
        conn: sqlite3.Connection,
        cached: Mapping[UsageKey, NewestRow | None],
        ordered: Sequence[Snapshot],
        batch: RecordBatch,
    ) -> tuple[int, int, tuple[int, ...]]:
        """Insert changed rows, confirm unchanged ones (core.recording.plan_usage decides).

        cached is the newest-row cache as this batch may trust it. Returns (inserted,
        confirmed, ids of the existing rows whose confirmed_at was set).
        """
        work = self._sampler.samples(ordered, batch.account_ids)
        if not work:
            return 0, 0, ()
        purged = batch.purged_accounts
        keys = {sample.key for sample in work}
        wanted = {key for key in keys if key not in cached or key[0] in purged}
        if wanted:
            _load_last(conn, wanted, batch)
        loaded = batch.last
        known = {key: loaded[key] if key in loaded else cached[key] for key in keys}
        # We hold the write lock, so ids after the current maximum are ours to hand out.
        first_id = next_id(conn, "usage_snapshots")
        plan = plan_usage(work, known, heartbeat=self._heartbeat, next_id=first_id)
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
                    *row.sample.values,
                )
                for row in plan.inserts
            ]
            insert_rows(conn, _INSERT_USAGE, rows)
        confirms = plan.confirms
        confirmed_ids: tuple[int, ...] = ()
        if confirms:
            cursor = conn.executemany(
                _CONFIRM_USAGE,
                [(at, row_id, *key) for key, (row_id, at) in confirms.items()],
            )
            confirmed_ids = tuple(sorted(row_id for row_id, _ in confirms.values()))
            if cursor.rowcount != len(confirms):
                # A row vanished behind our back (deleted by hand): this batch's confirmation
                # of it is lost; reloading the state lets the next report write a fresh row.
                LOG.warning("%s confirmed usage rows were missing", len(confirms) - cursor.rowcount)
                for key in confirms:
                    state.pop(key, None)
                batch.purged_accounts.update(key[0] for key in confirms)
                rows = select_in(
                    conn, "SELECT id FROM usage_snapshots WHERE id IN ({marks})", confirmed_ids
                )
                confirmed_ids = tuple(sorted(int(row[0]) for row in rows))
        return plan.inserted, plan.confirmed, confirmed_ids

    @guarded
    async def latest_usage(self, account_id: int | None = None) -> list[LatestUsageRow]:
        """The newest row per account and limit (of one account if given), by account, limit."""
        sql = LATEST_SELECT
        params: tuple[Any, ...] = ()
        if account_id is not None:
            sql += " WHERE account_id = ?"
            params = (account_id,)
        sql += " ORDER BY account_id, limit_id"
        async with self._lock:
            rows = await self._db.execute_fetchall(sql, params)
        return [latest_row(row) for row in rows]

    @guarded
    async def latest_usage_of(self, account_ids: Sequence[int]) -> list[LatestUsageRow]:
        """latest_usage of the given accounts (unknown ids are skipped), by account, limit."""
        async with self._lock:
            rows = await self._select_in(_LATEST_OF, sorted(set(account_ids)))
        return [latest_row(row) for row in rows]

    @guarded
    async def latest_usage_page(
        self, after_id: int, accounts: int
    ) -> tuple[list[LatestUsageRow], int | None]:
        """latest_usage of the next `accounts` accounts by id after after_id, and the id to read
        the next page after (None once this page reached the last account)."""
        sql = _latest_of(_PAGE_OF_ACCOUNTS)
        return await self._latest_page(sql, {"after": after_id, "accounts": accounts})

    @guarded
    async def stale_changes_page(
        self, after_id: int, accounts: int, cutoff: float, *, window: str, rule: str
    ) -> tuple[list[LatestUsageRow], int | None]:
        """latest_usage_page, keeping the rows confirmed before cutoff that have no alert_state
        (window, rule) and the rows confirmed since that have one."""
        sql = _latest_of(_PAGE_OF_ACCOUNTS, _STALE_CHANGES)
        params = {"after": after_id, "accounts": accounts, "cutoff": cutoff}
        return await self._latest_page(sql, {**params, "window": window, "rule": rule})

    async def _latest_page(
        self, sql: str, params: dict[str, Any]
    ) -> tuple[list[LatestUsageRow], int | None]:
        checked_limit(params["accounts"])
        async with self._lock:
            rows = await self._db.execute_fetchall(sql, params)
            page = {"after": params["after"], "accounts": params["accounts"]}
            ends = await self._db.execute_fetchall(_PAGE_END, page)
        count, last = next(iter(ends))
        done = count < params["accounts"] or last is None
        return [latest_row(row) for row in rows], None if done else int(last)

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
        params = {
            "now": now,
            "critical": critical,
            "offset": checked_limit(offset),
            "limit": checked_limit(limit),
            "resets": checked_limit(resets),
        }
        rows = await self._fetch(sql, params)
        counts = next(row for row in rows if row[0] == "count")
        return OverviewPage(
            accounts=int(counts[1]),
            at_limit=int(counts[2]),
            near_limit=int(counts[3]),
            max_account_id=int(counts[4]),
            account_ids=[int(row[1]) for row in rows if row[0] == "page"],
            resets=[
                UpcomingReset(int(row[2]), int(row[1]), row[4]) for row in rows if row[0] == "reset"
            ],
        )

    @guarded
    async def latest_windows(self) -> list[AccountWindows]:
        """Every account by id with its title and the windows of each limit family's newest row."""
        async with self._lock:
            titles = await self._db.execute_fetchall(TITLES)
            rows = await self._db.execute_fetchall(_LATEST_WINDOWS)
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
        # Only the conditions given, so that SQLite can use the (account, limit, time) index.
        sql = f"SELECT {USAGE_SELECT} FROM usage_snapshots WHERE account_id = ?"  # noqa: S608
        params: list[Any] = [account_id]
        if limit_id is not None:
            sql += " AND limit_id = ?"
            params.append(limit_id)
        if since is not None:
            sql += " AND captured_at >= ?"
            params.append(since)
        if until is not None:
            sql += " AND captured_at < ?"
            params.append(until)
        sql += " ORDER BY captured_at, id LIMIT ?"
        params.append(limit)
        rows = await self._fetch(sql, params)
        return [usage_row(row) for row in rows]

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
        sql = f"SELECT {USAGE_SELECT} FROM usage_snapshots WHERE account_id = ?"  # noqa: S608
        params: list[Any] = [account_id]
        if window is not None:
            column = window_column(window)
            sql += f" AND {column} IS NOT NULL"
        if limit_id is not None:
            sql += " AND limit_id = ?"
            params.append(limit_id)
        if since is not None:
            sql += " AND captured_at >= ?"
            params.append(since)
        if until is not None:
            sql += " AND captured_at < ?"
            params.append(until)
        if after is not None:
            # A row value: with limit_id given, a range on the (account, limit, time) index,
            # whose last column is the rowid id. The plain bound lets it seek without limit_id.
            sql += " AND captured_at >= ? AND (captured_at, id) > (?, ?)"
            params += (after[0], after[0], after[1])
        sql += " ORDER BY captured_at, id LIMIT ?"
        params.append(limit)
        rows = await self._fetch(sql, params)
        return [usage_row(row) for row in rows]

    @guarded
    async def usage_rows(self, ids: Sequence[int]) -> list[UsageRow]:
        """The usage_snapshots rows with these ids (missing ones skipped), by id."""
        sql = f"SELECT {USAGE_SELECT} FROM usage_snapshots WHERE id IN ({{marks}}) ORDER BY id"  # noqa: S608
        async with self._lock:
            rows = await self._select_in(sql, sorted(set(ids)))
        return [usage_row(row) for row in rows]

    @guarded
    async def count_history(self) -> int:
        """The number of usage_snapshots rows."""
        rows = await self._fetch("SELECT count(*) FROM usage_snapshots", ())
        return int(rows[0][0])

    @guarded
    async def recent_history(
        self, account_id: int, limit_id: str, *, since: float, limit: int
    ) -> list[UsageRow]:
        """A limit family's newest rows captured at or after since (at most limit), oldest first."""
        rows = await self._fetch(
            f"SELECT {USAGE_SELECT} FROM usage_snapshots "  # noqa: S608 - constants
            "WHERE account_id = ? AND limit_id = ? AND captured_at >= ? "
            "ORDER BY captured_at DESC, id DESC LIMIT ?",
            (account_id, limit_id, since, checked_limit(limit)),
        )
        return [usage_row(row) for row in reversed(rows)]

    @guarded
    async def recent_histories(
        self, keys: Sequence[tuple[int, str]], *, since: float, limit: int
    ) -> dict[tuple[int, str], list[UsageRow]]:
        """recent_history of each (account id, limit id), read under one hold of the lock.

        One bounded query per key: a page of cards then waits its turn once, not per card.
        """
        sql = (
            f"SELECT {USAGE_SELECT} FROM usage_snapshots "  # noqa: S608 - constants
            "WHERE account_id = ? AND limit_id = ? AND captured_at >= ? "
            "ORDER BY captured_at DESC, id DESC LIMIT ?"
        )
        found: dict[tuple[int, str], list[UsageRow]] = {}
        async with self._lock:
            for account_id, limit_id in dict.fromkeys(keys):
                rows = await self._db.execute_fetchall(
                    sql, (account_id, limit_id, since, checked_limit(limit))
                )
                found[(account_id, limit_id)] = [usage_row(row) for row in reversed(list(rows))]
        return found
