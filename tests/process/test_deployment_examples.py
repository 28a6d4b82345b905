"""The nginx and HAProxy configurations of docs/deployment.md, run as they are written (only the
ports changed) in front of two codexgate processes on one PostgreSQL database: streams arrive
unbuffered, WebSocket turns and long request bodies pass, healthz answers, requests are spread
over both instances, and when one is killed the balancer keeps every request succeeding."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson
import pytest
from aiohttp import ClientSession, ClientTimeout

from tests.helpers.admin_client import ADMIN
from tests.helpers.balancers import Balancer, checked_config, start_nginx
from tests.helpers.fake_upstream import sse_events
from tests.helpers.paths import DATA, REPO
from tests.helpers.processes import (
    GatewayProcess,
    UpstreamProcess,
    free_port,
    health,
)
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

DEPLOYMENT_DOC: Final = REPO / "docs" / "deployment.md"
# The addresses the examples are written with: the balancer, then the two instances.
DOC_BALANCER: Final = "127.0.0.1:8080"
DOC_INSTANCES: Final = ("127.0.0.1:8081", "127.0.0.1:8082")
HAPROXY: Final = Path("/usr/sbin/haproxy")

# The upstream streams turns of 6 + DELTAS events, EVENT_DELAY seconds apart: a turn takes
# 1.35 s upstream, so a buffering balancer would hand it over in one piece at the end.
DELTAS: Final = 4
EVENT_DELAY: Final = 0.15
TURN_SECONDS: Final = (5 + DELTAS) * EVENT_DELAY
TURNS_AT_ONCE: Final = 8
AUTHORIZATION: Final = bearer("seat_a")
# The first client frame of the recorded WebSocket session: a response.create.
WS_TURN_REQUEST: Final = orjson.dumps(
    next(
        orjson.loads(line)["frame"]
        for line in (DATA / "ws-frames.jsonl").read_bytes().splitlines()[1:]
        if orjson.loads(line)["dir"] == "client"
    )
).decode()


def documented_block(kind: str) -> str:
    """The fenced block right after `<!-- tested: <kind> ...-->` in docs/deployment.md."""
    pattern = rf"^<!-- tested: {kind}\b[^\n]*-->\n```{kind}\n(.*?)^```$"
    found = re.search(pattern, DEPLOYMENT_DOC.read_text(), re.MULTILINE | re.DOTALL)
    assert found is not None, f"docs/deployment.md has no tested {kind} block"
    return found.group(1)


def with_ports(config: str, balancer: int, instances: tuple[int, int]) -> str:
    """The documented config with its three addresses moved to free ports; nothing else."""
    replacements = {DOC_BALANCER: balancer, **dict(zip(DOC_INSTANCES, instances, strict=True))}
    for address, port in replacements.items():
        assert address in config, f"the example no longer uses {address}"
        config = config.replace(address, f"127.0.0.1:{port}")
    return config


def expected_turn() -> bytes:
    """The exact body the upstream process streams for a turn."""
    events = sse_events("stream-basic.sse")
    return b"".join([*events[:3], *[events[2]] * DELTAS, *events[3:]])


def documented_nginx(workdir: Path, port: int, instances: tuple[int, int]) -> Balancer:
    """Debian's nginx with the documented file, in the foreground."""
    return start_nginx(workdir, with_ports(documented_block("nginx"), port, instances), port)


def start_haproxy(workdir: Path, port: int, instances: tuple[int, int]) -> Balancer:
    """Debian's HAProxy with the documented haproxy.cfg, in the foreground (-db)."""
    assert HAPROXY.exists(), "haproxy is missing: `make test` installs Debian's haproxy"
    workdir.mkdir()
    config = workdir / "haproxy.cfg"
    config.write_text(with_ports(documented_block("haproxy"), port, instances))
    checked_config([HAPROXY, "-c", "-q", "-f", config])
    log_path = workdir / "stderr.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [HAPROXY, "-db", "-f", config], stdout=log, stderr=subprocess.STDOUT
        )
    return Balancer(process, port, log_path)


@dataclass
class Deployment:
    """Two codexgate instances on one database, and the upstream they relay to."""

    gateways: tuple[GatewayProcess, GatewayProcess]
    upstream: UpstreamProcess

    @property
    def ports(self) -> tuple[int, int]:
        return (self.gateways[0].port, self.gateways[1].port)


@pytest.fixture
async def deployment(tmp_path: Path, postgres_database: str) -> AsyncIterator[Deployment]:
    """The fake upstream and two codexgate processes on one fresh PostgreSQL database."""
    upstream = UpstreamProcess(free_port(), EVENT_DELAY, DELTAS, tmp_path / "upstream.log")
    gateways: list[GatewayProcess] = []
    try:
        await upstream.wait_ready()
        for number in (1, 2):
            workdir = tmp_path / f"codexgate-{number}"
            workdir.mkdir()
            args = ["serve", "--upstream", upstream.base, "--db", postgres_database]
            gateways.append(GatewayProcess(args, workdir, env={"CODEXGATE_ADMIN_TOKEN": ADMIN}))
        await asyncio.gather(*(gateway.wait_ready() for gateway in gateways))
        yield Deployment((gateways[0], gateways[1]), upstream)
    finally:
        for gateway in gateways:
            await gateway.stop()
        await upstream.kill()


async def streamed_turn(http: ClientSession, base: str) -> list[tuple[float, bytes]]:
    """POST a turn; each piece of the body with when it arrived."""
    pieces: list[tuple[float, bytes]] = []
    async with http.post(
        f"{base}/backend-api/codex/responses",
        data=b"{}",
        headers={"Authorization": AUTHORIZATION},
    ) as response:
        assert response.status == 200, await response.text()
        async for piece in response.content.iter_any():
            pieces.append((time.monotonic(), piece))
    return pieces


async def turns_at_once(http: ClientSession, base: str) -> None:
    """TURNS_AT_ONCE turns in parallel, each answered 200 and whole."""
    turns = await asyncio.gather(*(streamed_turn(http, base) for _ in range(TURNS_AT_ONCE)))
    for pieces in turns:
        assert b"".join(piece for _, piece in pieces) == expected_turn()


async def requests_logged(deployment: Deployment) -> tuple[int, int]:
    """Each instance's own count of requests it recorded, from its healthz."""
    first, second = [await health(gateway) for gateway in deployment.gateways]
    return first["requests"]["logged"], second["requests"]["logged"]


async def check_through(
    balancer: Balancer, deployment: Deployment, *, pause_after_kill: float = 0.0
) -> None:
    """Everything the Codex traffic needs from the balancer, then one instance killed and
    requests sent `pause_after_kill` seconds later."""
    async with ClientSession(timeout=ClientTimeout(total=30)) as http:
        async with http.get(f"{balancer.base}/codexgate/healthz") as response:
            assert response.status == 200
            assert orjson.loads(await response.read())["status"] == "ok"
        # The admin surface answers only known Host names: the balancer passes the client's.
        async with http.get(
            f"{balancer.base}/codexgate/api/v1/accounts",
            headers={"Authorization": f"Bearer {ADMIN}"},
        ) as response:
            assert response.status == 200, await response.text()

        # Unbuffered: the events arrive as the upstream sends them, over the turn's length.
        pieces = await streamed_turn(http, balancer.base)
        assert b"".join(piece for _, piece in pieces) == expected_turn()
        spread = pieces[-1][0] - pieces[0][0]
        assert spread > 0.6 * TURN_SECONDS, f"the turn came in {len(pieces)} piece(s) {spread}s"

        async with http.ws_connect(
            f"{balancer.base}/backend-api/codex/responses",
            headers={"Authorization": AUTHORIZATION},
        ) as ws:
            await ws.send_str(WS_TURN_REQUEST)
            frames = [orjson.loads((await ws.receive(timeout=10)).data) for _ in range(4)]
        assert frames[-1]["type"] == "response.completed"

        # A long conversation is a large request body: passed whole, not refused with 413.
        body = b"x" * (3 * 1024 * 1024)
        async with http.post(
            f"{balancer.base}/backend-api/echo/long-conversation",
            data=io.BytesIO(body),
            headers={"Authorization": AUTHORIZATION},
        ) as response:
            assert response.status == 200, await response.text()
            assert orjson.loads(await response.read())["body_length"] == len(body)

        # Spread over both instances: each one's own counter moves.
        before = await requests_logged(deployment)
        await turns_at_once(http, balancer.base)
        after = await eventually(
            lambda: requests_logged(deployment),
            accept=lambda counts: sum(counts) - sum(before) >= TURNS_AT_ONCE,
        )
        moved = [now - then for now, then in zip(after, before, strict=True)]
        assert min(moved) >= 2, f"requests per instance: {moved}"

        # One instance gone without a goodbye: every request through the balancer still works.
        deployment.gateways[0].kill()
        await asyncio.sleep(pause_after_kill)
        await turns_at_once(http, balancer.base)


async def test_the_nginx_example_streams_and_survives_an_instance_killed(
    tmp_path: Path, deployment: Deployment
) -> None:
    balancer = documented_nginx(tmp_path / "nginx", free_port(), deployment.ports)
    try:
        await balancer.wait_ready()
        await check_through(balancer, deployment)
        async with ClientSession(timeout=ClientTimeout(total=30)) as http:
            await turns_at_once(http, balancer.base)
    finally:
        await balancer.stop()
    # The requests the dead instance refused were passed on, and it was left out for a while.
    errors = (tmp_path / "nginx" / "error.log").read_text()
    assert "upstream server temporarily disabled" in errors, errors


async def test_the_haproxy_example_streams_and_survives_an_instance_killed(
    tmp_path: Path, deployment: Deployment
) -> None:
    balancer = start_haproxy(tmp_path / "haproxy", free_port(), deployment.ports)
    try:
        await balancer.wait_ready()
        # HAProxy closes, without an answer, a client connection whose request it sent in the
        # same instant on a kept-alive connection to the instance that just died (so that the
        # client retries, as after any kept-alive race): the requests come a moment later.
        await check_through(balancer, deployment, pause_after_kill=0.2)
        # The health check on healthz takes the dead instance out, and only that one.
        await eventually(lambda: "codexgate-1 is DOWN" in balancer.log(), timeout=15)
        async with ClientSession(timeout=ClientTimeout(total=30)) as http:
            await turns_at_once(http, balancer.base)
    finally:
        await balancer.stop()
    assert "codexgate-2 is DOWN" not in balancer.log(), balancer.log()
