"""The SQLite connection: open, PRAGMAs, migrations, reconnect, transactions, driver errors."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import partial, wraps
from itertools import chain
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, Self, TypeVar

import aiosqlite

from codexgate import paths
from codexgate.core.recording import NewestRow, Sampler, UsageKey
from codexgate.storage.columns import (
    chunks,
    id_floor_setting,
)
from codexgate.storage.interface import StorageSetupError, StorageUnavailable
from codexgate.storage.migrations import Migration, read_migrations
from codexgate.storage.sqlite.columns import (
    CHUNK,
    NEXT_ID,
)

LOG = logging.getLogger(__name__)

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

_S = TypeVar("_S", bound="SQLiteBase")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def guarded(
    method: Callable[Concatenate[_S, _P], Awaitable[_R]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]]:
    """Turn the driver's errors (and OSError) from a storage method into StorageUnavailable.

    A constraint or data error is the caller's bug, not an outage: it passes through, so the
    recorder drops that batch instead of trying it again.

    aiosqlite raises ValueError on a closed connection: that counts only once the storage is
    closed; any other ValueError is a bug and passes through.
    """

    @wraps(method)
    async def guarded_method(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(self, *args, **kwargs)
        except (sqlite3.IntegrityError, sqlite3.DataError):
            raise  # what was written is wrong: trying it again would fail again
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            if not self.closed:
                raise
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc

    return guarded_method


class SQLiteBase:
    """This process's one aiosqlite connection to the file, its lock, caches and transactions."""

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
        self._last: dict[UsageKey, NewestRow | None] = {}
        self._sampler = Sampler()
        # PRAGMA data_version when record() last checked it: it moves when another connection
        # commits (a second codexgate during a rolling restart, the command line), and then the
        # two caches above may name rows that are no longer the newest. None: check at once.
        self._data_version: int | None = None
        # Counts reconnections: a new connection's data_version is unrelated to the old one's.
        self._connection_number = 0
        self._reopen = False  # a write failed on the file itself: open it again first
        self.closed = False

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        migrations: Path | None = None,
        heartbeat_seconds: float = 300.0,
    ) -> Self:
        """Open (creating if needed, private to this user) and migrate the database at path."""
        folder = migrations if migrations is not None else paths.migrations_dir()
        scripts = await asyncio.to_thread(read_migrations, folder)
        _bind_none_directly()
        try:
            await asyncio.to_thread(_create_private_file, path)
            db = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StorageSetupError(f"cannot open database {path}: {exc}") from exc
        try:
            store = cls(db, path, heartbeat_seconds)
            await store._prepare(scripts)
        except BaseException:
            await db.close()
            raise
        return store

    @guarded
    async def close(self) -> None:
        """Close the connection; the Store cannot be used afterwards."""
        async with self._lock:
            self.closed = True
            await self._db.close()

    @guarded
    async def schema_version(self) -> int:
        """The database's PRAGMA user_version: the number of the last migration applied."""
        async with self._lock:
            return await self._user_version()

    # -- opening and migrations -------------------------------------------------------------

    async def _prepare(self, scripts: Sequence[Migration]) -> None:
        """Set the PRAGMAs and apply the migrations; refuse a database newer than the code."""
        latest = scripts[-1].number if scripts else 0
        try:
            for pragma in _CONNECTION_PRAGMAS:
                await self._db.execute(pragma)
            # Read before anything writes: a refused database must be left exactly as it was.
            version = await self._user_version()
        except sqlite3.Error as exc:
            raise StorageSetupError(f"cannot open database {self.path}: {exc}") from exc
        if version > latest:
            raise StorageSetupError(
                f"database schema version {version} is newer than this codexgate supports "
                f"({latest}); upgrade codexgate or use another --db"
            )
        try:
            rows = await self._db.execute_fetchall("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            raise StorageSetupError(f"cannot open database {self.path}: {exc}") from exc
        mode = next(iter(rows))[0]
        if mode != "wal":
            LOG.warning("database %s stays in journal mode %s, not WAL", self.path, mode)
        for script in scripts:
            if script.number > version:
                await self._apply(script)

    async def _apply(self, script: Migration) -> None:
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
                raise StorageSetupError(f"migration {script.name} failed: {exc}") from exc
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
        self._connection_number += 1
        # A repaired file may lack what the caches remember: look everything up again.
        self._account_ids.clear()
        self._last.clear()
        self._data_version = None
        try:
            await old.close()
        except sqlite3.Error:
            LOG.warning("closing the failed connection to %s failed", self.path, exc_info=True)
        LOG.debug("reopened the database %s after a file error", self.path)

    async def _user_version(self) -> int:
        """Read PRAGMA user_version (caller holds the lock or is opening)."""
        rows = await self._db.execute_fetchall("PRAGMA user_version")
        return int(next(iter(rows))[0])

    async def _data_version_now(self) -> int:
        """This connection's PRAGMA data_version: it changes only when another connection
        commits (caller holds the lock). It reads no page, only the WAL index: microseconds."""
        rows = await self._db.execute_fetchall("PRAGMA data_version")
        return int(next(iter(rows))[0])

    async def _on_connection(self, work: Callable[[sqlite3.Connection], _R]) -> _R:
        """Run work(connection) on aiosqlite's thread as one queued call (caller holds the lock).

        Every aiosqlite call is a hop to that thread and back (a queue, a future, a wake-up of
        the event loop); a write of many statements made as one call pays one hop, not one per
        statement. aiosqlite has no public name for this: Connection._execute is how each of its
        own methods queues its call, and ._conn the sqlite3 connection (ValueError once closed),
        both alike from 0.17 to 0.22.
        """
        db = self._db
        connection: sqlite3.Connection = db._conn
        run: Callable[..., Awaitable[_R]] = db._execute
        return await run(work, connection)

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

    async def _fetch(self, sql: str, params: Iterable[Any]) -> list[Any]:
        """Run one read under the lock and return all rows."""
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    async def _select_in(self, sql: str, values: Sequence[Any]) -> list[Any]:
        """Run sql, whose `{marks}` is an IN list, over values in chunks (caller holds the lock).

        SQLite limits the bound variables of one statement, so long lists take several.
        """
        rows: list[Any] = []
        for chunk in chunks(values, CHUNK):
            marks = ", ".join("?" for _ in chunk)
            rows.extend(await self._db.execute_fetchall(sql.format(marks=marks), chunk))
        return rows

    @staticmethod
    async def schema_status(path: Path, *, migrations: Path | None = None) -> tuple[int, int]:
        """(the schema version of the database at path, the newest migration), changing nothing.

        A missing file is version 0; it is not created. Raises StorageSetupError when it cannot be
        read.
        """
        folder = migrations if migrations is not None else paths.migrations_dir()
        scripts = await asyncio.to_thread(read_migrations, folder)
        version = await asyncio.to_thread(_read_user_version, path)
        return version, scripts[-1].number


# -- on the connection's thread (see SQLiteBase._on_connection) -----------------------------


def data_version(conn: sqlite3.Connection) -> int:
    """The connection's PRAGMA data_version: it changes only when another connection commits.
    It reads no page, only the WAL index: microseconds."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def next_id(conn: sqlite3.Connection, table: str) -> int:
    """The first id the open write transaction may hand out in table."""
    return int(conn.execute(NEXT_ID[table], (id_floor_setting(table),)).fetchone()[0])


def select_in(conn: sqlite3.Connection, sql: str, values: Sequence[Any]) -> list[Any]:
    """Run sql, whose `{marks}` is an IN list, over values in chunks (see SQLiteBase._select_in)."""
    rows: list[Any] = []
    for chunk in chunks(values, CHUNK):
        marks = ", ".join("?" for _ in chunk)
        rows.extend(conn.execute(sql.format(marks=marks), chunk).fetchall())
    return rows


def insert_rows(
    conn: sqlite3.Connection, statements: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert rows with the statements of columns.multi_row_inserts, the largest that fit first."""
    start, total = 0, len(rows)
    level = len(statements) - 1
    while start < total:
        while 1 << level > total - start:
            level -= 1
        end = start + (1 << level)
        conn.execute(statements[level], list(chain.from_iterable(rows[start:end])))
        start = end


def roll_back(conn: sqlite3.Connection, path: Path) -> None:
    """Roll back the open transaction, if any, without hiding the error that led here."""
    try:
        conn.rollback()  # a no-op when no transaction is open
    except sqlite3.Error:
        LOG.warning("rollback failed on %s", path, exc_info=True)


def _bind_none_directly() -> None:
    """Let Python's sqlite3 bind a None parameter without asking the adapter protocol.

    It asks about every parameter that is not an int, float, str or bytearray, None included:
    a dict miss and two failed attribute lookups per NULL, under the GIL. A usage row binds
    about fifteen NULLs: that was a fifth of the CPU its whole write took. With an adapter
    registered for NoneType, a NULL costs one dict hit. Process-wide, as sqlite3's adapters
    are, and every connection binds the same NULL as before.
    """
    sqlite3.register_adapter(type(None), _AS_NONE)


# An empty dict's get: None for None, in C (a Python function would cost a frame per NULL).
_NOTHING: Final[dict[None, None]] = {}
_AS_NONE: Final = _NOTHING.get


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
        raise StorageSetupError(f"cannot read database {path}: {exc}") from exc


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


def is_file_error(exc: BaseException) -> bool:
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
