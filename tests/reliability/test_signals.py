"""Stopping the real process: SIGTERM drains and flushes everything; kill -9 corrupts nothing."""

from __future__ import annotations

import asyncio
import copy
import functools
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from aiohttp.test_utils import TestServer

from codexgate.storage.sqlite.store import Store
from tests.helpers.fake_upstream import FakeUpstream, sse_events
from tests.helpers.processes import GatewayProcess, StartGatewayProcess, health
from tests.helpers.tokens import claims_of, make_jwt
from tests.helpers.waiting import eventually

TURN: Final = "/backend-api/codex/responses"
STREAM: Final = b"".join(sse_events("stream-basic.sse"))
GRACE: Final = 10.0
# Each turn of the slow load streams its 6 events over about 5 x this.
EVENT_DELAY: Final = 0.12


def seat(number: int) -> str:
    """A bearer token of a seat of its own: each turn's snapshot becomes a history row."""
    claims = copy.deepcopy(claims_of("seat_a"))
    claims["https://api.openai.com/auth"]["chatgpt_user_id"] = f"user-{number:05d}"
    return f"Bearer {make_jwt(claims)}"


@dataclass
class Load:
    """Workers that send turns until told to stop starting new ones, and what they saw."""

    gateway: GatewayProcess
    stop_starting: asyncio.Event = field(default_factory=asyncio.Event)
    started: int = 0
    completed: int = 0
    in_flight: int = 0
    failures: list[str] = field(default_factory=list)

    async def worker(self, http: ClientSession) -> None:
        while not self.stop_starting.is_set():
            number = self.started
            self.started += 1
            self.in_flight += 1
            try:
                async with http.post(
                    f"{self.gateway.base}{TURN}",
                    data=b"{}",
                    headers={"Authorization": seat(number)},
                ) as response:
                    body = await response.read()
                if response.status == 200 and body == STREAM:
                    self.completed += 1
                else:
                    self.failures.append(f"turn {number}: {response.status}, {len(body)} bytes")
            except Exception as exc:  # noqa: BLE001 - every failure is reported by the test
                self.failures.append(f"turn {number}: {exc!r}")
            finally:
                self.in_flight -= 1


def count_rows(db: Path) -> tuple[int, int, int]:
    """(usage_snapshots rows, requests rows, requests rows that are not a whole 200 turn)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        snapshots = connection.execute("SELECT count(*) FROM usage_snapshots").fetchone()[0]
        requests = connection.execute("SELECT count(*) FROM requests").fetchone()[0]
        broken = connection.execute(
            "SELECT count(*) FROM requests "
            "WHERE status != 200 OR error_code IS NOT NULL OR total_tokens IS NULL"
        ).fetchone()[0]
    connection.close()
    return int(snapshots), int(requests), int(broken)


async def refused(port: int) -> bool:
    """Whether a new TCP connection to the port is refused (or reset while connecting: the
    handshake raced the listening socket's close)."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def test_sigterm_drains_in_flight_streams_refuses_new_ones_and_keeps_every_snapshot(
    tmp_path: Path,
    start_gateway_process: StartGatewayProcess,
    upstream_server: TestServer,
    fake: FakeUpstream,
) -> None:
    fake.event_delay = EVENT_DELAY
    db = tmp_path / "codexgate.db"
    gateway = await start_gateway_process(
        "--upstream",
        f"http://127.0.0.1:{upstream_server.port}",
        "--db",
        str(db),
        "--shutdown-grace",
        str(GRACE),
    )
    load = Load(gateway)
    connector = TCPConnector(limit=0)
    async with ClientSession(connector=connector, timeout=ClientTimeout(total=30)) as http:
        workers = [asyncio.create_task(load.worker(http)) for _ in range(16)]
        # Run until turns have finished and new ones are mid-stream.
        await eventually(
            lambda: load.completed, accept=lambda done: done >= 16, timeout=10, interval=0.2
        )
        load.stop_starting.set()
        in_flight_at_signal = load.in_flight
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)

        # The listener closes at once, while the streams it accepted still run.
        while not await refused(gateway.port):
            assert time.monotonic() - signalled < 2, "still accepting connections"
            await asyncio.sleep(0.01)
        still_streaming = load.in_flight

        await asyncio.gather(*workers)
        code = await gateway.wait(within=GRACE + 10)
        stopped_after = time.monotonic() - signalled

    assert load.failures == []
    assert in_flight_at_signal >= 8
    assert still_streaming >= 1, "every stream had ended before the listener closed"
    assert load.completed == load.started
    assert code == 0
    assert stopped_after < GRACE  # the streams ended by themselves, well within the grace
    # Count in = rows out: every turn's header snapshot (each its own seat) and request row.
    assert await asyncio.to_thread(count_rows, db) == (load.completed, load.completed, 0)


async def test_kill_9_during_writes_leaves_a_database_that_opens_clean(
    tmp_path: Path,
    start_gateway_process: StartGatewayProcess,
    upstream_server: TestServer,
) -> None:
    db = tmp_path / "codexgate.db"
    upstream = f"http://127.0.0.1:{upstream_server.port}"
    recorded_before_kill = 0
    for round_number in range(3):  # each round reopens what the last kill left
        # Every turn is a new seat: lift the cap on accounts that traffic may create.
        gateway = await start_gateway_process(
            "--upstream", upstream, "--db", str(db), "--max-accounts", "1000000"
        )
        load = Load(gateway, started=round_number * 1_000_000)  # new seats every round
        async with ClientSession(connector=TCPConnector(limit=0)) as http:
            workers = [asyncio.create_task(load.worker(http)) for _ in range(24)]
            try:
                state = await eventually(
                    functools.partial(health, gateway),
                    accept=lambda h: h["snapshots"]["recorded"] >= 200,
                    timeout=20,
                    interval=0.2,
                )
                assert state["snapshots"]["recorded"] >= 200
                gateway.process.send_signal(signal.SIGKILL)
            finally:
                load.stop_starting.set()
                await asyncio.gather(*workers)
            assert await gateway.wait() == -signal.SIGKILL
        recorded_before_kill += state["snapshots"]["recorded"]

    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    connection.close()
    store = await Store.open(db)
    try:
        # What was committed before each kill is still there.
        assert await store.count_history() >= recorded_before_kill
        assert len(await store.accounts()) >= recorded_before_kill
    finally:
        await store.close()
