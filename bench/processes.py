"""The bench's child processes (fake upstream, codexgate): start, wait until ready, always stop."""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from aiohttp import ClientError, ClientSession, ClientTimeout

LOOPBACK: Final = "127.0.0.1"
READY_WITHIN: Final = 20.0
STOP_WITHIN: Final = 40.0  # codexgate gives in-flight streams up to 30 s by default
LOG_TAIL_LINES: Final = 20


class BenchError(Exception):
    """The bench cannot go on (a process did not start, or a target stopped answering)."""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports."""
    for _ in range(10):
        ports = [free_port() for _ in range(count)]
        if len(set(ports)) == count:
            return ports
    raise BenchError(f"could not find {count} distinct free loopback ports")


def raise_open_files_limit() -> int:
    """Raise this process's open-file limit to the hard limit (children inherit it); the limit.

    1,000 idle streams take 1,000 sockets in the load generator and 2,000 in a proxy.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return wanted
    return soft


def child_environment() -> dict[str, str]:
    """The environment of the children: loopback never goes through an HTTP proxy."""
    return {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@dataclass
class Service:
    """A child process with a log file; a context manager that always stops it."""

    name: str
    argv: list[str]
    cwd: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)  # on top of child_environment()
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    stop_seconds: float | None = None
    killed: bool = False
    _log: IO[bytes] | None = field(default=None, repr=False)

    def __enter__(self) -> Service:
        """Start the process, its output going to the log file."""
        self._log = self.log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**child_environment(), **self.env},
            )
        except OSError:
            self._log.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the process whatever happened."""
        self.stop()

    def stop(self, within: float = STOP_WITHIN) -> None:
        """SIGTERM, wait up to `within` seconds, then SIGKILL; records exit code and duration."""
        process = self.process
        if process is not None and self.exit_code is None:
            started = time.perf_counter()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                self.exit_code = process.wait(timeout=within)
            except subprocess.TimeoutExpired:
                process.kill()
                self.exit_code = process.wait()
                self.killed = True
            self.stop_seconds = time.perf_counter() - started
        if self._log is not None:
            self._log.close()
            self._log = None

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def log_lines(self) -> list[str]:
        """Everything the process wrote so far."""
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(errors="replace").splitlines()

    def log_tail(self) -> str:
        """The last lines the process wrote, for error messages."""
        return "\n".join(self.log_lines()[-LOG_TAIL_LINES:]) or "(no output)"


async def wait_ready(service: Service, url: str, within: float = READY_WITHIN) -> None:
    """Poll `url` until it answers 200, or fail with the process's log."""
    deadline = time.perf_counter() + within
    timeout = ClientTimeout(total=2.0)
    async with ClientSession(timeout=timeout) as session:
        while time.perf_counter() < deadline:
            if not service.running():
                raise BenchError(f"{service.name} exited early:\n{service.log_tail()}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise BenchError(f"{service.name} was not ready within {within:g}s:\n{service.log_tail()}")


def codexgate_service(
    name: str,
    *,
    port: int,
    upstream_port: int,
    workdir: Path,
    log_name: str,
    extra_args: Sequence[str],
    capture: str = "on",
    env: dict[str, str] | None = None,
) -> Service:
    """A codexgate on `port` relaying to the upstream on `upstream_port`, not started yet."""
    return Service(
        name=name,
        argv=[
            sys.executable,
            "-m",
            "codexgate",
            "--port",
            str(port),
            "--upstream",
            f"http://{LOOPBACK}:{upstream_port}",
            "--log-level",
            "WARNING",
            # Every load client and idle stream comes from one loopback address, as nothing
            # limits nginx per address here either.
            "--max-connections-per-address",
            "0",
            *extra_args,
            "--capture",  # last, so that it wins over a --capture among the extra arguments
            capture,
        ],
        cwd=workdir,
        log_path=workdir / log_name,
        # A token of its own, so that codexgate does not make one up and log it; never shown.
        # A PostgreSQL URL goes in `env` too: as an argument its password would be in the
        # process list.
        env={"CODEXGATE_ADMIN_TOKEN": secrets.token_urlsafe(32), **(env or {})},
    )
