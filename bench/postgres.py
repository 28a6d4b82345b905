"""The throwaway PostgreSQL server of the bench's PostgreSQL cases: the tests' own helper.

It is tests/helpers/postgres.py's cluster (Debian's programs in /usr/lib/postgresql/NN/bin, a
temporary folder, run as the `postgres` account when root) with the tests' settings: fsync and
full_page_writes off. A commit therefore never waits for the disk, so its figures are an upper
bound for a server that flushes its WAL on every commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from codexgate.storage.location import PostgresURL
from tests.helpers.postgres import SERVER_SETTINGS, PostgresNotInstalled, PostgresServer

from . import procfs
from .processes import BenchError

NOT_INSTALLED: Final = "not run: PostgreSQL not installed (make test installs it)"
LEFT_OUT: Final = "not run (--no-postgresql)"


@dataclass(frozen=True, slots=True)
class BenchPostgres:
    """A started server, or None and why the PostgreSQL cases do not run."""

    server: PostgresServer | None
    note: str

    async def fresh_database(self) -> PostgresURL:
        """A new empty database on the server, as codexgate's --db takes it."""
        if self.server is None:
            raise BenchError(f"PostgreSQL {self.note}")
        return PostgresURL(await self.server.fresh_database())

    def pids(self) -> tuple[int, ...]:
        """The postmaster and every process under it (backends, WAL writer, checkpointer)."""
        pid = None if self.server is None else self.server.pid
        return () if pid is None else (pid, *procfs.children(pid))


def describe_server(server: PostgresServer) -> str:
    """Which PostgreSQL and how durable its commits are, for the bench's output."""
    durability = ", ".join(
        f"{name}={SERVER_SETTINGS[name]}"
        for name in ("fsync", "full_page_writes")
        if name in SERVER_SETTINGS
    )
    flushes = SERVER_SETTINGS.get("fsync", "on") != "off"
    meaning = (
        "each commit waits for its WAL to reach the disk"
        if flushes
        else "commits never wait for the disk, so its figures are an upper bound for a durable "
        "server"
    )
    return (
        f"PostgreSQL {server.bin_dir.parent.name} on loopback, the tests' throwaway cluster "
        f"(tests/helpers/postgres.py) with {durability}: {meaning}"
    )


@contextlib.contextmanager
def bench_postgres(wanted: bool) -> Iterator[BenchPostgres]:
    """A throwaway server for as long as the block runs, when wanted and installed."""
    if not wanted:
        yield BenchPostgres(None, LEFT_OUT)
        return
    try:
        server = PostgresServer()
    except PostgresNotInstalled:
        print(f"bench: PostgreSQL cases {NOT_INSTALLED}", flush=True)
        server = None
    except RuntimeError as exc:  # initdb failed, or the server did not start: its log says why
        raise BenchError(f"the bench's PostgreSQL server did not start: {exc}") from exc
    if server is None:
        yield BenchPostgres(None, NOT_INSTALLED)
        return
    with server:
        description = describe_server(server)
        print(f"started {description}", flush=True)
        yield BenchPostgres(server, description)
