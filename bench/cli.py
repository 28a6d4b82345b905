"""`python -m bench`: start the fake upstream and codexgate, run the rounds, print the table."""

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

from .loops import loop_factory
from .processes import BenchError, Service, free_port, wait_ready
from .protocol import PING_PATH, REPO_ROOT
from .report import DIRECT, GATEWAY, added_times, machine, medians, method, table
from .run import Health, RunResult, Target, run
from .settings import Settings, parse_settings


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished run and how codexgate behaved around it."""

    result: RunResult
    gateway_exit: int | None
    gateway_stop_seconds: float | None
    gateway_killed: bool
    gateway_log: list[str]


def _two_ports() -> tuple[int, int]:
    """Two distinct free loopback ports."""
    for _ in range(10):
        first, second = free_port(), free_port()
        if first != second:
            return first, second
    raise BenchError("could not find two free loopback ports")


def _services(settings: Settings, workdir: Path) -> tuple[Service, Service]:
    """The fake upstream and codexgate in front of it, not started yet."""
    upstream_port, gateway_port = _two_ports()
    upstream = Service(
        name="fake upstream",
        argv=[sys.executable, "-m", "bench.upstream", "--port", str(upstream_port)],
        cwd=REPO_ROOT,
        log_path=workdir / "upstream.log",
    )
    gateway = Service(
        name="codexgate",
        argv=[
            sys.executable,
            "-m",
            "codexgate",
            "--port",
            str(gateway_port),
            "--upstream",
            f"http://127.0.0.1:{upstream_port}",
            "--db",
            str(workdir / "bench.db"),
            "--log-level",
            "WARNING",
            *settings.gateway_args,
        ],
        cwd=workdir,
        log_path=workdir / "codexgate.log",
    )
    return upstream, gateway


def _port_of(service: Service) -> str:
    """The --port argument a service was started with."""
    return service.argv[service.argv.index("--port") + 1]


async def _bench(settings: Settings, upstream: Service, gateway: Service) -> RunResult:
    """Wait for both processes, then run every round."""
    upstream_base = f"http://127.0.0.1:{_port_of(upstream)}"
    gateway_base = f"http://127.0.0.1:{_port_of(gateway)}"
    await wait_ready(upstream, f"{upstream_base}{PING_PATH}")
    await wait_ready(gateway, f"{gateway_base}/codexgate/healthz")
    targets = (Target(DIRECT, upstream_base), Target(GATEWAY, gateway_base))
    return await run(settings, targets, gateway_base)


def run_with_services(settings: Settings, workdir: Path) -> Outcome:
    """Run the bench between starting and stopping (SIGTERM, wait, kill) both processes."""
    upstream, gateway = _services(settings, workdir)
    with upstream, gateway, asyncio.Runner(loop_factory=loop_factory()) as runner:
        result = runner.run(_bench(settings, upstream, gateway))
    return Outcome(
        result=result,
        gateway_exit=gateway.exit_code,
        gateway_stop_seconds=gateway.stop_seconds,
        gateway_killed=gateway.killed,
        gateway_log=gateway.log_lines(),
    )


def _health_lines(health: Health | None, answered: int) -> list[str]:
    """codexgate's snapshot counters against the turns it answered."""
    if health is None:
        return ["codexgate healthz: no answer after the run"]
    accounted = health.recorded + health.dropped + health.queue_depth
    verdict = "all accounted for" if accounted == answered else "MISMATCH"
    return [
        f"codexgate healthz after the run: status {health.status}, db {health.db_state}"
        f"{f' ({health.last_error})' if health.last_error else ''}, "
        f"recorded {health.recorded:,}, dropped {health.dropped:,}, "
        f"unattributed {health.unattributed:,}, queue depth {health.queue_depth}"
        f"{'' if health.settled else ' (queue never emptied)'}",
        f"snapshots: {answered:,} turns answered 200 through codexgate, "
        f"{accounted:,} recorded + dropped + queued: {verdict}",
    ]


def _process_lines(outcome: Outcome) -> list[str]:
    """How codexgate stopped and what it logged at WARNING and above."""
    stop = outcome.gateway_stop_seconds
    how = "killed after the SIGTERM wait ran out" if outcome.gateway_killed else "on SIGTERM"
    lines = [
        f"codexgate stopped {how} in {stop if stop is not None else float('nan'):.2f} s, "
        f"exit code {outcome.gateway_exit}"
    ]
    if outcome.gateway_log:
        lines.append(f"codexgate log ({len(outcome.gateway_log)} lines, first 20):")
        lines.extend(f"  {line}" for line in outcome.gateway_log[:20])
    else:
        lines.append("codexgate log: empty (no warnings or errors)")
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


def _healthy(outcome: Outcome) -> bool:
    """Whether the run had no errors and codexgate behaved."""
    health = outcome.result.health
    return (
        all(counters.errors == 0 for counters in outcome.result.counters.values())
        and outcome.gateway_exit == 0
        and not outcome.gateway_killed
        and health is not None
        and health.dropped == 0
        and health.settled
    )


def summary(settings: Settings, outcome: Outcome, elapsed: float) -> list[str]:
    """Everything printed after the rounds."""
    values = medians(outcome.result.rounds)
    answered = outcome.result.counters[GATEWAY].answered
    return [
        "",
        f"== codexgate vs direct, medians of {settings.rounds} round(s) ==",
        machine(),
        "",
        *table(settings, values),
        "",
        method(settings),
        *added_times(values),
        *_health_lines(outcome.result.health, answered),
        *_process_lines(outcome),
        *_error_lines(outcome.result),
        f"bench took {elapsed:.1f} s",
    ]


def markdown(settings: Settings, outcome: Outcome) -> str:
    """The machine line, the table and how it was measured, for the README."""
    values = medians(outcome.result.rounds)
    return "\n".join([machine(), "", *table(settings, values), "", method(settings), ""])


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM unwinds like Ctrl-C, so that both child processes are stopped on the way out."""
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
        print("bench: interrupted; both processes were stopped", file=sys.stderr)
        return 130
    print("\n".join(summary(settings, outcome, time.perf_counter() - started)))
    if settings.markdown is not None:
        settings.markdown.write_text(markdown(settings, outcome))
        print(f"markdown table written to {settings.markdown}")
    return 0 if _healthy(outcome) else 1
