"""Copying a SQLite database into PostgreSQL: table by table, in batches by id, resumable.

The source is opened read-only and read in one transaction, so the rows copied and the counts
compared are one consistent view of it even while a gateway writes to it. Each batch commits on
its own; a settings row (MARKER_SETTING) names the source until the copy ends, so that a second
run after an interruption finds the copy it belongs to and goes on from the highest id each
table already holds: rows are copied in id order, so everything at or below it is there.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias

import asyncpg
import orjson
from asyncpg import exceptions as pg_errors
from asyncpg.pool import PoolConnectionProxy

from codexgate.storage import schema_status
from codexgate.storage.columns import ID_FLOOR_TABLES, id_floor_setting
from codexgate.storage.interface import StorageError, StorageUnavailable
from codexgate.storage.location import PostgresURL
from codexgate.storage.postgresql.connection import WRITE_LOCK_KEY, PostgresBase, is_unavailable

# What the pool lends: a connection behind a proxy that returns it on release.
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# Every table that holds codexgate's data, parents before the tables that refer to them, and
# whether it has an id column to copy it by in batches (the others are a few rows each).
TABLES: Final = (
    ("accounts", True),
    ("usage_snapshots", True),
    ("requests", True),
    ("account_events", True),
    ("alerts", True),
    ("alert_state", False),
    ("webhooks", True),
    ("settings", False),
)
# Not copied: a session is a signed-in browser, which signs in again against the new database.
SKIPPED_TABLES: Final = ("sessions",)
# The tables whose ids PostgreSQL hands out from an identity sequence; usage_snapshots and
# requests ids come from the id floors in settings, which are copied with the rest.
IDENTITY_TABLES: Final = ("accounts", "account_events", "alerts", "webhooks")
# A settings row naming the source while a copy is unfinished (never present in a source).
MARKER_SETTING: Final = "copy_db_in_progress"
# Held by a running copy for as long as its connection lives (any bigint; "cdxcopy" in hex).
COPY_LOCK_KEY: Final = 0x636478636F7079
LOCK_WAIT_SECONDS: Final = 5.0
BATCH_ROWS: Final = 5000

# PostgreSQL column types, grouped by the Python type the driver wants for them.
_INTEGER_TYPES: Final = frozenset({"bigint", "integer", "smallint"})
_FLOAT_TYPES: Final = frozenset({"double precision", "real"})
_TEXT_TYPES: Final = frozenset({"text", "character varying"})


class CopyError(StorageError):
    """The copy cannot start or go on; the message is one line saying why and what to do."""


class CopyProgress(Protocol):
    """Told as each table's copy moves on (after every committed batch)."""

    def began(self, resumed: bool) -> None:
        """The target is checked; resumed: it holds an unfinished copy of this source."""

    def started(self, table: str, total: int, done: int) -> None:
        """Copying table begins: total rows in the source, done of them already there."""

    def advanced(self, table: str, done: int) -> None:
        """done rows of table are in the target now."""

    def finished(self, table: str, done: int) -> None:
        """table is copied; done rows went through this run or an earlier one."""


@dataclass(frozen=True, slots=True)
class TableCount:
    """One table's rows in the source and in the target after the copy."""

    table: str
    source: int
    target: int | None  # None: the table is not copied
    skipped: int = 0  # rows already in the target under the same id or key

    @property
    def copied(self) -> bool:
        """Whether the table is part of the copy."""
        return self.target is not None


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What a copy did: where from, whether it resumed, and every table's counts."""

    source: Path
    resumed: bool
    into_non_empty: bool
    counts: tuple[TableCount, ...]

    def matches(self, count: TableCount) -> bool:
        """Whether the target holds the table's source rows: as many, or with into_non_empty
        (the target's own rows count too) at least as many."""
        if count.target is None:
            return True
        if self.into_non_empty:
            return count.target >= count.source
        return count.target == count.source

    @property
    def ok(self) -> bool:
        """Whether every copied table's count matches."""
        return all(self.matches(count) for count in self.counts)


async def copy_sqlite_to_postgres(
    source: Path,
    target: PostgresURL,
    *,
    into_non_empty: bool = False,
    progress: CopyProgress | None = None,
    connect_timeout: float = 30.0,
    batch_rows: int = BATCH_ROWS,
) -> CopyReport:
    """Copy every table but sessions from the SQLite file at source into target's database.

    The target is created or migrated to the newest schema. It must hold no codexgate rows,
    unless it holds an unfinished copy of this same source (then the copy resumes) or
    into_non_empty is set (then rows whose id or unique key is there already are skipped).
    Raises CopyError for a source or target it must not copy, StorageSetupError when the target
    cannot be reached, StorageUnavailable when it is lost during the copy.
    """
    reader = await asyncio.to_thread(_SourceReader.open, source)
    try:
        await _check_source_schema(reader.path)
        base = await _Target.open(target, pool_size=1, connect_timeout=connect_timeout)
        try:
            async with base.connection() as conn:
                copier = _Copier(conn, reader, target, into_non_empty, progress, batch_rows)
                return await copier.run()
        finally:
            await base.close()
    finally:
        await asyncio.to_thread(reader.close)


# -- the source -------------------------------------------------------------------------------


def _identity(path: Path) -> dict[str, Any]:
    """What names the source file in the marker: its absolute path and device and inode."""
    status = path.stat()
    return {"source": str(path), "device": status.st_dev, "inode": status.st_ino}


async def _check_source_schema(path: Path) -> None:
    """Refuse a source that is not at the newest SQLite schema version."""
    version, latest = await schema_status(path)
    if version < latest:
        raise CopyError(
            f"{path} is at schema version {version}, not the newest ({latest}): "
            f"run `codexgate migrate --db {path}` first"
        )
    if version > latest:
        raise CopyError(
            f"{path} is at schema version {version}, newer than this codexgate ({latest}); "
            "upgrade codexgate"
        )


class _SourceReader:
    """The SQLite file, read-only, inside one read transaction (one view of it throughout).

    Used from worker threads, one call at a time.
    """

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self.identity = _identity(path)
        self._db = db

    @classmethod
    def open(cls, path: Path) -> _SourceReader:
        """Open the file read-only; CopyError when it is missing or not a database."""
        path = path.expanduser().absolute()
        if not path.is_file():
            raise CopyError(f"no database file at {path}; check --from")
        try:
            db = sqlite3.connect(
                f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise CopyError(f"cannot open {path}: {exc}") from exc
        try:
            db.execute("BEGIN")
            # A read transaction takes its snapshot at its first read.
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            db.close()
            raise CopyError(f"cannot read {path}: {exc}") from exc
        return cls(path, db)

    def close(self) -> None:
        self._db.close()

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise CopyError(f"cannot read {self.path}: {exc}") from exc

    def columns(self, table: str) -> list[str]:
        """The table's column names in table order."""
        return [str(row[1]) for row in self._rows(f"PRAGMA table_info({table})")]

    def count(self, table: str) -> int:
        """The table's rows (a copy marker left out, should a source hold one)."""
        where = " WHERE name <> ?" if table == "settings" else ""
        args = (MARKER_SETTING,) if table == "settings" else ()
        return int(self._rows(f"SELECT count(*) FROM {table}{where}", *args)[0][0])  # noqa: S608

    def batch(self, table: str, columns: Sequence[str], after: int, limit: int) -> list[Any]:
        """At most limit rows with an id above after, by id."""
        sql = (
            f"SELECT {', '.join(_quoted(name) for name in columns)} FROM {table} "  # noqa: S608
            "WHERE id > ? ORDER BY id LIMIT ?"
        )
        return self._rows(sql, after, limit)

    def any_real(self, table: str, columns: Sequence[str], first: int, last: int) -> bool:
        """Whether a row with first <= id <= last holds a fraction in one of these columns."""
        reals = " OR ".join(f"typeof({_quoted(name)}) = 'real'" for name in columns)
        sql = f"SELECT EXISTS (SELECT 1 FROM {table} WHERE id BETWEEN ? AND ? AND ({reals}))"  # noqa: S608
        return bool(self._rows(sql, first, last)[0][0])

    def everything(self, table: str, columns: Sequence[str]) -> list[Any]:
        """Every row of a small table without an id (the copy marker left out)."""
        where = " WHERE name <> ?" if table == "settings" else ""
        args = (MARKER_SETTING,) if table == "settings" else ()
        sql = f"SELECT {', '.join(_quoted(name) for name in columns)} FROM {table}{where}"  # noqa: S608
        return self._rows(sql, *args)

    def account_keys(self) -> dict[int, str]:
        """Every account's id and account_key."""
        return {
            int(row[0]): str(row[1]) for row in self._rows("SELECT id, account_key FROM accounts")
        }


def _quoted(name: str) -> str:
    """A column name as an identifier in both dialects (`window` is reserved in PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


# -- the target -------------------------------------------------------------------------------


class _Target(PostgresBase):
    """The target database, opened and migrated as the store opens it, for one connection."""

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """One pooled connection, a driver error that means "unreachable" turned into
        StorageUnavailable, any other into CopyError."""
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except pg_errors.PostgresError as exc:
            if is_unavailable(exc):
                raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
            raise CopyError(f"PostgreSQL at {self.url.where} refused the copy: {exc}") from exc
        except ValueError as exc:
            # The driver's own DataError (a value it cannot send as its column's type) is both
            # an InterfaceError and a ValueError: a value the conversions let through.
            raise CopyError(f"cannot copy a value: {exc}") from exc
        except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc


# Converters from a SQLite value to what the driver wants for a PostgreSQL type.


def _to_int(value: Any) -> Any:
    if value is None or type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a whole number")


def _to_float(value: Any) -> Any:
    if value is None or type(value) is float:
        return value
    if isinstance(value, int | str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a number")


def _to_bool(value: Any) -> Any:
    if value is None or type(value) is bool:
        return value
    if value in (0, 1):
        return bool(value)
    raise ValueError(f"{value!r} is not 0 or 1")


def _to_text(value: Any) -> Any:
    if value is None or type(value) is str:
        return value
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"{type(value).__name__} is not text")


def _converter(kind: str) -> Callable[[Any], Any] | None:
    """The conversion for a PostgreSQL column type; None for a type the driver takes as is."""
    if kind in _INTEGER_TYPES:
        return _to_int
    if kind in _FLOAT_TYPES:
        return _to_float
    if kind == "boolean":
        return _to_bool
    if kind in _TEXT_TYPES:
        return _to_text
    return None


@dataclass(frozen=True, slots=True)
class _Layout:
    """How one table's rows go from SQLite to PostgreSQL: columns and their conversions."""

    table: str
    columns: tuple[str, ...]
    # (column index, converter) of the boolean columns: 0/1 in SQLite, always converted.
    flags: tuple[tuple[int, Callable[[Any], Any]], ...]
    # Of every column: for a batch the driver refused (SQLite columns take any type).
    strict: tuple[tuple[int, Callable[[Any], Any]], ...]
    # The integer columns: the driver would cut a fraction off silently, so a batch with a
    # fraction in one is converted strictly (and refused, naming it).
    integers: tuple[str, ...]

    def convert(self, rows: list[Any], *, strict: bool = False) -> list[Any]:
        """The rows with each value as the driver wants it for its column: the flags, or with
        strict every column (CopyError naming a value that cannot be converted)."""
        conversions = self.strict if strict else self.flags
        if not conversions:
            return rows
        converted = []
        for row in rows:
            values = list(row)
            for index, convert in conversions:
                try:
                    values[index] = convert(values[index])
                except ValueError as exc:
                    where = f" (id {values[0]})" if self.columns[0] == "id" else ""
                    raise CopyError(
                        f"cannot copy {self.table}.{self.columns[index]}{where}: {exc}"
                    ) from None
            converted.append(values)
        return converted


class _Copier:
    """One run of the copy over one target connection."""

    def __init__(
        self,
        conn: Connection,
        reader: _SourceReader,
        url: PostgresURL,
        into_non_empty: bool,
        progress: CopyProgress | None,
        batch_rows: int,
    ) -> None:
        self._conn = conn
        self._reader = reader
        self._url = url
        self._into_non_empty = into_non_empty
        self._progress = progress
        self._batch_rows = batch_rows

    async def _read(self, method: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(method, *args)

    async def run(self) -> CopyReport:
        resumed = await self._check_target()
        if self._progress is not None:
            self._progress.began(resumed)
        if self._into_non_empty:
            await self._check_accounts()
        marker = orjson.dumps({**self._reader.identity, "into_non_empty": self._into_non_empty})
        await self._conn.execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            MARKER_SETTING,
            marker.decode(),
        )
        counts = [await self._copy_table(table, keyed) for table, keyed in TABLES]
        await self._raise_sequences()
        await self._conn.execute("DELETE FROM settings WHERE name = $1", MARKER_SETTING)
        final = []
        for count in counts:
            target = await self._conn.fetchval(f"SELECT count(*) FROM {count.table}")  # noqa: S608
            final.append(TableCount(count.table, count.source, int(target), count.skipped))
        for table in SKIPPED_TABLES:
            final.append(TableCount(table, await self._read(self._reader.count, table), None))
        return CopyReport(self._reader.path, resumed, self._into_non_empty, tuple(final))

    # -- before copying -----------------------------------------------------------------------

    async def _check_target(self) -> bool:
        """Whether this run resumes an unfinished copy; CopyError for a target it must not
        copy into."""
        where = self._url.where
        await self._lock()
        raw = await self._conn.fetchval(
            "SELECT value FROM settings WHERE name = $1", MARKER_SETTING
        )
        if raw is not None:
            try:
                marker = dict(orjson.loads(raw))
            except (orjson.JSONDecodeError, TypeError, ValueError):
                marker = {}  # not written by copy-db: another file's, as far as this one knows
            started_into_non_empty = bool(marker.pop("into_non_empty", False))
            if marker == self._reader.identity:
                if started_into_non_empty and not self._into_non_empty:
                    raise CopyError(
                        f"the unfinished copy into {where} was started with --into-non-empty: "
                        "run it again with that option"
                    )
                return True
            if not self._into_non_empty:
                raise CopyError(
                    f"{where} holds an unfinished copy of another file "
                    f"({marker.get('source', '?')}): copy into an empty database, or finish "
                    "that copy first"
                )
            return False
        if not self._into_non_empty:
            filled = [
                table
                for table in (*(name for name, _ in TABLES), *SKIPPED_TABLES)
                if await self._conn.fetchval(f"SELECT EXISTS (SELECT FROM {table})")  # noqa: S608
            ]
            if filled:
                raise CopyError(
                    f"{where} already holds codexgate data (in {', '.join(filled)}): copy into "
                    "an empty database, or add --into-non-empty to copy only the rows whose "
                    "ids are not there yet"
                )
        return False

    async def _lock(self) -> None:
        """Take the copy's lock, or CopyError when another copy holds it. A copy killed a
        moment ago may hold it until the server notices: it gets a few seconds to let go."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while not await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", COPY_LOCK_KEY):
            if time.monotonic() > deadline:
                raise CopyError(f"another copy-db is copying into {self._url.where} now")
            await asyncio.sleep(0.1)

    async def _check_accounts(self) -> None:
        """Refuse to merge when an account id means another seat in the target: the rows that
        refer to it would join the wrong account's history."""
        source = await self._read(self._reader.account_keys)
        target = {
            int(row["id"]): str(row["account_key"])
            for row in await self._conn.fetch("SELECT id, account_key FROM accounts")
        }
        target_ids = {key: account_id for account_id, key in target.items()}
        for account_id, key in sorted(source.items()):
            if target.get(account_id, key) != key or target_ids.get(key, account_id) != account_id:
                raise CopyError(
                    f"account {account_id} of the source is another account (or another id) in "
                    f"{self._url.where}: merging would mix their history; copy into an empty "
                    "database instead"
                )

    async def _layout(self, table: str) -> _Layout:
        """The columns both sides have (in PostgreSQL's order) and the conversions they need."""
        source_columns = await self._read(self._reader.columns, table)
        rows = await self._conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            table,
        )
        types = {str(row["column_name"]): str(row["data_type"]) for row in rows}
        missing = [name for name in source_columns if name not in types]
        if missing:
            raise CopyError(
                f"{table}.{missing[0]} has no column in {self._url.where}: the two schemas "
                "differ; use the same codexgate version for both"
            )
        columns = tuple(name for name in types if name in source_columns)
        converters = [(index, _converter(types[name])) for index, name in enumerate(columns)]
        strict = tuple((index, convert) for index, convert in converters if convert is not None)
        flags = tuple(
            (index, convert) for index, convert in strict if types[columns[index]] == "boolean"
        )
        # An INTEGER PRIMARY KEY holds only integers.
        integers = tuple(name for name in columns if types[name] in _INTEGER_TYPES and name != "id")
        return _Layout(table, columns, flags, strict, integers)

    # -- copying ------------------------------------------------------------------------------

    async def _copy_table(self, table: str, keyed: bool) -> TableCount:
        layout = await self._layout(table)
        total = await self._read(self._reader.count, table)
        if not keyed:
            return await self._copy_whole(layout, total)
        # Into a target of our own, rows with an id above the highest there are new: straight
        # COPY. Into someone else's, any id may be taken: through a staging table, skipping.
        after = done = skipped = 0
        if not self._into_non_empty:
            after = await self._conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608
            done = await self._conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
        self._started(table, total, done)

        def read(after: int) -> list[Any]:
            rows = self._reader.batch(table, layout.columns, after, self._batch_rows)
            # SQLite reads the batch again for the check, in C, and without the GIL.
            strict = bool(rows and layout.integers) and self._reader.any_real(
                table, layout.integers, int(rows[0][0]), int(rows[-1][0])
            )
            return layout.convert(rows, strict=strict)

        # The next batch is read (in a thread) while this one is written.
        pending = asyncio.ensure_future(asyncio.to_thread(read, after))
        try:
            while rows := await pending:
                pending = asyncio.ensure_future(asyncio.to_thread(read, int(rows[-1][0])))
                written = await self._write(layout, rows, skipping=self._into_non_empty)
                skipped += len(rows) - written
                done += len(rows)
                self._advanced(table, done)
        finally:
            # A read still running uses the source's connection: it ends before that closes.
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # seen: what the loop above raised is what counts
        self._finished(table, done)
        return TableCount(table, total, None, skipped)

    async def _copy_whole(self, layout: _Layout, total: int) -> TableCount:
        """A table without ids, in one transaction; rows already there are kept as they are."""
        self._started(layout.table, total, 0)
        rows = await self._read(self._reader.everything, layout.table, layout.columns)
        written = await self._write(layout, layout.convert(rows, strict=True), skipping=True)
        self._finished(layout.table, len(rows))
        # A resumed copy finds its own earlier rows: they are not "skipped" target rows.
        skipped = len(rows) - written if self._into_non_empty else 0
        return TableCount(layout.table, total, None, skipped)

    async def _write(self, layout: _Layout, records: list[Any], *, skipping: bool) -> int:
        """Write one batch in its own transaction, under the writers' lock; how many rows were
        inserted. A batch the driver refuses for a value's type is converted column by column
        and tried once more."""
        try:
            return await self._write_once(layout, records, skipping=skipping)
        except (TypeError, ValueError):
            # The driver refused a value of another type than its column (SQLite keeps what
            # it is given). Nothing was written: the transaction rolled back.
            strict = layout.convert(records, strict=True)
            return await self._write_once(layout, strict, skipping=skipping)

    async def _write_once(self, layout: _Layout, records: list[Any], *, skipping: bool) -> int:
        async with self._conn.transaction():
            await self._conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
            if not skipping:
                await self._conn.copy_records_to_table(
                    layout.table, records=records, columns=layout.columns
                )
                return len(records)
            # COPY into a staging table, then insert the rows whose keys are free.
            columns = ", ".join(_quoted(name) for name in layout.columns)
            await self._conn.execute(
                f"CREATE TEMPORARY TABLE copy_db_stage (LIKE {layout.table}) ON COMMIT DROP"
            )
            await self._conn.copy_records_to_table(
                "copy_db_stage", records=records, columns=layout.columns
            )
            status = await self._conn.execute(
                f"INSERT INTO {layout.table} ({columns}) "  # noqa: S608
                f"SELECT {columns} FROM copy_db_stage ON CONFLICT DO NOTHING"
            )
            if layout.table == "settings":
                # An id floor is the highest id a table ever had: the higher of the two wins.
                await self._conn.execute(
                    "UPDATE settings SET value = stage.value FROM copy_db_stage AS stage "
                    "WHERE settings.name = stage.name AND settings.name = ANY($1::text[]) "
                    "AND stage.value::bigint > settings.value::bigint",
                    [id_floor_setting(table) for table in ID_FLOOR_TABLES],
                )
        # "INSERT 0 <rows>"
        return int(status.rsplit(" ", 1)[1])

    async def _raise_sequences(self) -> None:
        """Move each identity sequence past the highest id copied (never back)."""
        for table in IDENTITY_TABLES:
            highest = await self._conn.fetchval(f"SELECT max(id) FROM {table}")  # noqa: S608
            sequence = await self._conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
            state = await self._conn.fetchrow(
                f"SELECT last_value, is_called FROM {sequence}"  # noqa: S608
            )
            assert state is not None
            handed_out = state["last_value"] if state["is_called"] else state["last_value"] - 1
            if highest is not None and highest > handed_out:
                await self._conn.execute("SELECT setval($1::regclass, $2)", sequence, highest)

    # -- progress -----------------------------------------------------------------------------

    def _started(self, table: str, total: int, done: int) -> None:
        if self._progress is not None:
            self._progress.started(table, total, done)

    def _advanced(self, table: str, done: int) -> None:
        if self._progress is not None:
            self._progress.advanced(table, done)

    def _finished(self, table: str, done: int) -> None:
        if self._progress is not None:
            self._progress.finished(table, done)
