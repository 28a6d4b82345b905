"""Reliability fixtures: real processes (codexgate, the fake upstream), stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.processes import (
    GatewayProcess,
    StartGatewayProcess,
    StartUpstream,
    UpstreamProcess,
    free_port,
)


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
async def start_gateway_process(tmp_path: Path) -> AsyncIterator[StartGatewayProcess]:
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
