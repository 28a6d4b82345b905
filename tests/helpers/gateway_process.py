"""Run `python -m codexgate` as a real process for tests."""

from __future__ import annotations

import asyncio
import functools
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import ClientError, ClientSession


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
