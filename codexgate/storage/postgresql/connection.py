"""The PostgreSQL pool: connect (retried until a deadline), migrations, the one writer, errors."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, Self, TypeAlias, TypeVar

import asyncpg
from asyncpg import exceptions as pg_errors
from asyncpg.pool import PoolConnectionProxy

from codexgate import paths
from codexgate.core.recording import NewestRow, Sampler, UsageKey
from codexgate.storage.columns import id_floor_setting
from codexgate.storage.interface import StorageSetupError, StorageUnavailable
from codexgate.storage.location import PostgresURL
from codexgate.storage.migrations import Migration, read_migrations

LOG = logging.getLogger(__name__)

if TYPE_CHECKING:  # asyncpg's classes are generic only in its stubs
    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    Connection = PoolConnectionProxy
    Pool = asyncpg.Pool

# Advisory lock keys (any bigint; these spell "cdxgate" and "cdxmigr" in hex).
WRITE_LOCK_KEY: Final = 0x63647867617465
MIGRATE_LOCK_KEY: Final = 0x6364786D696772

# Every write transaction notifies this channel with its store's instance id, and a batch that
# confirmed rows again with "<instance>:<id>,<id>,...".
COMMITS_CHANNEL: Final = "codexgate_commits"
# The singleton lease's row in `leases`, and the database's clock in unix seconds: the lease's
# times are the server's, so that instances whose clocks differ still agree who holds it.
SINGLETON: Final = "singleton"
NOW: Final = "extract(epoch FROM clock_timestamp())::double precision"
# PostgreSQL refuses a payload of 8000 bytes or more: longer lists of ids are left out (the
# other instances then only miss those rows' fresher confirmed_at until their next change).
MAX_NOTIFY_PAYLOAD: Final = 7000

# SQLSTATE classes that mean "the database cannot be used now", not "this statement is wrong":
# connection exceptions, transaction rollback (serialization, deadlock), insufficient resources
# (disk full, too many connections), lock not available, operator intervention (shutdown,
# cancel, statement timeout), system errors. Anything else (a syntax error, a constraint) is a
# bug and passes through.
_UNAVAILABLE_CLASSES: Final = frozenset({"08", "40", "53", "55", "57", "58"})
_UNAVAILABLE_STATES: Final = frozenset({"25006"})  # read-only transaction (a standby)

# Errors at connect time that no retry fixes: a wrong URL must fail loudly, at once.
_WRONG_URL: Final = (
    pg_errors.InvalidAuthorizationSpecificationError,  # unknown role, bad password, pg_hba
    pg_errors.InvalidCatalogNameError,  # no such database
    pg_errors.InsufficientPrivilegeError,
    asyncpg.ClientConfigurationError,
)

# A statement that runs this long is abandoned (a server that stopped answering); the pool's
# connect attempts give up sooner.
_COMMAND_TIMEOUT: Final = 30.0
_CONNECT_ATTEMPT_TIMEOUT: Final = 5.0

_S = TypeVar("_S", bound="PostgresBase")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def is_unavailable(exc: BaseException) -> bool:
    """Whether exc means the server cannot be used now (rather than a bug in a statement)."""
    if isinstance(exc, pg_errors.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES
    return isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError)


def guarded(
    method: Callable[Concatenate[_S, _P], Awaitable[_R]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]]:
    """Turn a lost connection, a full disk or a server shutting down into StorageUnavailable."""

    @wraps(method)
    async def guarded_method(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(self, *args, **kwargs)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc

    return guarded_method


class PostgresBase:
    """A pool of connections: reads use any, writes take the one write lock (see _writing)."""

    def __init__(self, pool: Pool, url: PostgresURL, heartbeat_seconds: float) -> None:
        """Wrap an open pool of a migrated database; use Store.open()."""
        self.url = url
        self._pool = pool
        self._heartbeat = heartbeat_seconds
        # This process's caches are only right while its writes are the only ones it does not
        # see: the lock keeps them one at a time here, the advisory lock across instances.
        self._write_lock = asyncio.Lock()
        # Names this store's commit notifications, so that it ignores its own.
        self.instance = secrets.token_hex(8)
        self._account_ids: dict[str, int] = {}  # account_key -> accounts.id
        # (account_id, limit_id) -> newest row; None = no row in the database.
        self._last: dict[UsageKey, NewestRow | None] = {}
        self._sampler = Sampler()
        self.closed = False

    @classmethod
    async def open(
        cls,
        url: PostgresURL,
        *,
        migrations: Path | None = None,
        heartbeat_seconds: float = 300.0,
        pool_size: int = 10,
        connect_timeout: float = 30.0,
    ) -> Self:
        """Connect (retrying an unreachable server for connect_timeout seconds) and migrate."""
        folder = migrations if migrations is not None else paths.migrations_dir("postgresql")
        scripts = await asyncio.to_thread(read_migrations, folder)
        pool = await _connect(url, pool_size, connect_timeout)
        try:
            async with pool.acquire() as conn:
                await _migrate(conn, scripts, url)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url, heartbeat_seconds)

    @staticmethod
    async def schema_status(
        url: PostgresURL, *, migrations: Path | None = None, connect_timeout: float = 30.0
    ) -> tuple[int, int]:
        """(the database's schema version, the newest migration), changing nothing."""
        folder = migrations if migrations is not None else paths.migrations_dir("postgresql")
        scripts = await asyncio.to_thread(read_migrations, folder)
        pool = await _connect(url, 1, connect_timeout)
        try:
            async with pool.acquire() as conn:
                version = await _schema_version(conn)
        except Exception as exc:
            raise StorageSetupError(f"cannot read the database at {url.where}: {exc}") from exc
        finally:
            await pool.close()
        return version, scripts[-1].number

    @guarded
    async def close(self) -> None:
        """Close every connection; the Store cannot be used afterwards."""
        async with self._write_lock:
            self.closed = True
            await self._pool.close()

    @guarded
    async def schema_version(self) -> int:
        """The number of the last migration applied."""
        async with self._pool.acquire() as conn:
            return await _schema_version(conn)

    # -- for the per-table modules ------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One read on any pooled connection (asyncpg prepares and caches each statement)."""
        return await self._pool.fetch(sql, *args)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[Connection]:
        """A transaction holding the write lock of every instance: writers commit one at a time.

        Ids are handed out inside it, so id order is commit order: the live feed replays
        `id > cursor` and never skips a row that committed late.
        """
        async with self._write_lock, self._pool.acquire() as conn, conn.transaction():
            # The notification goes out at COMMIT (never for a rollback): it wakes the live
            # feed of every other instance (watch_commits), which then reads after its cursor.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1), pg_notify($2, $3)",
                WRITE_LOCK_KEY,
                COMMITS_CHANNEL,
                self.instance,
            )
            yield conn

    @staticmethod
    async def _next_id(conn: Connection, table: str) -> int:
        """The first id this transaction may hand out in table (write lock held)."""
        value = await conn.fetchval(
            f"SELECT greatest((SELECT coalesce(max(id), 0) FROM {table}), "  # noqa: S608
            "coalesce((SELECT value::bigint FROM settings WHERE name = $1), 0)) + 1",
            id_floor_setting(table),
        )
        return int(value)


# -- connecting and migrating ----------------------------------------------------------------


async def _connect(url: PostgresURL, pool_size: int, connect_timeout: float) -> Pool:
    """A pool of up to pool_size connections that reached the server once; an unreachable
    server is retried until the deadline, a wrong URL (role, password, database) fails at once.
    Both raise StorageSetupError naming the server, never the password."""
    deadline = time.monotonic() + connect_timeout
    delay = 0.25
    warned = False
    while True:
        try:
            return await _reach(url, pool_size, connect_timeout)
        except _WRONG_URL as exc:
            raise StorageSetupError(f"cannot connect to PostgreSQL at {url.where}: {exc}") from exc
        except Exception as exc:
            if not is_unavailable(exc):
                # ValueError, say: asyncpg could not make sense of the URL (a bad sslmode).
                raise StorageSetupError(
                    f"cannot connect to PostgreSQL at {url.where}: {type(exc).__name__}: {exc}"
                ) from exc
            if time.monotonic() + delay > deadline:
                raise StorageSetupError(
                    f"cannot connect to PostgreSQL at {url.where} "
                    f"(tried for {connect_timeout:g} s): {type(exc).__name__}: {exc}"
                ) from exc
            if not warned:
                # INFO: the serve log shows it; an offline command prints only its one error.
                LOG.info(
                    "PostgreSQL at %s is not reachable yet (%s); retrying for up to %g s",
                    url.where,
                    exc,
                    connect_timeout,
                )
                warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _reach(url: PostgresURL, pool_size: int, connect_timeout: float) -> Pool:
    """A new pool, and one connection of it that answered."""
    pool = await asyncpg.create_pool(
        url.dsn,
        # No floor: asyncpg would keep reconnecting it in the background through an outage,
        # logging a traceback each time; connections are made when a read or write needs one.
        min_size=0,
        max_size=pool_size,
        timeout=min(_CONNECT_ATTEMPT_TIMEOUT, max(connect_timeout, 0.1)),
        command_timeout=_COMMAND_TIMEOUT,
        # The overview and latest_usage walks are costed high enough to be compiled by the JIT,
        # which makes them 5-30x slower (460 ms against 14 ms for a page at 10,000 accounts):
        # they are many small index seeks, not a big scan.
        server_settings={"jit": "off"},
    )
    try:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except BaseException:
        await pool.close()
        raise
    return pool


async def _schema_version(conn: Connection) -> int:
    """The version in codexgate_schema; 0 for a database without that table."""
    if await conn.fetchval("SELECT to_regclass('codexgate_schema')") is None:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM codexgate_schema"))


async def _migrate(conn: Connection, scripts: Sequence[Migration], url: PostgresURL) -> None:
    """Apply the migrations the database lacks, each in its own transaction, under an advisory
    lock: two instances starting together migrate once; refuse a database newer than the code."""
    latest = scripts[-1].number
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK_KEY)
        try:
            version = await _schema_version(conn)
            if version > latest:
                raise StorageSetupError(
                    f"database schema version {version} is newer than this codexgate supports "
                    f"({latest}); upgrade codexgate or use another --db"
                )
            for script in scripts:
                if script.number <= version:
                    continue
                async with conn.transaction():
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS codexgate_schema (version integer NOT NULL)"
                    )
                    await conn.execute(script.sql)
                    await conn.execute("DELETE FROM codexgate_schema")
                    await conn.execute(
                        "INSERT INTO codexgate_schema (version) VALUES ($1)", script.number
                    )
                LOG.info("applied migration %s to %s", script.name, url.where)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK_KEY)
    except StorageSetupError:
        raise
    except Exception as exc:
        raise StorageSetupError(f"cannot migrate the database at {url.where}: {exc}") from exc
