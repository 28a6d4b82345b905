"""codexgate and the fake upstream as subprocesses, and what /proc says of a process."""

from __future__ import annotations

import asyncio
import functools
import os
import pty
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from aiohttp import ClientError, ClientSession

from tests.helpers.paths import REPO

# The fake upstream of tests/helpers/fake_upstream.py in a process of its own, so that it can be
# killed with SIGKILL, and so that load tests do not share one event loop between client and
# upstream.
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


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_answering(url: str, process: subprocess.Popen[bytes], within: float) -> bool:
    """Poll url until it answers 200 (True), the process exits or within runs out (False)."""
    deadline = asyncio.get_running_loop().time() + within
    async with ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline and process.poll() is None:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return True
            except ClientError:
                pass
            await asyncio.sleep(0.05)
    return False


def _limit_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


class GatewayProcess:
    """A codexgate subprocess with its own port and log file."""

    def __init__(
        self,
        args: Sequence[str],
        workdir: Path,
        env: dict[str, str] | None = None,
        admin_prefix: str = "codexgate",
        port: int | None = None,
        file_limit: int | None = None,
    ) -> None:
        """Start it; `file_limit` sets the process's hard and soft limits on open files."""
        self.port = port if port is not None else free_port()
        self.admin_prefix = admin_prefix
        self.log_path = workdir / "codexgate.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "codexgate", *args, "--port", str(self.port)],
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=None if file_limit is None else functools.partial(_limit_files, file_limit),
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, within: float = 20.0) -> None:
        """Wait until healthz answers, or fail with the process's log."""
        url = f"{self.base}/{self.admin_prefix}/healthz"
        if not await wait_answering(url, self.process, within):
            raise AssertionError(f"codexgate did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def terminate(self, within: float = 20.0) -> int:
        """SIGTERM, then wait for the exit code without blocking the loop."""
        self.process.send_signal(signal.SIGTERM)
        return await self.wait(within)

    async def wait(self, within: float = 20.0) -> int:
        code = await asyncio.wait_for(asyncio.to_thread(self.process.wait), within)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()

    async def stop(self) -> None:
        """Teardown: SIGTERM if still running, SIGKILL if that fails or times out."""
        try:
            if self.process.poll() is None:
                await self.terminate()
        finally:
            self.kill()


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


# What the reliability fixtures `start_upstream` and `start_gateway_process` hand a test.
StartUpstream = Callable[..., Awaitable[UpstreamProcess]]
StartGatewayProcess = Callable[..., Awaitable[GatewayProcess]]


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


def terminal_output(
    command: Sequence[str],
    *,
    stream: Literal["stdout", "stderr"],
    env: Mapping[str, str],
    cwd: Path | None = None,
) -> str:
    """Run command with `stream` on a pseudo-terminal (the other one to a pipe) until it exits
    0; what it wrote to the terminal."""
    main, child = pty.openpty()
    streams: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, stream: child}
    with subprocess.Popen(command, cwd=cwd, env=dict(env), **streams) as process:
        os.close(child)
        chunks = []
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
    os.close(main)
    return b"".join(chunks).decode()
