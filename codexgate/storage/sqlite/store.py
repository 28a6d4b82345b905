"""The SQLite store: connection, PRAGMAs, migrations and every SQL statement of codexgate."""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import os
import re
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite

from codexgate import paths
from codexgate.core.models import (
    FIVE_HOUR,
    MONTHLY,
    SEVEN_DAY,
    Identity,
    LimitReport,
    RequestRecord,
    Snapshot,
    Window,
)
from codexgate.core.rows import (
    AccountEvent,
    AccountRow,
    ActivityBucket,
    AlertRow,
    AlertState,
    FeedCursor,
    LatestUsageRow,
    NewAlert,
    OverviewPage,
    RecordResult,
    RequestRow,
    SessionRow,
    UpcomingReset,
    UsageRow,
    WebhookRow,
)
from codexgate.core.windows import (
    COLUMN_PREFIXES,
    FIXED_WINDOWS,
    UNCHANGED_RESET_SECONDS,
)

LOG = logging.getLogger(__name__)

_T = TypeVar("_T")

# SQLite allows 32766 bound variables per statement; stay far below with room for every column.
_CHUNK: Final = 500

_MIGRATION_FILE = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")

# Settings of one connection (WAL mode is kept in the file itself); every open applies them.
_CONNECTION_PRAGMAS: Final = (
    "PRAGMA busy_timeout = 5000",
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = NORMAL",
)
# SQLite's result codes for a file that failed (not a lock, not a full disk): a disk that went
# read-only and was repaired and mounted again is only reached through a new open, since the
# old descriptors keep pointing at the broken mount.
_FILE_ERRORS: Final = frozenset(
    {sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}
)

# The limit family that a report's limit_hit and spend_control are about.
CODEX_LIMIT: Final = "codex"

# The value columns of usage_snapshots, in table order. Two reports are "the same" when these
# are equal (reset times within UNCHANGED_RESET_SECONDS); times, source and http_status do not
# count.
_VALUE_COLUMNS: Final = (
    "limit_name",
    "plan_type",
    "active_limit",
    "rate_limit_reached_type",
    "five_hour_used_percent",
    "five_hour_window_minutes",
    "five_hour_resets_at",
    "seven_day_used_percent",
    "seven_day_window_minutes",
    "seven_day_resets_at",
    "monthly_used_percent",
    "monthly_window_minutes",
    "monthly_resets_at",
    "primary_window",
    "primary_classified_by",
    "primary_used_percent",
    "primary_window_minutes",
    "primary_resets_at",
    "secondary_window",
    "secondary_classified_by",
    "secondary_used_percent",
    "secondary_window_minutes",
    "secondary_resets_at",
    "over_secondary_limit_percent",
    "credits_has_credits",
    "credits_unlimited",
    "credits_balance",
    "limit_hit_type",
    "limit_hit_resets_at",
    "spend_control_reached",
    "spend_limit",
    "spend_used",
    "spend_used_percent",
    "spend_resets_at",
    "spend_source",
)
_RESET_INDEXES: Final = frozenset(
    i for i, name in enumerate(_VALUE_COLUMNS) if name.endswith("_resets_at")
)
# Every usage_snapshots column in table order; UsageRow has the same fields in the same order.
_USAGE_COLUMNS: Final = (
    "id",
    "account_id",
    "captured_at",
    "confirmed_at",
    "source",
    "http_status",
    "limit_id",
    *_VALUE_COLUMNS,
)
# 0/1 columns that UsageRow turns into bools.
_FLAG_INDEXES: Final = (
    _USAGE_COLUMNS.index("credits_has_credits"),
    _USAGE_COLUMNS.index("credits_unlimited"),
    _USAGE_COLUMNS.index("spend_control_reached"),
)
_USAGE_SELECT: Final = ", ".join(_USAGE_COLUMNS)
_USAGE_SELECT_S: Final = ", ".join(f"s.{name}" for name in _USAGE_COLUMNS)
# Positions inside a usage row (a list laid out like _USAGE_COLUMNS).
_ID, _ACCOUNT_ID, _CAPTURED_AT, _CONFIRMED_AT, _LIMIT_ID = 0, 1, 2, 3, 6
_FIRST_VALUE: Final = len(_USAGE_COLUMNS) - len(_VALUE_COLUMNS)

_INSERT_USAGE: Final = (
    f"INSERT INTO usage_snapshots ({_USAGE_SELECT}) "  # noqa: S608 - column names are constants
    f"VALUES ({', '.join('?' for _ in _USAGE_COLUMNS)})"
)
# The key guards against an id that was deleted behind the Store and handed out again.
_CONFIRM_USAGE: Final = (
    "UPDATE usage_snapshots SET confirmed_at = max(confirmed_at, ?) "
    "WHERE id = ? AND account_id = ? AND limit_id = ?"
)

_ACCOUNT_COLUMNS: Final = (
    "id, account_key, chatgpt_account_id, chatgpt_user_id, display_name, email, plan_type, "
    "token_fingerprint, first_seen_at, last_seen_at"
)
# A field takes the batch's value when the batch is at least as new as the row, else it only
# fills a NULL: the newest non-NULL value wins even when batches arrive out of order.
_UPDATE_ACCOUNT: Final = """
UPDATE accounts SET
    chatgpt_account_id = CASE WHEN :last_seen_at >= last_seen_at
        THEN coalesce(:chatgpt_account_id, chatgpt_account_id)
        ELSE coalesce(chatgpt_account_id, :chatgpt_account_id) END,
    chatgpt_user_id = CASE WHEN :last_seen_at >= last_seen_at
        THEN coalesce(:chatgpt_user_id, chatgpt_user_id)
        ELSE coalesce(chatgpt_user_id, :chatgpt_user_id) END,
    email = CASE WHEN :last_seen_at >= last_seen_at
        THEN coalesce(:email, email) ELSE coalesce(email, :email) END,
    plan_type = CASE WHEN :last_seen_at >= last_seen_at
        THEN coalesce(:plan_type, plan_type) ELSE coalesce(plan_type, :plan_type) END,
    token_fingerprint = CASE WHEN :last_seen_at >= last_seen_at
        THEN coalesce(:token_fingerprint, token_fingerprint)
        ELSE coalesce(token_fingerprint, :token_fingerprint) END,
    first_seen_at = min(first_seen_at, :first_seen_at),
    last_seen_at = max(last_seen_at, :last_seen_at)
WHERE id = :id AND account_key = :account_key
"""
_INSERT_ACCOUNT_ROW: Final = "(?, ?, ?, ?, ?, ?, ?, ?)"

# Every requests column in table order; RequestRow has the same fields in the same order.
_REQUEST_COLUMNS: Final = (
    "id",
    "started_at",
    "account_id",
    "method",
    "path",
    "transport",
    "status",
    "model",
    "upstream_request_id",
    "response_id",
    "ttfb_ms",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "error_code",
)
_REQUEST_SELECT: Final = ", ".join(_REQUEST_COLUMNS)
_INSERT_REQUEST: Final = (
    f"INSERT INTO requests ({', '.join(_REQUEST_COLUMNS)}) "  # noqa: S608 - constants
    f"VALUES ({', '.join('?' for _ in _REQUEST_COLUMNS)})"
)

# Row ids are the live feed's positions, so they must never come back. Without AUTOINCREMENT,
# deleting an account that holds the newest rows would let max(id)+1 hand their ids out again:
# delete_account keeps the highest id each table ever had in `settings`, and new ids start
# above it.
_ID_FLOOR_TABLES: Final = ("usage_snapshots", "requests")
_NEXT_ID: Final = {
    table: (
        f"SELECT max(coalesce((SELECT max(id) FROM {table}), 0), "  # noqa: S608 - constants
        "coalesce((SELECT CAST(value AS INTEGER) FROM settings WHERE name = ?), 0)) + 1"
    )
    for table in _ID_FLOOR_TABLES
}
_RAISE_ID_FLOOR: Final = {
    table: (
        "INSERT INTO settings (name, value) "  # noqa: S608 - constants
        f"SELECT ?, CAST(coalesce(max(id), 0) AS TEXT) FROM {table} WHERE true "
        "ON CONFLICT (name) DO UPDATE SET value = CAST(max(CAST(settings.value AS INTEGER), "
        "CAST(excluded.value AS INTEGER)) AS TEXT)"
    )
    for table in _ID_FLOOR_TABLES
}


def _id_floor_setting(table: str) -> str:
    return f"{table}_id_floor"


# Retention. A prune batch raises the floor to the highest id it deleted, so that pruning the
# rows that hold the newest ids (the whole request log, say) never hands those ids out again.
_RAISE_ID_FLOOR_TO: Final = (
    "INSERT INTO settings (name, value) VALUES (?, CAST(? AS TEXT)) "
    "ON CONFLICT (name) DO UPDATE SET value = CAST(max(CAST(settings.value AS INTEGER), "
    "CAST(excluded.value AS INTEGER)) AS TEXT)"
)
# A row of the same account and limit that is newer by (captured_at, id): the row at s is not
# the one latest_usage shows. A probe of the (account, limit, time) index per candidate row.
_NEWER_ROW: Final = (
    "SELECT 1 FROM usage_snapshots AS n WHERE n.account_id = s.account_id "
    "AND n.limit_id = s.limit_id AND n.captured_at >= s.captured_at "
    "AND (n.captured_at, n.id) > (s.captured_at, s.id)"
)
# Each selects its rows oldest first on a time index and deletes at most :limit of them.
_PRUNE_HISTORY: Final = (
    "DELETE FROM usage_snapshots WHERE id IN (SELECT s.id FROM usage_snapshots AS s "  # noqa: S608
    f"WHERE s.captured_at < :before AND EXISTS ({_NEWER_ROW}) "
    "ORDER BY s.captured_at LIMIT :limit) RETURNING id"
)
# A row goes when a newer row of its account and limit lies in the same bucket.
_DOWNSAMPLE_HISTORY: Final = (
    "DELETE FROM usage_snapshots WHERE id IN (SELECT s.id FROM usage_snapshots AS s "  # noqa: S608
    "WHERE s.captured_at >= :since AND s.captured_at < :before "
    f"AND EXISTS ({_NEWER_ROW} "
    "AND n.captured_at < (CAST(s.captured_at / :bucket AS INTEGER) + 1) * :bucket) "
    "ORDER BY s.captured_at LIMIT :limit) RETURNING id"
)
_PRUNE_REQUESTS: Final = (
    "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE started_at < :before "
    "ORDER BY started_at LIMIT :limit) RETURNING id"
)


# history_page(window=...): the used_percent column that must be reported for a row to count.
_WINDOW_COLUMNS: Final = {
    label: f"{prefix}_used_percent" for label, prefix in COLUMN_PREFIXES.items()
}

_LATEST_SELECT: Final = (
    f"SELECT {_USAGE_SELECT}, account_key, display_name, email, account_plan_type, "  # noqa: S608
    "age_seconds, five_hour_reset_in_seconds, seven_day_reset_in_seconds, "
    "monthly_reset_in_seconds, limit_hit_reset_in_seconds, spend_reset_in_seconds "
    "FROM latest_usage"
)

_ALERT_COLUMNS: Final = (
    "id, at, kind, account_id, account, limit_id, window, used_percent, threshold, resets_at, "
    "exhausts_at, message"
)
_INSERT_EVENT: Final = "INSERT INTO account_events (account_id, kind, at) VALUES (?, ?, ?)"


def _account_limits(accounts: str) -> str:
    """The CTE that walks each account of the table or CTE `accounts` (with an `id` column) to
    its limit ids, one index seek per step: the same walk as the latest_usage view's."""
    return f"""account_limits (account_id, limit_id) AS (
        SELECT x.id, (SELECT min(s.limit_id) FROM usage_snapshots AS s WHERE s.account_id = x.id)
        FROM {accounts} AS x
        UNION ALL
        SELECT al.account_id,
               (SELECT min(s.limit_id) FROM usage_snapshots AS s
                WHERE s.account_id = al.account_id AND s.limit_id > al.limit_id)
        FROM account_limits AS al
        WHERE al.limit_id IS NOT NULL
    )"""  # noqa: S608 - the name is one of this module's constants


def _latest_of(accounts: str, where: str = "") -> str:
    """latest_usage's walk and columns for the account ids that the query `accounts` selects;
    `where` keeps only some of the rows. The view walks every account (its recursive part
    cannot see a WHERE on the outside): this starts the same walk from the given ids."""
    return f"""
WITH RECURSIVE
    chosen (id) AS ({accounts}),
    {_account_limits("chosen")},
    clock (now) AS (SELECT (julianday('now') - 2440587.5) * 86400.0)
SELECT {_USAGE_SELECT_S}, a.account_key, a.display_name, a.email, a.plan_type,
    clock.now - s.confirmed_at, s.five_hour_resets_at - clock.now,
    s.seven_day_resets_at - clock.now, s.monthly_resets_at - clock.now,
    s.limit_hit_resets_at - clock.now, s.spend_resets_at - clock.now
FROM account_limits AS al
JOIN usage_snapshots AS s
    ON s.id = (SELECT x.id FROM usage_snapshots AS x
               WHERE x.account_id = al.account_id AND x.limit_id = al.limit_id
               ORDER BY x.captured_at DESC, x.id DESC
               LIMIT 1)
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
# state (they may fire), or since with one (they re-arm). alerts.evaluate_time decides.
_STALE_CHANGES: Final = (
    "WHERE (s.confirmed_at < :cutoff) <> EXISTS (SELECT 1 FROM alert_state AS st "
    "WHERE st.account_id = s.account_id AND st.limit_id = s.limit_id "
    "AND st.window = :window AND st.rule = :rule)"
)

# The overview in one statement, so that latest_usage is walked once however many accounts
# there are: the summary counts over every account, one page of account ids in the chosen order,
# and the soonest upcoming resets. The rules are views.py's (CardView.max_used, soonest_reset,
# at_limit, sort_cards), written again in SQL so that no page builds a card per account;
# tests/test_dashboard.py checks that both agree. Slots count only under a label that is not
# one of the fixed windows (those are already in their own columns); used percents are never
# negative (capture refuses them), so -1 stands for "unknown" inside max().
_SLOT: Final = (
    "CASE WHEN {slot}_window NOT IN ("
    + ", ".join(f"'{label}'" for label in FIXED_WINDOWS)
    + ") THEN {slot}_{field} END"
)
_AHEAD: Final = "CASE WHEN {value} > :now THEN {value} ELSE 9e18 END"
_TITLE: Final = "coalesce(nullif(a.display_name, ''), nullif(a.email, ''))"
_BY_NAME: Final = "title IS NULL, lower(title), id"
OVERVIEW_ORDERS: Final = {
    "name": _BY_NAME,
    "used": f"used IS NULL, used DESC, {_BY_NAME}",
    "reset": f"soonest IS NULL, soonest, {_BY_NAME}",
}
_OVERVIEW: Final = (
    "\nWITH RECURSIVE\n    "  # noqa: S608 - the parts are this module's constants
    + _account_limits("accounts")
    + """,
    latest AS MATERIALIZED (
        SELECT account_id,
            five_hour_used_percent AS u1, seven_day_used_percent AS u2,
            monthly_used_percent AS u3, {u4} AS u4, {u5} AS u5,
            five_hour_resets_at AS r1, seven_day_resets_at AS r2, monthly_resets_at AS r3,
            {r4} AS r4, {r5} AS r5,
            limit_hit_type IS NOT NULL
                AND (limit_hit_resets_at IS NULL OR limit_hit_resets_at > :now) AS hit
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
            nullif(max(max(coalesce(u1, -1), coalesce(u2, -1), coalesce(u3, -1),
                           coalesce(u4, -1), coalesce(u5, -1))), -1) AS used,
            nullif(min(min({a1}, {a2}, {a3}, {a4}, {a5})), 9e18) AS soonest,
            max(hit) AS hit
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
        u4=_SLOT.format(slot="primary", field="used_percent"),
        u5=_SLOT.format(slot="secondary", field="used_percent"),
        r4=_SLOT.format(slot="primary", field="resets_at"),
        r5=_SLOT.format(slot="secondary", field="resets_at"),
        **{f"a{i}": _AHEAD.format(value=f"r{i}") for i in range(1, 6)},
        title=_TITLE,
        order=order,
    )
    for sort, order in OVERVIEW_ORDERS.items()
}


class StoreError(Exception):
    """The database cannot be opened or migrated; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class _Migration:
    """One numbered migration file, read."""

    number: int
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class _Last:
    """Throttle state of one (account, limit): the newest row as far as this Store knows."""

    row_id: int
    values: tuple[Any, ...]  # of the last inserted row, laid out like _VALUE_COLUMNS
    captured_at: float
    confirmed_at: float


@dataclass(slots=True)
class _SeenAccount:
    """What one batch says about one account: its newest non-NULL fields and time span."""

    account_key: str
    first_seen_at: float
    last_seen_at: float
    chatgpt_account_id: str | None = None
    chatgpt_user_id: str | None = None
    email: str | None = None
    plan_type: str | None = None
    token_fingerprint: str | None = None

    def params(self, account_id: int) -> dict[str, Any]:
        """Named parameters for _UPDATE_ACCOUNT."""
        return {
            "id": account_id,
            "account_key": self.account_key,
            "chatgpt_account_id": self.chatgpt_account_id,
            "chatgpt_user_id": self.chatgpt_user_id,
            "email": self.email,
            "plan_type": self.plan_type,
            "token_fingerprint": self.token_fingerprint,
            "first_seen_at": self.first_seen_at,
            "last_seen_at": self.last_seen_at,
        }


@dataclass(slots=True)
class _Batch:
    """Changes one record() call makes to the Store's caches, applied only after COMMIT."""

    account_ids: dict[str, int] = field(default_factory=dict)
    purged_accounts: set[int] = field(default_factory=set)  # reload their throttle state
    last: dict[tuple[int, str], _Last | None] = field(default_factory=dict)
    accounts_created: int = 0
    refused: set[str] = field(default_factory=set)  # new account keys beyond max_accounts


class Store:
    """One aiosqlite connection (the only writer) and the statements codexgate runs on it."""

    def __init__(self, db: aiosqlite.Connection, path: Path, heartbeat_seconds: float) -> None:
        """Wrap an open, migrated connection; use Store.open()."""
        self.path = path
        self._db = db
        self._heartbeat = heartbeat_seconds
        # One connection cannot run two transactions at once: every use takes this lock.
        self._lock = asyncio.Lock()
        self._account_ids: dict[str, int] = {}  # account_key -> accounts.id
        # (account_id, limit_id) -> newest row; None = no row in the database. A key that is
        # absent has not been looked up since start.
        self._last: dict[tuple[int, str], _Last | None] = {}
        self._reopen = False  # a write failed on the file itself: open it again first

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        migrations: Path | None = None,
        heartbeat_seconds: float = 300.0,
    ) -> Store:
        """Open (creating if needed, private to this user) and migrate the database at path."""
        folder = migrations if migrations is not None else paths.migrations_dir()
        scripts = await asyncio.to_thread(_read_migrations, folder)
        try:
            await asyncio.to_thread(_create_private_file, path)
            db = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        try:
            store = cls(db, path, heartbeat_seconds)
            await store._prepare(scripts)
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        """Close the connection; the Store cannot be used afterwards."""
        async with self._lock:
            await self._db.close()

    async def schema_version(self) -> int:
        """The database's PRAGMA user_version: the number of the last migration applied."""
        async with self._lock:
            return await self._user_version()

    # -- opening and migrations -------------------------------------------------------------

    async def _prepare(self, scripts: Sequence[_Migration]) -> None:
        """Set the PRAGMAs and apply the migrations; refuse a database newer than the code."""
        latest = scripts[-1].number if scripts else 0
        try:
            for pragma in _CONNECTION_PRAGMAS:
                await self._db.execute(pragma)
            # Read before anything writes: a refused database must be left exactly as it was.
            version = await self._user_version()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        if version > latest:
            raise StoreError(
                f"database schema version {version} is newer than this codexgate supports "
                f"({latest}); upgrade codexgate or use another --db"
            )
        try:
            rows = await self._db.execute_fetchall("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        mode = next(iter(rows))[0]
        if mode != "wal":
            LOG.warning("database %s stays in journal mode %s, not WAL", self.path, mode)
        for script in scripts:
            if script.number > version:
                await self._apply(script)

    async def _apply(self, script: _Migration) -> None:
        """Run one migration file and set user_version, all in one transaction."""
        try:
            await self._db.execute("BEGIN IMMEDIATE")
            # Another process may have applied it while we waited for the write lock.
            if await self._user_version() >= script.number:
                await self._db.rollback()
                return
            for statement in _split_statements(script.sql):
                await self._db.execute(statement)
            # PRAGMA takes no bound parameters; the number comes from the file name's digits.
            await self._db.execute(f"PRAGMA user_version = {script.number:d}")
            await self._db.execute("COMMIT")
        except BaseException as exc:
            await self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"migration {script.name} failed: {exc}") from exc
            raise
        LOG.info("applied migration %s to %s", script.name, self.path)

    async def _rollback(self) -> None:
        """Roll back the open transaction, if any, without hiding the error that led here."""
        try:
            await self._db.rollback()  # a no-op when no transaction is open
        except (sqlite3.Error, ValueError):
            LOG.warning("rollback failed on %s", self.path, exc_info=True)

    async def _reconnect(self) -> None:
        """Open the file again (caller holds the lock); the old connection goes once this worked."""
        # mode=rw: a file that vanished must fail here, not come back as an empty database.
        uri = f"{self.path.absolute().as_uri()}?mode=rw"
        db = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        try:
            for pragma in _CONNECTION_PRAGMAS:
                await db.execute(pragma)
        except BaseException:
            await db.close()
            raise
        old, self._db = self._db, db
        self._reopen = False
        # A repaired file may lack what the caches remember: look everything up again.
        self._account_ids.clear()
        self._last.clear()
        try:
            await old.close()
        except sqlite3.Error:
            LOG.warning("closing the failed connection to %s failed", self.path, exc_info=True)
        LOG.debug("reopened the database %s after a file error", self.path)

    async def _user_version(self) -> int:
        """Read PRAGMA user_version (caller holds the lock or is opening)."""
        rows = await self._db.execute_fetchall("PRAGMA user_version")
        return int(next(iter(rows))[0])

    async def _next_id(self, table: str) -> int:
        """The first id this transaction may hand out in table (caller holds the lock)."""
        rows = await self._db.execute_fetchall(_NEXT_ID[table], (_id_floor_setting(table),))
        return int(next(iter(rows))[0])

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (caller holds the lock)."""
        try:
            await self._db.execute("BEGIN IMMEDIATE")
            yield
            await self._db.execute("COMMIT")
        except BaseException:
            await self._rollback()
            raise

    # -- settings ---------------------------------------------------------------------------

    async def get_setting(self, name: str) -> str | None:
        """The value stored under name, or None."""
        rows = await self._fetch("SELECT value FROM settings WHERE name = ?", (name,))
        return next((str(row[0]) for row in rows), None)

    async def set_setting(self, name: str, value: str) -> None:
        """Store value under name, replacing what was there."""
        async with self._lock, self._transaction():
            await self._db.execute(
                "INSERT INTO settings (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    async def delete_setting(self, name: str) -> None:
        """Remove the value under name, if there is one."""
        async with self._lock, self._transaction():
            await self._db.execute("DELETE FROM settings WHERE name = ?", (name,))

    async def set_setting_if_absent(self, name: str, value: str) -> str:
        """Store value under name unless a value is there; return the stored value.

        Two processes starting at once both get the value of whichever wrote first.
        """
        async with self._lock, self._transaction():
            await self._db.execute(
                "INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)", (name, value)
            )
            rows = await self._db.execute_fetchall(
                "SELECT value FROM settings WHERE name = ?", (name,)
            )
        return str(next(iter(rows))[0])

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(
        self, id_sha256: str, created_at: float, expires_at: float, *, keep: int
    ) -> None:
        """Store a new session; drop expired ones, and the oldest beyond the newest `keep`."""
        async with self._lock, self._transaction():
            await self._db.execute("DELETE FROM sessions WHERE expires_at <= ?", (created_at,))
            await self._db.execute(
                "INSERT INTO sessions (id_sha256, created_at, expires_at, last_used_at) "
                "VALUES (?, ?, ?, ?)",
                (id_sha256, created_at, expires_at, created_at),
            )
            await self._db.execute(
                "DELETE FROM sessions WHERE id_sha256 IN (SELECT id_sha256 FROM sessions "
                "ORDER BY created_at DESC, id_sha256 LIMIT -1 OFFSET ?)",
                (keep,),
            )

    async def session(self, id_sha256: str) -> SessionRow | None:
        """The session whose cookie hashes to id_sha256, expired or not; None when there is none."""
        rows = await self._fetch(
            "SELECT id_sha256, created_at, expires_at, last_used_at FROM sessions "
            "WHERE id_sha256 = ?",
            (id_sha256,),
        )
        return next((SessionRow(str(r[0]), r[1], r[2], r[3]) for r in rows), None)

    async def touch_session(self, id_sha256: str, at: float) -> None:
        """Record that the session signed a request at `at`."""
        async with self._lock, self._transaction():
            await self._db.execute(
                "UPDATE sessions SET last_used_at = max(last_used_at, ?) WHERE id_sha256 = ?",
                (at, id_sha256),
            )

    async def delete_session(self, id_sha256: str) -> bool:
        """End one session; whether it existed."""
        async with self._lock, self._transaction():
            cursor = await self._db.execute(
                "DELETE FROM sessions WHERE id_sha256 = ?", (id_sha256,)
            )
        return cursor.rowcount > 0

    async def delete_sessions(self) -> int:
        """End every session; how many there were."""
        async with self._lock, self._transaction():
            cursor = await self._db.execute("DELETE FROM sessions")
        return cursor.rowcount

    # -- recording --------------------------------------------------------------------------

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
        snapshots: list[Snapshot] = []
        requests: list[RequestRecord] = []  # in the order given
        for item in items:
            if isinstance(item, Snapshot):
                snapshots.append(item)
            else:
                requests.append(item)
        # Time order inside the batch, whatever order the queue delivered them in.
        ordered = sorted(snapshots, key=lambda snapshot: snapshot.captured_at)
        async with self._lock:
            if self._reopen:
                await self._reconnect()
            batch = _Batch()
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                seen = _seen_accounts(ordered, requests)
                await self._resolve_accounts(seen, batch, max_accounts)
                await self._attach_accounts(_unproven_keys(requests, seen), batch)
                kept = [s for s in ordered if s.identity.account_key not in batch.refused]
                inserted, confirmed, confirmed_ids = await self._write_usage(kept, batch)
                if requests:
                    first_id = await self._next_id("requests")
                    rows = _request_rows(requests, batch)
                    await self._db.executemany(
                        _INSERT_REQUEST, [(first_id + n, *row) for n, row in enumerate(rows)]
                    )
                await self._db.execute("COMMIT")
            except BaseException as exc:
                # Nothing of this batch reached the caches: they still match the database.
                await self._rollback()
                self._reopen = _is_file_error(exc)
                raise
            if batch.purged_accounts:
                purged = batch.purged_accounts
                self._last = {k: v for k, v in self._last.items() if k[0] not in purged}
            self._last.update(batch.last)
            self._account_ids.update(batch.account_ids)
        refused = batch.refused
        return RecordResult(
            batch.accounts_created,
            inserted,
            confirmed,
            len(requests),
            confirmed_ids,
            seats_refused=len(refused),
            snapshots_refused=len(ordered) - len(kept),
            requests_refused=sum(
                1 for r in requests if r.identity is not None and r.identity.account_key in refused
            ),
        )

    async def _attach_accounts(self, keys: Sequence[str], batch: _Batch) -> None:
        """Put the ids of the accounts that exist among keys into batch.account_ids, as they are."""
        if not keys:
            return
        rows = await self._select_in(
            "SELECT account_key, id FROM accounts WHERE account_key IN ({marks})", keys
        )
        for key, account_id in rows:
            batch.account_ids[str(key)] = int(account_id)
            if self._account_ids.get(str(key)) != account_id:
                # The id may have belonged to a deleted account before.
                batch.purged_accounts.add(int(account_id))

    async def _resolve_accounts(
        self, seen: dict[str, _SeenAccount], batch: _Batch, max_accounts: int | None
    ) -> None:
        """Upsert the batch's accounts and put every account_key -> id into batch.account_ids.

        New accounts beyond max_accounts are not created: their keys go to batch.refused.
        """
        cached = {key: self._account_ids[key] for key in seen if key in self._account_ids}
        if cached:
            params = [seen[key].params(account_id) for key, account_id in cached.items()]
            cursor = await self._db.executemany(_UPDATE_ACCOUNT, params)
            if cursor.rowcount == len(cached):
                batch.account_ids.update(cached)
            else:
                # A row was deleted or replaced behind the cache: look these keys up again and
                # forget their throttle state, whose rows went with the account.
                LOG.info("account cache out of date; reloading %s accounts", len(cached))
                batch.purged_accounts.update(cached.values())
        missing = [key for key in seen if key not in batch.account_ids]
        if not missing:
            return
        known = await self._select_in(
            "SELECT account_key, id FROM accounts WHERE account_key IN ({marks})", missing
        )
        found = {str(key): int(account_id) for key, account_id in known}
        if found:
            params = [seen[key].params(account_id) for key, account_id in found.items()]
            await self._db.executemany(_UPDATE_ACCOUNT, params)
        created: dict[str, int] = {}
        new = [seen[key] for key in missing if key not in found]
        if new and max_accounts is not None:
            rows = await self._db.execute_fetchall("SELECT count(*) FROM accounts")
            room = max(0, max_accounts - int(next(iter(rows))[0]))
            batch.refused.update(account.account_key for account in new[room:])
            new = new[:room]
        for chunk_seen in _chunks(new, _CHUNK):
            values: list[Any] = []
            for account in chunk_seen:
                values += (
                    account.account_key,
                    account.chatgpt_account_id,
                    account.chatgpt_user_id,
                    account.email,
                    account.plan_type,
                    account.token_fingerprint,
                    account.first_seen_at,
                    account.last_seen_at,
                )
            rows = await self._db.execute_fetchall(
                "INSERT INTO accounts (account_key, chatgpt_account_id, chatgpt_user_id, email, "  # noqa: S608
                "plan_type, token_fingerprint, first_seen_at, last_seen_at) VALUES "
                + ", ".join(_INSERT_ACCOUNT_ROW for _ in chunk_seen)
                + " RETURNING account_key, id",
                values,
            )
            created.update((str(key), int(account_id)) for key, account_id in rows)
        if created:
            now = time.time()
            await self._db.executemany(
                _INSERT_EVENT,
                [(account_id, "created", now) for account_id in sorted(created.values())],
            )
        batch.accounts_created = len(created)
        batch.account_ids.update(found)
        batch.account_ids.update(created)
        # An id read from the database may have belonged to a deleted account before.
        batch.purged_accounts.update(found.values())
        batch.purged_accounts.update(created.values())

    async def _write_usage(
        self, ordered: Sequence[Snapshot], batch: _Batch
    ) -> tuple[int, int, tuple[int, ...]]:
        """Insert changed rows, confirm unchanged ones.

        Returns (inserted, confirmed, ids of the existing rows whose confirmed_at was set).
        """
        work: list[tuple[tuple[int, str], list[Any]]] = []
        for snapshot in ordered:
            account_id = batch.account_ids[snapshot.identity.account_key]
            for limit in _limits(snapshot):
                row = _usage_row(account_id, snapshot, limit)
                work.append(((account_id, limit.limit_id), row))
        if not work:
            return 0, 0, ()
        purged = batch.purged_accounts
        wanted = {key for key, _ in work if key not in self._last or key[0] in purged}
        if wanted:
            await self._load_last(wanted, batch)
        # We hold the write lock, so ids after the current maximum are ours to hand out.
        next_id = await self._next_id("usage_snapshots")
        inserts: list[list[Any]] = []
        pending: dict[tuple[int, str], list[Any]] = {}  # the newest row inserted per key
        confirms: dict[tuple[int, str], tuple[float, int, int, str]] = {}
        state = batch.last
        inserted = confirmed = 0
        for key, row in work:
            last = state[key] if key in state else self._last[key]
            captured_at: float = row[_CAPTURED_AT]
            values = tuple(row[_FIRST_VALUE:])
            if (
                last is not None
                and captured_at - last.captured_at < self._heartbeat
                and _same_values(last.values, values)
            ):
                confirmed_at = max(last.confirmed_at, captured_at)
                written = pending.get(key)
                if written is not None:  # inserted by this batch: not in the table yet
                    written[_CONFIRMED_AT] = confirmed_at
                else:
                    confirms[key] = (confirmed_at, last.row_id, *key)
                state[key] = _Last(last.row_id, last.values, last.captured_at, confirmed_at)
                confirmed += 1
                continue
            if last is not None and captured_at < last.captured_at:
                # Never write a row older than the newest one: the newest must stay current.
                captured_at = row[_CAPTURED_AT] = row[_CONFIRMED_AT] = last.captured_at
            row[_ID] = next_id
            inserts.append(row)
            pending[key] = row
            state[key] = _Last(next_id, values, captured_at, captured_at)
            next_id += 1
            inserted += 1
        if inserts:
            await self._db.executemany(_INSERT_USAGE, inserts)
        confirmed_ids: tuple[int, ...] = ()
        if confirms:
            cursor = await self._db.executemany(_CONFIRM_USAGE, list(confirms.values()))
            confirmed_ids = tuple(sorted(confirm[1] for confirm in confirms.values()))
            if cursor.rowcount != len(confirms):
                # A row vanished behind our back (deleted by hand): this batch's confirmation
                # of it is lost; reloading the state lets the next report write a fresh row.
                LOG.warning("%s confirmed usage rows were missing", len(confirms) - cursor.rowcount)
                for key in confirms:
                    state.pop(key, None)
                batch.purged_accounts.update(key[0] for key in confirms)
                confirmed_ids = await self._existing_usage_ids(confirmed_ids)
        return inserted, confirmed, confirmed_ids

    async def _existing_usage_ids(self, ids: Sequence[int]) -> tuple[int, ...]:
        """The ids of usage_snapshots that exist, ascending."""
        rows = await self._select_in("SELECT id FROM usage_snapshots WHERE id IN ({marks})", ids)
        return tuple(sorted(int(row[0]) for row in rows))

    async def _select_in(self, sql: str, values: Sequence[Any]) -> list[Any]:
        """Run sql, whose `{marks}` is an IN list, over values in chunks (caller holds the lock).

        SQLite limits the bound variables of one statement, so long lists take several.
        """
        rows: list[Any] = []
        for chunk in _chunks(values, _CHUNK):
            marks = ", ".join("?" for _ in chunk)
            rows.extend(await self._db.execute_fetchall(sql.format(marks=marks), chunk))
        return rows

    async def _load_last(self, keys: set[tuple[int, str]], batch: _Batch) -> None:
        """Load the newest row of each key into batch.last (None where there is none)."""
        for key in keys:
            batch.last[key] = None
        for chunk in _chunks(sorted(keys), _CHUNK):
            wanted = ", ".join("(?, ?)" for _ in chunk)
            params = [part for key in chunk for part in key]
            rows = await self._db.execute_fetchall(
                f"WITH wanted (account_id, limit_id) AS (VALUES {wanted}) "  # noqa: S608
                f"SELECT {_USAGE_SELECT_S} FROM wanted AS w JOIN usage_snapshots AS s ON s.id = ("
                "SELECT x.id FROM usage_snapshots AS x "
                "WHERE x.account_id = w.account_id AND x.limit_id = w.limit_id "
                "ORDER BY x.captured_at DESC, x.id DESC LIMIT 1)",
                params,
            )
            for row in rows:
                key = (int(row[_ACCOUNT_ID]), str(row[_LIMIT_ID]))
                batch.last[key] = _Last(
                    int(row[_ID]),
                    tuple(row[_FIRST_VALUE:]),
                    float(row[_CAPTURED_AT]),
                    float(row[_CONFIRMED_AT]),
                )

    # -- reading ----------------------------------------------------------------------------

    async def accounts(self) -> list[AccountRow]:
        """Every account, oldest first."""
        async with self._lock:
            rows = await self._db.execute_fetchall(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY id"  # noqa: S608
            )
        return [AccountRow(*row) for row in rows]

    async def account(self, account_id: int) -> AccountRow | None:
        """One account by id, or None."""
        async with self._lock:
            rows = await self._db.execute_fetchall(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?",  # noqa: S608
                (account_id,),
            )
        return next((AccountRow(*row) for row in rows), None)

    async def latest_usage(self, account_id: int | None = None) -> list[LatestUsageRow]:
        """The newest row per account and limit (of one account if given), by account, limit."""
        sql = _LATEST_SELECT
        params: tuple[Any, ...] = ()
        if account_id is not None:
            sql += " WHERE account_id = ?"
            params = (account_id,)
        sql += " ORDER BY account_id, limit_id"
        async with self._lock:
            rows = await self._db.execute_fetchall(sql, params)
        return [_latest(row) for row in rows]

    async def latest_usage_of(self, account_ids: Sequence[int]) -> list[LatestUsageRow]:
        """latest_usage of the given accounts (unknown ids are skipped), by account, limit."""
        async with self._lock:
            rows = await self._select_in(_LATEST_OF, sorted(set(account_ids)))
        return [_latest(row) for row in rows]

    async def latest_usage_page(
        self, after_id: int, accounts: int
    ) -> tuple[list[LatestUsageRow], int | None]:
        """latest_usage of the next `accounts` accounts by id after after_id, and the id to read
        the next page after (None once this page reached the last account)."""
        sql = _latest_of(_PAGE_OF_ACCOUNTS)
        return await self._latest_page(sql, {"after": after_id, "accounts": accounts})

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
        _checked_limit(params["accounts"])
        async with self._lock:
            rows = await self._db.execute_fetchall(sql, params)
            page = {"after": params["after"], "accounts": params["accounts"]}
            ends = await self._db.execute_fetchall(_PAGE_END, page)
        count, last = next(iter(ends))
        done = count < params["accounts"] or last is None
        return [_latest(row) for row in rows], None if done else int(last)

    async def accounts_after(self, after_id: int, limit: int) -> list[AccountRow]:
        """At most limit accounts with an id above after_id, by id (a keyset page)."""
        async with self._lock:
            rows = await self._db.execute_fetchall(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
                (after_id, _checked_limit(limit)),
            )
        return [AccountRow(*row) for row in rows]

    async def accounts_of(self, account_ids: Sequence[int]) -> list[AccountRow]:
        """The accounts with these ids (unknown ids are skipped), by id."""
        sql = f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id IN ({{marks}}) ORDER BY id"  # noqa: S608
        async with self._lock:
            rows = await self._select_in(sql, sorted(set(account_ids)))
        return [AccountRow(*row) for row in rows]

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
            "offset": _checked_limit(offset),
            "limit": _checked_limit(limit),
            "resets": _checked_limit(resets),
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
        sql = f"SELECT {_USAGE_SELECT} FROM usage_snapshots WHERE account_id = ?"  # noqa: S608
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
        return [_usage(row) for row in rows]

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
        sql = f"SELECT {_USAGE_SELECT} FROM usage_snapshots WHERE account_id = ?"  # noqa: S608
        params: list[Any] = [account_id]
        if window is not None:
            column = _WINDOW_COLUMNS.get(window)
            if column is None:
                raise ValueError(f"unknown window {window!r}: use one of {sorted(_WINDOW_COLUMNS)}")
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
        return [_usage(row) for row in rows]

    async def usage_rows(self, ids: Sequence[int]) -> list[UsageRow]:
        """The usage_snapshots rows with these ids (missing ones skipped), by id."""
        sql = f"SELECT {_USAGE_SELECT} FROM usage_snapshots WHERE id IN ({{marks}}) ORDER BY id"  # noqa: S608
        async with self._lock:
            rows = await self._select_in(sql, sorted(set(ids)))
        return [_usage(row) for row in rows]

    async def count_history(self) -> int:
        """The number of usage_snapshots rows."""
        rows = await self._fetch("SELECT count(*) FROM usage_snapshots", ())
        return int(rows[0][0])

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
        sql = f"SELECT {_REQUEST_SELECT} FROM requests"  # noqa: S608 - column names are constants
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

    async def count_requests(self) -> int:
        """The number of requests rows."""
        rows = await self._fetch("SELECT count(*) FROM requests", ())
        return int(rows[0][0])

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

    # -- feed replay ------------------------------------------------------------------------

    async def usage_after(self, after_id: int, limit: int = 500) -> list[UsageRow]:
        """usage_snapshots rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            f"SELECT {_USAGE_SELECT} FROM usage_snapshots WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (after_id, _checked_limit(limit)),
        )
        return [_usage(row) for row in rows]

    async def requests_after(self, after_id: int, limit: int = 500) -> list[RequestRow]:
        """requests rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            f"SELECT {_REQUEST_SELECT} FROM requests WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (after_id, _checked_limit(limit)),
        )
        return [RequestRow(*row) for row in rows]

    async def account_events_after(self, after_id: int, limit: int = 500) -> list[AccountEvent]:
        """account_events rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            "SELECT id, account_id, kind, at FROM account_events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, _checked_limit(limit)),
        )
        return [AccountEvent(*row) for row in rows]

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

    async def alerts_after(self, after_id: int, limit: int = 500) -> list[AlertRow]:
        """alerts rows with id > after_id, by id, at most limit."""
        rows = await self._fetch(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (after_id, _checked_limit(limit)),
        )
        return [AlertRow(*row) for row in rows]

    # -- alerts -------------------------------------------------------------------------------

    async def alerts(
        self, *, account_id: int | None = None, before_id: int | None = None, limit: int = 50
    ) -> list[AlertRow]:
        """Alerts newest first (by id), optionally one account's, before an id, at most limit."""
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"  # noqa: S608 - column names are constants
        conditions: list[str] = []
        params: list[Any] = []
        if account_id is not None:
            conditions.append("account_id = ?")
            params.append(account_id)
        if before_id is not None:
            conditions.append("id < ?")
            params.append(before_id)
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(_checked_limit(limit))
        return [AlertRow(*row) for row in await self._fetch(sql, params)]

    async def alert_states(self) -> list[AlertState]:
        """Every rule's state: what has fired for the current crossings."""
        rows = await self._fetch(
            "SELECT account_id, limit_id, window, rule, period, fired_at FROM alert_state", ()
        )
        return [AlertState(*row) for row in rows]

    async def record_alerts(
        self,
        fired: Sequence[NewAlert],
        states: Sequence[AlertState],
        cleared: Sequence[tuple[int, str, str, str]],
    ) -> list[AlertRow]:
        """Write fired alerts, set rule states and clear others, in one transaction."""
        if not (fired or states or cleared):
            return []
        async with self._lock, self._transaction():
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
                    f"RETURNING {_ALERT_COLUMNS}",
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
            return written

    async def webhooks(self) -> list[WebhookRow]:
        """The webhooks added through the API, by id."""
        rows = await self._fetch(
            "SELECT id, url, format, name, created_at FROM webhooks ORDER BY id", ()
        )
        return [WebhookRow(*row) for row in rows]

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

    async def delete_webhook(self, webhook_id: int) -> bool:
        """Remove a webhook added through the API; False if there is no such id."""
        async with self._lock, self._transaction():
            cursor = await self._db.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
            return cursor.rowcount > 0

    async def recent_history(
        self, account_id: int, limit_id: str, *, since: float, limit: int
    ) -> list[UsageRow]:
        """A limit family's newest rows captured at or after since (at most limit), oldest first."""
        rows = await self._fetch(
            f"SELECT {_USAGE_SELECT} FROM usage_snapshots "  # noqa: S608 - constants
            "WHERE account_id = ? AND limit_id = ? AND captured_at >= ? "
            "ORDER BY captured_at DESC, id DESC LIMIT ?",
            (account_id, limit_id, since, _checked_limit(limit)),
        )
        return [_usage(row) for row in reversed(rows)]

    async def recent_histories(
        self, keys: Sequence[tuple[int, str]], *, since: float, limit: int
    ) -> dict[tuple[int, str], list[UsageRow]]:
        """recent_history of each (account id, limit id), read under one hold of the lock.

        One bounded query per key: a page of cards then waits its turn once, not per card.
        """
        sql = (
            f"SELECT {_USAGE_SELECT} FROM usage_snapshots "  # noqa: S608 - constants
            "WHERE account_id = ? AND limit_id = ? AND captured_at >= ? "
            "ORDER BY captured_at DESC, id DESC LIMIT ?"
        )
        found: dict[tuple[int, str], list[UsageRow]] = {}
        async with self._lock:
            for account_id, limit_id in dict.fromkeys(keys):
                rows = await self._db.execute_fetchall(
                    sql, (account_id, limit_id, since, _checked_limit(limit))
                )
                found[(account_id, limit_id)] = [_usage(row) for row in reversed(list(rows))]
        return found

    # -- account management -----------------------------------------------------------------

    async def create_account(
        self, identity: Identity, display_name: str | None, now: float
    ) -> tuple[AccountRow, bool]:
        """Add the account of identity, or update it if its account_key exists: (row, created).

        A new account is first and last seen at now. An existing one takes identity's
        non-NULL fields and display_name unless it is None; its seen times do not move (they
        follow traffic). Writes a 'created' or 'updated' account event at now.
        """
        params = {
            "account_key": identity.account_key,
            "chatgpt_account_id": identity.chatgpt_account_id,
            "chatgpt_user_id": identity.chatgpt_user_id,
            "display_name": display_name,
            "email": identity.email,
            "plan_type": identity.plan_type,
            "token_fingerprint": identity.token_fingerprint,
            "now": now,
        }
        async with self._lock:
            async with self._transaction():
                rows = await self._db.execute_fetchall(
                    "INSERT INTO accounts (account_key, chatgpt_account_id, chatgpt_user_id, "  # noqa: S608
                    "display_name, email, plan_type, token_fingerprint, first_seen_at, "
                    "last_seen_at) VALUES (:account_key, :chatgpt_account_id, :chatgpt_user_id, "
                    ":display_name, :email, :plan_type, :token_fingerprint, :now, :now) "
                    "ON CONFLICT (account_key) DO NOTHING "
                    f"RETURNING {_ACCOUNT_COLUMNS}",
                    params,
                )
                created = bool(rows)
                if not created:
                    rows = await self._db.execute_fetchall(
                        "UPDATE accounts SET "  # noqa: S608
                        "chatgpt_account_id = coalesce(:chatgpt_account_id, chatgpt_account_id), "
                        "chatgpt_user_id = coalesce(:chatgpt_user_id, chatgpt_user_id), "
                        "display_name = coalesce(:display_name, display_name), "
                        "email = coalesce(:email, email), "
                        "plan_type = coalesce(:plan_type, plan_type), "
                        "token_fingerprint = coalesce(:token_fingerprint, token_fingerprint) "
                        f"WHERE account_key = :account_key RETURNING {_ACCOUNT_COLUMNS}",
                        params,
                    )
                row = AccountRow(*next(iter(rows)))
                await self._db.execute(
                    _INSERT_EVENT, (row.id, "created" if created else "updated", now)
                )
            if created:
                # The id may have belonged to a deleted account: forget its throttle state.
                self._last = {k: v for k, v in self._last.items() if k[0] != row.id}
            self._account_ids[row.account_key] = row.id
        return row, created

    async def update_account(
        self, account_id: int, *, display_name: str | None, now: float | None = None
    ) -> AccountRow | None:
        """Set (or clear, with None) an account's display name and write an 'updated' event.

        Returns the updated row, or None (and writes nothing) if there is no such id. now is
        the event's time, the clock's by default.
        """
        async with self._lock, self._transaction():
            rows = await self._db.execute_fetchall(
                f"UPDATE accounts SET display_name = ? WHERE id = ? RETURNING {_ACCOUNT_COLUMNS}",  # noqa: S608
                (display_name, account_id),
            )
            row = next((AccountRow(*row) for row in rows), None)
            if row is not None:
                at = time.time() if now is None else now
                await self._db.execute(_INSERT_EVENT, (row.id, "updated", at))
        return row

    async def rename_account(self, account_id: int, display_name: str | None) -> bool:
        """Set (or clear, with None) an account's display name; False if there is no such id."""
        return await self.update_account(account_id, display_name=display_name) is not None

    async def delete_account(self, account_id: int, *, now: float | None = None) -> bool:
        """Delete an account, its history and its requests; False if there is no such id.

        Writes a 'deleted' account event at now (the clock's by default) when it deleted one.
        """
        async with self._lock:
            try:
                async with self._transaction():
                    for table in _ID_FLOOR_TABLES:
                        await self._db.execute(_RAISE_ID_FLOOR[table], (_id_floor_setting(table),))
                    cursor = await self._db.execute(
                        "DELETE FROM accounts WHERE id = ?", (account_id,)
                    )
                    deleted = cursor.rowcount > 0
                    if deleted:
                        at = time.time() if now is None else now
                        await self._db.execute(_INSERT_EVENT, (account_id, "deleted", at))
            finally:
                # Forgetting is always safe: the caches reload from the database.
                self._account_ids = {k: v for k, v in self._account_ids.items() if v != account_id}
                self._last = {k: v for k, v in self._last.items() if k[0] != account_id}
        return deleted

    # -- retention --------------------------------------------------------------------------

    async def prune_history(self, before: float) -> int:
        """Delete rows captured before `before`, keeping each account and limit's newest row."""
        deleted = 0
        while True:
            batch = await self.prune_history_batch(before, _CHUNK)
            deleted += batch
            if batch < _CHUNK:
                return deleted

    async def prune_history_batch(self, before: float, limit: int) -> int:
        """Delete at most limit usage rows captured before `before`, oldest first.

        Never an account and limit's newest row (the one latest_usage shows), however old.
        One short transaction: writers wait for one batch at most.
        """
        params = {"before": before, "limit": _checked_limit(limit)}
        return await self._delete_batch("usage_snapshots", _PRUNE_HISTORY, params)

    async def prune_requests_batch(self, before: float, limit: int) -> int:
        """Delete at most limit requests that started before `before`, oldest first."""
        params = {"before": before, "limit": _checked_limit(limit)}
        return await self._delete_batch("requests", _PRUNE_REQUESTS, params)

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
            "limit": _checked_limit(limit),
        }
        return await self._delete_batch("usage_snapshots", _DOWNSAMPLE_HISTORY, params)

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
                    _RAISE_ID_FLOOR_TO, (_id_floor_setting(table), max(int(row[0]) for row in rows))
                )
        return len(rows)

    async def _fetch(self, sql: str, params: Iterable[Any]) -> list[Any]:
        """Run one read under the lock and return all rows."""
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    @staticmethod
    async def schema_status(path: Path, *, migrations: Path | None = None) -> tuple[int, int]:
        """(the schema version of the database at path, the newest migration), changing nothing.

        A missing file is version 0; it is not created. Raises StoreError when it cannot be read.
        """
        folder = migrations if migrations is not None else paths.migrations_dir()
        scripts = await asyncio.to_thread(_read_migrations, folder)
        version = await asyncio.to_thread(_read_user_version, path)
        return version, scripts[-1].number


# -- helpers ----------------------------------------------------------------------------------


def _read_user_version(path: Path) -> int:
    """PRAGMA user_version of the file at path, opened read-only; 0 when there is no file."""
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read database {path}: {exc}") from exc


def _read_migrations(folder: Path) -> list[_Migration]:
    """Read the NNNN_name.sql files of folder in number order; reject odd names and repeats."""
    try:
        files = sorted(entry for entry in folder.iterdir() if entry.suffix == ".sql")
    except OSError as exc:
        raise StoreError(f"cannot read migrations in {folder}: {exc}") from exc
    scripts: list[_Migration] = []
    for file in files:
        match = _MIGRATION_FILE.match(file.name)
        if match is None:
            raise StoreError(f"migration file {file} is not named NNNN_name.sql")
        number = int(match.group(1))
        if scripts and scripts[-1].number == number:
            raise StoreError(f"migrations {scripts[-1].name} and {file.name} share a number")
        scripts.append(_Migration(number, file.name, file.read_text(encoding="utf-8")))
    if not scripts:
        raise StoreError(f"no migrations found in {folder}")
    return scripts


def _split_statements(sql: str) -> list[str]:
    """Split a script into statements (executescript would commit our transaction)."""
    statements: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        # complete_statement knows strings, comments and trigger bodies: a ';' inside them
        # does not end the statement.
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    tail = pending[:-1].strip()  # the ';' added after the last piece
    if tail:
        statements.append(tail)  # trailing comments (a no-op) or a last statement without ';'
    return statements


def _is_file_error(exc: BaseException) -> bool:
    """Whether SQLite failed on the file itself (an I/O error, read-only, cannot open)."""
    # Errors raised by Python's sqlite3 itself (a closed connection) carry no SQLite code.
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return code is not None and (code & 0xFF) in _FILE_ERRORS


def _create_private_file(path: Path) -> None:
    """Create the folder (0700) and file (0600); make an existing file, -wal and -shm private."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # SQLite gives the -wal and -shm files the mode of the database file when it creates them.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _make_private(path, os.fstat(fd).st_mode, partial(os.fchmod, fd))
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        try:
            info = sidecar.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode):
            _make_private(sidecar, info.st_mode, partial(os.chmod, sidecar))


def _make_private(path: Path, mode: int, chmod: Callable[[int], None]) -> None:
    """Clear the group and other bits of a file's mode; adds no bit the owner lacked."""
    private = stat.S_IMODE(mode) & ~0o077
    if private == stat.S_IMODE(mode):
        return
    try:
        chmod(private)
    except PermissionError:
        # Someone else's file (a shared database read by another user): theirs to tighten.
        LOG.warning("cannot make %s private (mode %o): not its owner", path, stat.S_IMODE(mode))


def _seen_accounts(
    ordered: Sequence[Snapshot], requests: Sequence[RequestRecord]
) -> dict[str, _SeenAccount]:
    """Fold a batch's proven identities, in time order, into one entry per account: newest wins."""
    # (time, identity, plan): a snapshot's plan is its report's, else the token claim.
    sightings: Iterable[tuple[float, Identity, str | None]] = (
        (s.captured_at, s.identity, s.report.plan_type or s.identity.plan_type) for s in ordered
    )
    if requests:
        by_time = sorted(
            (
                (r.started_at, r.identity, r.identity.plan_type)
                for r in requests
                if r.identity is not None and r.proven
            ),
            key=itemgetter(0),
        )
        # Requests first: at equal times the snapshot comes later, so its report's plan wins.
        sightings = heapq.merge(by_time, sightings, key=itemgetter(0))
    seen: dict[str, _SeenAccount] = {}
    for at, identity, plan_type in sightings:
        account = seen.get(identity.account_key)
        if account is None:
            account = _SeenAccount(identity.account_key, at, at)
            seen[identity.account_key] = account
        account.last_seen_at = at
        account.chatgpt_account_id = identity.chatgpt_account_id or account.chatgpt_account_id
        account.chatgpt_user_id = identity.chatgpt_user_id or account.chatgpt_user_id
        account.email = identity.email or account.email
        account.plan_type = plan_type or account.plan_type
        account.token_fingerprint = identity.token_fingerprint or account.token_fingerprint
    return seen


def _unproven_keys(requests: Sequence[RequestRecord], seen: dict[str, _SeenAccount]) -> list[str]:
    """The account keys that only unproven requests of a batch name."""
    keys = {
        r.identity.account_key
        for r in requests
        if r.identity is not None and not r.proven and r.identity.account_key not in seen
    }
    return sorted(keys)


def _limits(snapshot: Snapshot) -> tuple[LimitReport, ...]:
    """The limit reports to write: a windowless "codex" one added when only it is hit or capped."""
    report = snapshot.report
    if (report.limit_hit is None and report.spend_control is None) or any(
        limit.limit_id == CODEX_LIMIT for limit in report.limits
    ):
        return report.limits
    return (LimitReport(CODEX_LIMIT, None, ()), *report.limits)


def _request_rows(requests: Sequence[RequestRecord], batch: _Batch) -> list[tuple[Any, ...]]:
    """Lay requests out like _REQUEST_COLUMNS without the id, in the order given."""
    rows: list[tuple[Any, ...]] = []
    for request in requests:
        identity = request.identity
        tokens = request.tokens
        rows.append(
            (
                request.started_at,
                None if identity is None else batch.account_ids.get(identity.account_key),
                request.method,
                request.path,
                request.transport,
                request.status,
                request.model,
                request.upstream_request_id,
                request.response_id,
                request.ttfb_ms,
                request.duration_ms,
                request.bytes_in,
                request.bytes_out,
                None if tokens is None else tokens.input_tokens,
                None if tokens is None else tokens.cached_input_tokens,
                None if tokens is None else tokens.output_tokens,
                None if tokens is None else tokens.reasoning_tokens,
                None if tokens is None else tokens.total_tokens,
                request.error_code,
            )
        )
    return rows


def _usage_row(account_id: int, snapshot: Snapshot, limit: LimitReport) -> list[Any]:
    """Lay one limit report of a snapshot out like _USAGE_COLUMNS (id left to fill)."""
    report = snapshot.report
    classified: dict[str, Window] = {}
    slots: dict[str, Window] = {}
    for window in limit.windows:
        classified.setdefault(window.label, window)
        slots.setdefault(window.slot, window)
    primary = slots.get("primary")
    secondary = slots.get("secondary")
    credits = report.credits
    codex = limit.limit_id == CODEX_LIMIT
    hit = report.limit_hit if codex else None
    spend = report.spend_control if codex else None
    return [
        None,
        account_id,
        snapshot.captured_at,
        snapshot.captured_at,
        snapshot.source,
        snapshot.http_status,
        limit.limit_id,
        limit.limit_name,
        report.plan_type or snapshot.identity.plan_type,
        report.active_limit,
        report.rate_limit_reached_type,
        *_window_fields(classified.get(FIVE_HOUR)),
        *_window_fields(classified.get(SEVEN_DAY)),
        *_window_fields(classified.get(MONTHLY)),
        primary.label if primary else None,
        primary.classified_by if primary else None,
        *_window_fields(primary),
        secondary.label if secondary else None,
        secondary.classified_by if secondary else None,
        *_window_fields(secondary),
        limit.over_secondary_limit_percent,
        _flag(credits.has_credits) if credits else None,
        _flag(credits.unlimited) if credits else None,
        credits.balance if credits else None,
        hit.error_type if hit else None,
        hit.resets_at if hit else None,
        _flag(spend.reached) if spend else None,
        spend.limit if spend else None,
        spend.used if spend else None,
        spend.used_percent if spend else None,
        spend.resets_at if spend else None,
        spend.source if spend else None,
    ]


def _window_fields(window: Window | None) -> tuple[float | None, int | None, int | None]:
    """(used_percent, window_minutes, resets_at) of a window, all None when it is absent."""
    if window is None:
        return None, None, None
    return window.used_percent, window.window_minutes, window.resets_at


def _flag(value: bool | None) -> int | None:
    """A bool as SQLite stores it."""
    return None if value is None else int(value)


def _same_values(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    """Whether two value tuples are equal, reset times within UNCHANGED_RESET_SECONDS."""
    if old == new:
        return True
    for index, (a, b) in enumerate(zip(old, new, strict=True)):
        if a == b:
            continue
        if (
            index in _RESET_INDEXES
            and a is not None
            and b is not None
            and abs(a - b) <= UNCHANGED_RESET_SECONDS
        ):
            continue
        return False
    return True


def _latest(row: Sequence[Any]) -> LatestUsageRow:
    """Build a LatestUsageRow from a row of _LATEST_SELECT."""
    return LatestUsageRow(_usage(row), *row[len(_USAGE_COLUMNS) :])


def _checked_limit(limit: int) -> int:
    """limit itself; a negative one (which SQLite reads as "no limit") is a ValueError."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    return limit


def _usage(row: Sequence[Any]) -> UsageRow:
    """Build a UsageRow from the first len(_USAGE_COLUMNS) columns of a result row."""
    values = list(row[: len(_USAGE_COLUMNS)])
    for index in _FLAG_INDEXES:
        if values[index] is not None:
            values[index] = bool(values[index])
    return UsageRow(*values)


def _chunks(items: Sequence[_T], size: int) -> Iterable[Sequence[_T]]:
    """Consecutive slices of at most size items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
