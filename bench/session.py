"""The processes of one bench session: the fake upstream and every proxy, started and stopped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from . import nginx, procfs
from .before import Revision
from .idle import IdleResult, idle_streams
from .loops import loop_factory
from .processes import LOOPBACK, Service, codexgate_service, free_ports, wait_ready
from .protocol import PING_PATH, REPO_ROOT
from .report import BEFORE, CAPTURE_OFF, CAPTURE_ON, DIRECT, NGINX, TARGETS
from .run import RunResult, Target, run, workload
from .settings import Settings

HEALTH_PATH = "/codexgate/healthz"


@dataclass(frozen=True, slots=True)
class Stopped:
    """How one proxy process stopped, and what it logged at WARNING and above."""

    name: str
    exit_code: int | None
    stop_seconds: float | None
    killed: bool
    log: list[str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished run, the idle-stream figures, and how each proxy behaved around it."""

    result: RunResult
    idle: list[IdleResult]
    gateways: list[Stopped]
    nginx: Stopped | None
    before: Revision | None = None  # the --before revision, measured as BEFORE


@dataclass(frozen=True, slots=True)
class Proxy:
    """A process the bench starts, where it listens, and the URL that answers once it is up."""

    name: str
    service: Service
    base: str
    ready_path: str


def _origin(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def _gateway(
    settings: Settings, workdir: Path, port: int, upstream_port: int, capture: bool
) -> Proxy:
    """A codexgate instance with its own port, database and log, capture on or off."""
    switch = "on" if capture else "off"
    service = codexgate_service(
        f"codexgate (capture {switch})",
        port=port,
        upstream_port=upstream_port,
        workdir=workdir,
        log_name=f"codexgate-capture-{switch}.log",
        extra_args=["--db", str(workdir / f"bench-capture-{switch}.db"), *settings.gateway_args],
        capture=switch,
    )
    return Proxy(CAPTURE_ON if capture else CAPTURE_OFF, service, _origin(port), HEALTH_PATH)


def _before_gateway(
    settings: Settings, workdir: Path, port: int, upstream_port: int, before: Revision
) -> Proxy:
    """The --before revision's codexgate, capture on, with its own port, database and log."""
    service = codexgate_service(
        f"codexgate {before.commit} (capture on)",
        port=port,
        upstream_port=upstream_port,
        workdir=workdir,
        log_name="codexgate-before-capture-on.log",
        extra_args=["--db", str(workdir / "bench-before-capture-on.db"), *settings.gateway_args],
        env=before.environment(),
    )
    return Proxy(BEFORE, service, _origin(port), HEALTH_PATH)


def services(
    settings: Settings, workdir: Path, nginx_binary: Path | None, before: Revision | None = None
) -> tuple[Proxy, list[Proxy]]:
    """The fake upstream and every proxy in front of it, not started yet."""
    upstream_port, on_port, off_port, nginx_port, before_port = free_ports(5)
    upstream = Proxy(
        DIRECT,
        Service(
            name="fake upstream",
            argv=[sys.executable, "-m", "bench.upstream", "--port", str(upstream_port)],
            cwd=REPO_ROOT,
            log_path=workdir / "upstream.log",
        ),
        _origin(upstream_port),
        PING_PATH,
    )
    proxies = [
        _gateway(settings, workdir, on_port, upstream_port, capture=True),
        _gateway(settings, workdir, off_port, upstream_port, capture=False),
    ]
    if before is not None:
        proxies.append(_before_gateway(settings, workdir, before_port, upstream_port, before))
    if nginx_binary is not None:
        service = nginx.service(nginx_binary, workdir / "nginx", nginx_port, [upstream_port])
        proxies.append(Proxy(NGINX, service, _origin(nginx_port), PING_PATH))
    return upstream, proxies


def _pids(proxy: Proxy) -> tuple[int, ...]:
    """The processes whose CPU and memory count for a proxy: nginx's master and its workers."""
    process = proxy.service.process
    if process is None:
        return ()
    if proxy.name == NGINX:
        return (process.pid, *procfs.children(process.pid))
    return (process.pid,)


async def ready(upstream: Proxy, proxies: list[Proxy]) -> list[Target]:
    """Wait for every process; the targets in table order."""
    await wait_ready(upstream.service, f"{upstream.base}{upstream.ready_path}")
    for proxy in proxies:
        await wait_ready(proxy.service, f"{proxy.base}{proxy.ready_path}")
    by_name = {proxy.name: Target(proxy.name, proxy.base, _pids(proxy)) for proxy in proxies}
    return [Target(DIRECT, upstream.base)] + [by_name[name] for name in TARGETS if name in by_name]


async def _bench(
    settings: Settings, upstream: Proxy, proxies: list[Proxy]
) -> tuple[RunResult, list[IdleResult]]:
    """Wait for every process, run every round, then hold the idle streams."""
    targets = await ready(upstream, proxies)
    gateways = {proxy.name: proxy.base for proxy in proxies if proxy.name != NGINX}
    result = await run(settings, targets, gateways)
    idle = []
    if settings.idle_streams:
        load = workload()
        for target in targets:
            if target.name in (BEFORE, CAPTURE_ON, NGINX):
                print(
                    f"holding {settings.idle_streams:,} idle streams open through {target.name}",
                    flush=True,
                )
                idle.append(await idle_streams(target, load, settings.idle_streams))
    return result, idle


def _stopped(name: str, service: Service) -> Stopped:
    return Stopped(
        name=name,
        exit_code=service.exit_code,
        stop_seconds=service.stop_seconds,
        killed=service.killed,
        log=service.log_lines(),
    )


def _nginx_stopped(proxy: Proxy) -> Stopped:
    """nginx's exit, with what its error log says at warn and above."""
    stopped = _stopped(proxy.name, proxy.service)
    error_log = proxy.service.cwd / "error.log"
    lines = error_log.read_text(errors="replace").splitlines() if error_log.exists() else []
    return dataclasses.replace(stopped, log=stopped.log + lines)


def run_with_services(
    settings: Settings, workdir: Path, nginx_binary: Path | None, before: Revision | None = None
) -> Outcome:
    """Run the bench between starting and stopping (SIGTERM, wait, kill) every process."""
    upstream, proxies = services(settings, workdir, nginx_binary, before)
    with contextlib.ExitStack() as stack:
        for proxy in (upstream, *proxies):
            stack.enter_context(proxy.service)
        runner = stack.enter_context(asyncio.Runner(loop_factory=loop_factory()))
        result, idle = runner.run(_bench(settings, upstream, proxies))
    gateways = [_stopped(proxy.name, proxy.service) for proxy in proxies if proxy.name != NGINX]
    nginx_proxy = next((proxy for proxy in proxies if proxy.name == NGINX), None)
    return Outcome(
        result=result,
        idle=idle,
        gateways=gateways,
        nginx=None if nginx_proxy is None else _nginx_stopped(nginx_proxy),
        before=before,
    )
