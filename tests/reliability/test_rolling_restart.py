"""Rolling restarts on one machine: a new codexgate listens on the same port (`--reuse-port`)
while the old one drains, under load, on SQLite (one file, two processes) and on PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import signal
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

from tests.helpers.paths import DATA
from tests.helpers.postgres import PostgresServer
from tests.helpers.processes import GatewayProcess, StartUpstream, free_port, health
from tests.helpers.soak import DELTAS, expected_turn
from tests.helpers.tokens import claims_of, make_jwt

pytestmark = pytest.mark.backends("sqlite", "postgresql")

log = logging.getLogger(__name__)

CLIENTS: Final = 16
# A turn streams 20 events this far apart (~0.4 s): at any moment most clients are mid-stream.
EVENT_DELAY: Final = 0.02
GRACE: Final = 10.0
# The load runs this long against the old one before the new one starts, and against the new
# one alone after the old one exited.
PHASE_SECONDS: Final = 2.0
TURN: Final = "/backend-api/codex/responses"
USAGE: Final = "/backend-api/wham/usage"

StartGateway = Callable[..., Awaitable[GatewayProcess]]


def seat(number: int) -> str:
    """A bearer token of a seat of its own: each request's snapshot becomes a history row."""
    claims = copy.deepcopy(claims_of("seat_a"))
    claims["https://api.openai.com/auth"]["chatgpt_user_id"] = f"user-{number:06d}"
    return f"Bearer {make_jwt(claims)}"


@dataclass
class Load:
    """CLIENTS keep-alive clients sending turns and usage queries (one in four) until stopped;
    every answer is checked byte for byte, every failure kept."""

    base: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    answered: int = 0
    in_flight: int = 0
    errors: list[str] = field(default_factory=list)

    async def run(self) -> None:
        turn = expected_turn()
        usage = (DATA / "wham-usage-plus.json").read_bytes()
        async with (
            ClientSession(
                connector=TCPConnector(limit=CLIENTS), timeout=ClientTimeout(total=30)
            ) as http,
            asyncio.TaskGroup() as clients,
        ):
            for _ in range(CLIENTS):
                clients.create_task(self._client(http, turn, usage))

    async def _client(self, http: ClientSession, turn: bytes, usage: bytes) -> None:
        while not self.stop.is_set():
            number = self.sent
            self.sent += 1
            if number % 4 == 3:
                method, path, body, expected = "GET", USAGE, None, usage
            else:
                method, path, body, expected = "POST", TURN, b"{}", turn
            self.in_flight += 1
            try:
                async with http.request(
                    method, self.base + path, data=body, headers={"Authorization": seat(number)}
                ) as response:
                    answer = await response.read()
            except (ClientError, TimeoutError) as exc:
                self.errors.append(f"{method} {path} #{number}: {exc!r}")
                continue
            finally:
                self.in_flight -= 1
            if response.status != 200 or answer != expected:
                self.errors.append(f"{method} {path} #{number}: {response.status}, {len(answer)} B")
                continue
            self.answered += 1


class NotifySocket:
    """Where a gateway started with NOTIFY_SOCKET tells its state, as systemd would read it."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self._socket.setblocking(False)

    async def expect(self, state: str, within: float) -> None:
        """Wait for the datagram `state`; fail on another one or after `within` seconds."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within):
            message = await loop.sock_recv(self._socket, 4096)
        assert message.decode() == state

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
async def start_gateway(tmp_path: Path) -> AsyncIterator[StartGateway]:
    """Start `codexgate serve` processes on a port of the test's choosing; stopped after."""
    started: list[GatewayProcess] = []

    async def start(
        name: str, *args: str, port: int, env: dict[str, str] | None = None
    ) -> GatewayProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        gateway = GatewayProcess(["serve", *args], workdir, env=env, port=port)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        try:
            if gateway.process.poll() is None:
                await gateway.terminate()
        finally:
            gateway.kill()


@dataclass
class Database:
    """Where both gateways keep their data, and how to count what they wrote."""

    location: str
    postgres: PostgresServer | None = None

    async def counts(self) -> tuple[int, int, int]:
        """(history rows, request rows, request rows that are a whole 200)."""
        queries = (
            "SELECT count(*) AS n FROM usage_snapshots",
            "SELECT count(*) AS n FROM requests",
            "SELECT count(*) AS n FROM requests WHERE status = 200 AND error_code IS NULL",
        )
        if self.postgres is not None:
            postgres = self.postgres
            results = [await postgres.run_sql(self.location, query) for query in queries]
            history, requests, whole = (int(rows[0]["n"]) for rows in results)
            return history, requests, whole
        return await asyncio.to_thread(self._sqlite_counts, queries)

    def _sqlite_counts(self, queries: tuple[str, ...]) -> tuple[int, int, int]:
        with sqlite3.connect(f"file:{self.location}?mode=ro", uri=True) as connection:
            history, requests, whole = (
                int(connection.execute(query).fetchone()[0]) for query in queries
            )
        connection.close()
        return history, requests, whole


@pytest.fixture
async def shared_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Database]:
    """A new SQLite file or PostgreSQL database for the gateways of one test."""
    if backend == "sqlite":
        yield Database(str(tmp_path / "codexgate.db"))
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = await server.fresh_database()
    yield Database(url, server)
    await server.drop_database(url)


async def test_a_rolling_restart_under_load_fails_no_request_and_loses_no_row(
    tmp_path: Path,
    start_upstream: StartUpstream,
    start_gateway: StartGateway,
    shared_database: Database,
) -> None:
    upstream = await start_upstream(event_delay=EVENT_DELAY, deltas=DELTAS)
    port = free_port()
    settings = (
        *("--upstream", upstream.base, "--db", shared_database.location, "--reuse-port", "on"),
        *("--shutdown-grace", str(GRACE), "--max-accounts", "1000000"),
    )
    old = await start_gateway("old", *settings, port=port)
    await old.wait_ready()
    load = Load(old.base)
    running = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(PHASE_SECONDS)  # the old one alone
        # The new one says READY=1 once it listens, as a Type=notify systemd unit waits for.
        notify = NotifySocket(str(tmp_path / "notify"))
        try:
            new = await start_gateway(
                "new", *settings, port=port, env={"NOTIFY_SOCKET": notify.address}
            )
            await notify.expect("READY=1", within=30)
        finally:
            notify.close()
        answered_by_old_alone = load.answered
        in_flight_at_signal = load.in_flight
        old.process.send_signal(signal.SIGTERM)
        old_code = await old.wait(within=GRACE + 10)
        answered_when_old_exited = load.answered
        await asyncio.sleep(PHASE_SECONDS)  # the new one alone
    finally:
        load.stop.set()
        await running

    log.info(
        "rolling restart: %d answered by the old one alone, %d in flight at SIGTERM, "
        "%d when it exited, %d in all; errors: %s",
        answered_by_old_alone,
        in_flight_at_signal,
        answered_when_old_exited,
        load.answered,
        load.errors,
    )
    assert load.errors == []
    assert old_code == 0
    assert in_flight_at_signal >= CLIENTS // 2
    draining = re.search(r"draining: .*; (\d+) connections open, (\d+) of them with a", old.log())
    assert draining is not None, old.log()
    assert int(draining[2]) >= 1  # streams were in flight at the old one when it drained
    assert "drained in " in old.log()
    assert answered_by_old_alone >= 2 * CLIENTS
    assert load.answered >= answered_when_old_exited + 2 * CLIENTS
    # The new one was answering before the old one left, and alone after.
    assert (await health(new))["status"] == "ok"
    assert await new.terminate(within=GRACE + 10) == 0

    # Snapshots in = rows out: every answered request (each its own seat) is one history row and
    # one request row, from whichever process answered it, and nothing else was written.
    assert await shared_database.counts() == (load.answered, load.answered, load.answered)


async def test_without_reuse_port_a_second_process_on_the_port_fails_saying_why(
    start_gateway: StartGateway,
) -> None:
    port = free_port()
    first = await start_gateway("first", port=port)
    await first.wait_ready()

    plain = await start_gateway("plain", port=port)
    assert await plain.wait(within=30) == 1
    assert (
        f"cannot start: [Errno 98] 127.0.0.1:{port} is in use by another process (to start a "
        "new codexgate there while the old one drains, start both with --reuse-port on)"
    ) in plain.log()

    # --reuse-port on the new one alone is not enough: the kernel asks it of both.
    reusing = await start_gateway("reusing", "--reuse-port", "on", port=port)
    assert await reusing.wait(within=30) == 1
    assert (
        f"cannot start: [Errno 98] 127.0.0.1:{port} is in use by a process started without "
        "--reuse-port on (or by another user)"
    ) in reusing.log()

    assert (await health(first))["status"] == "ok"


async def test_systemd_hears_ready_once_listening_and_stopping_at_sigterm(
    start_gateway: StartGateway,
) -> None:
    notify = NotifySocket(f"@codexgate-test-{free_port()}")  # an abstract socket, as systemd's
    try:
        port = free_port()
        gateway = await start_gateway("notified", port=port, env={"NOTIFY_SOCKET": notify.address})
        await notify.expect("READY=1", within=30)
        # Listening already: a connection is accepted at once.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        gateway.process.send_signal(signal.SIGTERM)
        await notify.expect("STOPPING=1", within=10)
        assert await gateway.wait() == 0
    finally:
        notify.close()
