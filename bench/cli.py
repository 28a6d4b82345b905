"""`python -m bench`: start the fake upstream and two codexgates, run the rounds, print it all."""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

from .accounting import health_lines
from .loops import loop_factory
from .processes import BenchError, Service, free_port, wait_ready
from .protocol import PING_PATH, REPO_ROOT
from .report import (
    CAPTURE_OFF,
    CAPTURE_ON,
    DIRECT,
    added_times,
    capture_costs,
    machine,
    medians,
    method,
    table,
)
from .run import RunResult, Target, run
from .settings import Settings, parse_settings

HEALTH_PATH = "/codexgate/healthz"


@dataclass(frozen=True, slots=True)
class Stopped:
    """How one codexgate instance stopped, and what it logged at WARNING and above."""

    name: str
    exit_code: int | None
    stop_seconds: float | None
    killed: bool
    log: list[str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished run and how each codexgate behaved around it."""

    result: RunResult
    gateways: list[Stopped]


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports."""
    for _ in range(10):
        ports = [free_port() for _ in range(count)]
        if len(set(ports)) == count:
            return ports
    raise BenchError(f"could not find {count} distinct free loopback ports")


def _gateway(
    settings: Settings, workdir: Path, port: int, upstream_port: int, capture: bool
) -> Service:
    """A codexgate instance with its own port, database and log, capture on or off."""
    switch = "on" if capture else "off"
    return Service(
        name=f"codexgate (capture {switch})",
        argv=[
            sys.executable,
            "-m",
            "codexgate",
            "--port",
            str(port),
            "--upstream",
            f"http://127.0.0.1:{upstream_port}",
            "--db",
            str(workdir / f"bench-capture-{switch}.db"),
            "--log-level",
            "WARNING",
            *settings.gateway_args,
            "--capture",  # last, so that it wins over a --capture among the extra arguments
            switch,
        ],
        cwd=workdir,
        log_path=workdir / f"codexgate-capture-{switch}.log",
    )


def _services(settings: Settings, workdir: Path) -> tuple[Service, dict[str, Service]]:
    """The fake upstream and both codexgate instances in front of it, not started yet."""
    upstream_port, on_port, off_port = _free_ports(3)
    upstream = Service(
        name="fake upstream",
        argv=[sys.executable, "-m", "bench.upstream", "--port", str(upstream_port)],
        cwd=REPO_ROOT,
        log_path=workdir / "upstream.log",
    )
    gateways = {
        CAPTURE_ON: _gateway(settings, workdir, on_port, upstream_port, capture=True),
        CAPTURE_OFF: _gateway(settings, workdir, off_port, upstream_port, capture=False),
    }
    return upstream, gateways


def _base(service: Service) -> str:
    """The loopback origin of a service, from the --port argument it was started with."""
    return f"http://127.0.0.1:{service.argv[service.argv.index('--port') + 1]}"


async def _bench(settings: Settings, upstream: Service, gateways: dict[str, Service]) -> RunResult:
    """Wait for every process, then run every round."""
    await wait_ready(upstream, f"{_base(upstream)}{PING_PATH}")
    bases = {name: _base(service) for name, service in gateways.items()}
    for name, service in gateways.items():
        await wait_ready(service, f"{bases[name]}{HEALTH_PATH}")
    targets = (
        Target(DIRECT, _base(upstream)),
        *(Target(name, base) for name, base in bases.items()),
    )
    return await run(settings, targets, bases)


def _stopped(name: str, service: Service) -> Stopped:
    return Stopped(
        name=name,
        exit_code=service.exit_code,
        stop_seconds=service.stop_seconds,
        killed=service.killed,
        log=service.log_lines(),
    )


def run_with_services(settings: Settings, workdir: Path) -> Outcome:
    """Run the bench between starting and stopping (SIGTERM, wait, kill) every process."""
    upstream, gateways = _services(settings, workdir)
    with (
        upstream,
        gateways[CAPTURE_ON],
        gateways[CAPTURE_OFF],
        asyncio.Runner(loop_factory=loop_factory()) as runner,
    ):
        result = runner.run(_bench(settings, upstream, gateways))
    return Outcome(
        result=result, gateways=[_stopped(name, service) for name, service in gateways.items()]
    )


def _process_lines(stopped: Stopped) -> list[str]:
    """How one codexgate stopped and what it logged at WARNING and above."""
    stop = stopped.stop_seconds
    how = "killed after the SIGTERM wait ran out" if stopped.killed else "on SIGTERM"
    lines = [
        f"codexgate ({stopped.name}) stopped {how} in "
        f"{stop if stop is not None else float('nan'):.2f} s, exit code {stopped.exit_code}"
    ]
    if stopped.log:
        lines.append(f"codexgate ({stopped.name}) log ({len(stopped.log)} lines, first 20):")
        lines.extend(f"  {line}" for line in stopped.log[:20])
    else:
        lines.append(f"codexgate ({stopped.name}) log: empty (no warnings or errors)")
    return lines


def _error_lines(result: RunResult) -> list[str]:
    """Failed requests per target, with the first messages."""
    lines = [
        "request errors: "
        + ", ".join(f"{name} {counters.errors}" for name, counters in result.counters.items())
    ]
    for name, counters in result.counters.items():
        lines.extend(f"  {name}: {message}" for message in counters.first_errors)
    return lines


def _checks(outcome: Outcome) -> tuple[bool, list[str]]:
    """Whether the run had no errors and both codexgate instances behaved; the health lines."""
    result = outcome.result
    healthy = all(counters.errors == 0 for counters in result.counters.values())
    lines: list[str] = []
    for name in (CAPTURE_ON, CAPTURE_OFF):
        good, checked = health_lines(name, result.health.get(name), result.counters[name])
        healthy = healthy and good
        lines.extend(checked)
    for stopped in outcome.gateways:
        healthy = healthy and stopped.exit_code == 0 and not stopped.killed
        lines.extend(_process_lines(stopped))
    return healthy, lines


def summary(settings: Settings, outcome: Outcome, elapsed: float) -> list[str]:
    """Everything printed after the rounds."""
    values = medians(outcome.result.rounds)
    healthy, checks = _checks(outcome)
    return [
        "",
        f"== direct vs codexgate (capture on, capture off), medians of {settings.rounds} "
        "round(s) ==",
        machine(),
        "",
        *table(settings, values),
        "",
        method(settings),
        *added_times(values),
        *capture_costs(settings, values),
        *checks,
        *_error_lines(outcome.result),
        f"verdict: {'healthy' if healthy else 'NOT HEALTHY (see above)'}",
        f"bench took {elapsed:.1f} s",
    ]


def markdown(settings: Settings, outcome: Outcome) -> str:
    """The machine line, the table and how it was measured, for the README."""
    values = medians(outcome.result.rounds)
    return "\n".join(
        [
            machine(),
            "",
            *table(settings, values),
            "",
            method(settings),
            "",
            *added_times(values),
            *capture_costs(settings, values),
            "",
        ]
    )


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM unwinds like Ctrl-C, so that every child process is stopped on the way out."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; 0 when nothing failed, 1 on errors or a misbehaving codexgate."""
    settings = parse_settings(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.perf_counter()
    print(machine(), flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="codexgate-bench-") as workdir:
            outcome = run_with_services(settings, Path(workdir))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; every child process was stopped", file=sys.stderr)
        return 130
    print("\n".join(summary(settings, outcome, time.perf_counter() - started)))
    if settings.markdown is not None:
        settings.markdown.write_text(markdown(settings, outcome))
        print(f"markdown table written to {settings.markdown}")
    return 0 if _checks(outcome)[0] else 1
