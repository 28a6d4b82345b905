"""A load of many keep-alive clients through a gateway process: turns and usage queries, each
answer checked byte for byte, every error kept."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Final

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

from tests.helpers.fake_upstream import sse_events
from tests.helpers.paths import DATA
from tests.helpers.processes import GatewayProcess
from tests.helpers.tokens import bearer

CONCURRENCY: Final = 64
# Turns of 20 events (the stream-basic sample with 14 more deltas), as the upstream process
# streams them when started with these.
DELTAS: Final = 14
EVENT_DELAY: Final = 0.002
SEATS: Final = ("seat_a", "seat_b", "personal")


@dataclass
class Tally:
    """What the load saw: requests answered whole, and every error."""

    requests: int = 0
    errors: list[str] = field(default_factory=list)


def expected_turn() -> bytes:
    """The exact body the upstream process streams for a turn."""
    events = sse_events("stream-basic.sse")
    return b"".join([*events[:3], *[events[2]] * DELTAS, *events[3:]])


async def load(gateway: GatewayProcess, seconds: float, tally: Tally) -> None:
    """CONCURRENCY clients on keep-alive connections for `seconds`: 3 turns, then a usage query."""
    turn = expected_turn()
    usage = (DATA / "wham-usage-plus.json").read_bytes()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def one(http: ClientSession, number: int) -> None:
        headers = {"Authorization": bearer(SEATS[number % len(SEATS)])}
        if number % 4 == 3:
            url, method, body, expected = "/backend-api/wham/usage", "GET", None, usage
        else:
            url, method, body, expected = "/backend-api/codex/responses", "POST", b"{}", turn
        try:
            async with http.request(
                method, f"{gateway.base}{url}", data=body, headers=headers
            ) as response:
                answer = await response.read()
        except (ClientError, TimeoutError) as exc:
            tally.errors.append(f"{method} {url}: {exc!r}")
            return
        if response.status != 200 or answer != expected:
            tally.errors.append(f"{method} {url}: {response.status}, {len(answer)} bytes")
            return
        tally.requests += 1

    async def client(http: ClientSession, index: int) -> None:
        number = index
        while loop.time() < deadline:
            await one(http, number)
            number += 1

    async with (
        ClientSession(
            connector=TCPConnector(limit=CONCURRENCY), timeout=ClientTimeout(total=30)
        ) as http,
        asyncio.TaskGroup() as clients,
    ):
        for index in range(CONCURRENCY):
            clients.create_task(client(http, index))
