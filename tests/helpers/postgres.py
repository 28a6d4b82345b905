"""A throwaway PostgreSQL server for the tests: its own cluster in a temporary folder, Debian's
binaries, a random superuser password, settings for speed over durability.

The server listens on 127.0.0.1 (password required, scram-sha-256) and on a unix socket in its
folder (trusted, for the helper's own administration). It can be stopped and started again on
the same port with the same data, which is how the reliability tests make an outage.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg

from tests.helpers.processes import free_port

# Where Debian's postgresql-NN packages put their programs: /usr/lib/postgresql/NN/bin.
DEBIAN_PREFIX: Final = Path("/usr/lib/postgresql")
SUPERUSER: Final = "codexgate_test"
# PostgreSQL refuses to run as root; Debian's package creates this account.
SERVER_ACCOUNT: Final = "postgres"
READY_WITHIN: Final = 30.0
STOP_WITHIN: Final = 30.0

# A test cluster trades durability for speed: nothing here must survive a power cut. It must
# survive its own crash though (stop(immediate=True)), so synchronous_commit stays on: with
# fsync off it costs nothing measurable, and off it would lose commits already acknowledged.
SERVER_SETTINGS: Final = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",  # required by wal_level=minimal
    "max_wal_size": "1GB",
    "checkpoint_timeout": "1h",
    "shared_buffers": "32MB",
    "max_connections": "200",
    "jit": "off",
    "timezone": "UTC",
}

_DATABASE_NAME: Final = re.compile(r"[a-z_][a-z0-9_]*")


class PostgresNotInstalled(RuntimeError):
    """PostgreSQL's server programs (or the account to run them as) are missing."""


def find_bin_dir() -> Path:
    """The newest Debian PostgreSQL bin folder that has both initdb and postgres."""
    found = [
        initdb.parent
        for initdb in DEBIAN_PREFIX.glob("*/bin/initdb")
        if (initdb.parent / "postgres").is_file()
    ]
    if not found:
        raise PostgresNotInstalled(
            f"PostgreSQL is not installed (no {DEBIAN_PREFIX}/*/bin/initdb); run `make test`, "
            "which installs it, or `apt-get install postgresql`"
        )
    return max(found, key=lambda folder: _version_key(folder.parent.name))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _server_account() -> dict[str, Any]:
    """subprocess arguments that run a program as the account PostgreSQL may run as."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        raise PostgresNotInstalled(
            f"running as root and there is no `{SERVER_ACCOUNT}` user to run PostgreSQL as "
            "(Debian's postgresql package creates it); run `make test` or "
            "`apt-get install postgresql`"
        ) from None
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is pid, from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name may hold spaces and parentheses: the fields follow its last ")".
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def database_name(database: str) -> str:
    """The database a URL names, or the name itself; only names fresh_database() makes."""
    name = urlsplit(database).path.lstrip("/") if "://" in database else database
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"not a test database name: {name!r}")
    return name


class PostgresServer:
    """A PostgreSQL cluster of its own in a temporary folder, started on a free loopback port.

    Creating one runs initdb and starts the server; `close()` stops it and removes the folder
    (also done at interpreter exit if a test forgot).
    """

    def __init__(self) -> None:
        """Create the cluster and start the server; fails with the server log if it cannot."""
        self.bin_dir = find_bin_dir()
        self._account = _server_account()
        self.folder = Path(tempfile.mkdtemp(prefix="codexgate-pg-"))
        self.data_dir = self.folder / "data"
        self.log_path = self.folder / "server.log"
        self.port = free_port()
        self._password = secrets.token_hex(16)
        self._process: subprocess.Popen[bytes] | None = None
        self._numbers = itertools.count(1)
        self._emptied: str | None = None  # emptied_database()'s URL, once made
        atexit.register(self.close)
        try:
            self._initdb()
            self.start()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<PostgresServer 127.0.0.1:{self.port} in {self.folder}>"

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The superuser's URL of the `postgres` database over TCP, password included."""
        return self.url_of("postgres")

    def url_of(self, name: str) -> str:
        """The superuser's URL of the database `name` over TCP, password included."""
        return f"postgresql://{SUPERUSER}:{self._password}@127.0.0.1:{self.port}/{name}"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (also its process group's), while it is started."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may still be starting or stopping)."""
        return self._process is not None and self._process.poll() is None

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Run one of the cluster's programs as the server's account; fail with its output."""
        result = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            cwd=self.folder,
            env=self._environment(),
            capture_output=True,
            check=False,
            **self._account,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise RuntimeError(f"{args[0]} failed ({result.returncode}):\n{output[-3000:]}")
        return result

    def _environment(self) -> dict[str, str]:
        # Nothing of the caller's PG* variables, locale or home reaches the server.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def _initdb(self) -> None:
        password_file = self.folder / "password"
        password_file.write_text(self._password, encoding="utf-8")
        password_file.chmod(0o600)
        if self._account:
            os.chown(self.folder, self._account["user"], self._account["group"])
            os.chown(password_file, self._account["user"], self._account["group"])
        try:
            self._run(
                "initdb",
                "--pgdata", str(self.data_dir),
                "--username", SUPERUSER,
                "--pwfile", str(password_file),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            )  # fmt: skip
        finally:
            password_file.unlink()

    def start(self) -> None:
        """Start the server on its port and wait until it takes connections over TCP."""
        if self.running:
            return
        settings = [f"--{name}={value}" for name, value in SERVER_SETTINGS.items()]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D", str(self.data_dir),
                    "-p", str(self.port),
                    "-k", str(self.folder),
                    *settings,
                ],
                cwd=self.folder,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C at the terminal reaches pytest, which closes it.
                start_new_session=True,
                **self._account,
            )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN
        # Asked through the socket in its own folder: on 127.0.0.1 another server that took the
        # port would answer instead. The postmaster exits if it cannot listen on the TCP port.
        probe = [
            str(self.bin_dir / "pg_isready"),
            "-q",
            "-h",
            str(self.folder),
            "-p",
            str(self.port),
        ]
        while time.monotonic() < deadline and self.running:
            if subprocess.run(probe, env=self._environment(), check=False).returncode == 0:
                return
            time.sleep(0.02)
        exited = not self.running
        self.stop(immediate=True)
        state = "exited" if exited else f"was not ready within {READY_WITHIN:g} s"
        raise RuntimeError(f"PostgreSQL {state}; its log ends with:\n{self.log_tail()}")

    def stop(self, *, immediate: bool = False) -> None:
        """Stop the server: a fast shutdown (clients disconnected, a clean checkpoint), or with
        `immediate` a crash-like one that needs recovery at the next start. Data and port stay.
        """
        process = self._process
        if process is None:
            return
        self._process = None
        # The postmaster waits for its children in both shutdowns; escalate to an immediate one
        # (it kills them), then to SIGKILL for the postmaster and its children both (each child
        # is a process group of its own, so killing the postmaster's group would miss them).
        for stop_signal in (signal.SIGQUIT if immediate else signal.SIGINT, signal.SIGQUIT):
            if process.poll() is not None:
                return
            process.send_signal(stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_WITHIN)
        for child in child_pids(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        process.kill()
        process.wait()

    async def start_async(self) -> None:
        """start() without blocking the event loop (a gateway may be serving meanwhile)."""
        await asyncio.to_thread(self.start)

    async def stop_async(self, *, immediate: bool = False) -> None:
        """stop() without blocking the event loop (a gateway may be serving meanwhile)."""
        await asyncio.to_thread(self.stop, immediate=immediate)

    def close(self) -> None:
        """Stop the server for good and remove its folder."""
        atexit.unregister(self.close)
        self.stop(immediate=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, characters: int = 4000) -> str:
        """The end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except FileNotFoundError:
            return "(no log)"

    @contextlib.asynccontextmanager
    async def _admin(self, database: str = "postgres") -> AsyncIterator[asyncpg.Connection]:
        # Over the unix socket, trusted: no password, and a connection per call so that any
        # test's event loop can use the helper.
        connection = await asyncpg.connect(
            host=str(self.folder), port=self.port, user=SUPERUSER, database=database
        )
        try:
            yield connection
        finally:
            await connection.close()

    async def fresh_database(self) -> str:
        """Create a new, empty database; its URL over TCP with the superuser's password."""
        name = f"test_{next(self._numbers)}"
        async with self._admin() as connection:
            # template0 is empty and never connected to, so copying it never waits. Copying its
            # files (PostgreSQL 15+) takes ~30 ms here against ~40 ms for the default WAL_LOG.
            # (A template already migrated is slower to copy than migrating: ~0.45 s vs ~0.2 s.)
            strategy = " STRATEGY FILE_COPY" if connection.get_server_version().major >= 15 else ""
            await connection.execute(f"CREATE DATABASE {name} TEMPLATE template0{strategy}")
        return self.url_of(name)

    async def emptied_database(self) -> str:
        """The URL of a database that holds codexgate's schema and no rows: the same database
        each time, migrated once, its tables emptied (and their ids restarted) per call.

        For tests that only use codexgate's tables: ~30 ms against ~0.3 s for a new database
        that codexgate then migrates. Whoever still holds a connection to it is cut off.
        """
        if self._emptied is None:
            # Imported here: the server helper itself needs nothing of codexgate.
            from codexgate.storage import open_storage
            from codexgate.storage.location import parse_database

            url = await self.fresh_database()
            store = await open_storage(parse_database(url))
            await store.close()
            self._emptied = url
            return url
        async with self._admin(database_name(self._emptied)) as connection:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            tables = await connection.fetch(
                "SELECT quote_ident(table_name) AS name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' "
                "AND table_name <> 'codexgate_schema'"
            )
            names = ", ".join(row["name"] for row in tables)
            await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        return self._emptied

    async def drop_database(self, database: str) -> None:
        """Drop a database fresh_database() made (URL or name), disconnecting its clients."""
        async with self._admin() as connection:
            await connection.execute(
                f"DROP DATABASE IF EXISTS {database_name(database)} WITH (FORCE)"
            )

    async def run_sql(self, database: str, sql: str, *args: object) -> list[asyncpg.Record]:
        """Run one statement as the superuser in a database (URL or name); its rows."""
        async with self._admin(database_name(database)) as connection:
            return await connection.fetch(sql, *args)
