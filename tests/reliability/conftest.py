"""Reliability fixtures: real processes (codexgate, the fake upstream), what /proc says of them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
import pytest
from aiohttp import ClientSession

from tests.helpers.gateway_process import GatewayProcess, free_port, wait_answering

REPO: Final = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# The fake upstream of tests/helpers/fake_upstream.py in a process of its own, so that it can be killed
# with SIGKILL, and so that load tests do not share one event loop between client and upstream.
# Its turns are the stream-basic sample with `deltas` more text deltas, `delay` seconds apart.
_UPSTREAM_MAIN: Final = """
import sys
from aiohttp import web
from tests.helpers.fake_upstream import FakeUpstream, sse_events

port, delay, deltas = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
events = sse_events("stream-basic.sse")
turn = [*events[:3], *[events[2]] * deltas, *events[3:]]
app = FakeUpstream(events=turn, event_delay=delay).app()
web.run_app(app, host="127.0.0.1", port=port, print=None, auto_decompress=False)
"""


class UpstreamProcess:
    """The fake upstream served by a subprocess on a loopback port."""

    def __init__(self, port: int, event_delay: float, deltas: int, log_path: Path) -> None:
        self.port = port
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _UPSTREAM_MAIN, str(port), str(event_delay), str(deltas)],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, within: float = 20.0) -> None:
        """Wait until the upstream answers HTTP."""
        if not await wait_answering(f"{self.base}/backend-api/echo/ready", self.process, within):
            code = self.process.poll()
            raise AssertionError(f"the fake upstream did not become ready (exit code {code})")

    async def kill(self) -> None:
        """SIGKILL: every connection it had is gone at once, without a goodbye."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.process.wait)
        self._log.close()


StartUpstream = Callable[..., Awaitable[UpstreamProcess]]
StartGateway = Callable[..., Awaitable[GatewayProcess]]


@pytest.fixture
async def start_upstream(tmp_path: Path) -> AsyncIterator[StartUpstream]:
    """Start fake upstream processes (`port`, `event_delay`, `deltas`); all killed at teardown."""
    started: list[UpstreamProcess] = []

    async def start(
        port: int | None = None, event_delay: float = 0.0, deltas: int = 0
    ) -> UpstreamProcess:
        upstream = UpstreamProcess(
            port if port is not None else free_port(),
            event_delay,
            deltas,
            tmp_path / "upstream.log",
        )
        started.append(upstream)
        await upstream.wait_ready()
        return upstream

    yield start
    for upstream in started:
        await upstream.kill()


@pytest.fixture
async def start_gateway_process(tmp_path: Path) -> AsyncIterator[StartGateway]:
    """Start `python -m codexgate serve <args>` processes, each in its own folder; stopped after."""
    started: list[GatewayProcess] = []

    async def start(*args: str) -> GatewayProcess:
        workdir = tmp_path / f"gateway-{len(started)}"
        workdir.mkdir()
        gateway = GatewayProcess(["serve", *args], workdir)
        started.append(gateway)
        await gateway.wait_ready()
        return gateway

    yield start
    for gateway in started:
        try:
            if gateway.process.poll() is None:
                await gateway.terminate()
        finally:
            gateway.kill()


async def health(gateway: GatewayProcess) -> dict[str, Any]:
    """The gateway's healthz answer."""
    async with (
        ClientSession() as session,
        session.get(f"{gateway.base}/{gateway.admin_prefix}/healthz") as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = orjson.loads(await response.read())
        return body


def rss_bytes(pid: int) -> int:
    """The resident set size of a process (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    """How many file descriptors a process holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def tcp_connections(pid: int, remote_port: int) -> int:
    """TCP sockets a process holds open to `remote_port`, in any state (CLOSE_WAIT included)."""
    # /proc/<pid>/net/tcp lists the whole network namespace; the process's own sockets are the
    # ones whose inode one of its file descriptors points at.
    inodes = _socket_inodes(pid)
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port_hex = fields[2].rsplit(":", 1)[1]
            if int(fields[9]) in inodes and int(remote_port_hex, 16) == remote_port:
                count += 1
    return count


async def settle(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], within: float
) -> T:
    """Poll `probe` until `accept` takes its value or `within` seconds pass; the last value."""
    deadline = asyncio.get_running_loop().time() + within
    value = await probe()
    while not accept(value) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        value = await probe()
    return value
