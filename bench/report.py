"""What the bench prints: progress lines, the machine, medians and the markdown table."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .loops import loop_name
from .protocol import SLOW_TURN, SMALL_TURN, WS_TURN, usage_body
from .settings import Settings
from .stats import median

FigureValues = dict[str, float]

DIRECT = "direct"
CAPTURE_ON = "capture on"  # codexgate as deployed
CAPTURE_OFF = "capture off"  # codexgate --capture off: the relay alone
TARGETS = (DIRECT, CAPTURE_ON, CAPTURE_OFF)
CAPTURE_BUDGET = 0.05  # the design lets capture cost at most 5 % of throughput


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the table: a figure's key, its label, unit and decimals."""

    key: str
    label: str
    unit: str
    decimals: int
    added_time: bool = False  # show the added milliseconds next to the ratios
    short: str = ""  # the name in the capture-cost line; throughput figures only

    @property
    def throughput(self) -> bool:
        """Whether more is better (a rate), so that capture's cost is 1 - on/off."""
        return bool(self.short)


def figures(settings: Settings) -> list[Figure]:
    """The table's rows, in order."""
    rows = [
        Figure(
            f"rps_{concurrency}",
            f"small SSE turns, concurrency {concurrency}",
            "req/s",
            0,
            short=f"SSE c={concurrency}",
        )
        for concurrency in settings.rate_concurrencies
    ]
    rows.extend(
        Figure(
            f"ws_{concurrency}",
            f"WebSocket turns, {concurrency} persistent connection(s)",
            "turns/s",
            0,
            short=f"WS c={concurrency}",
        )
        for concurrency in settings.ws_concurrencies
    )
    usage = settings.usage_concurrency
    rows.append(
        Figure(
            f"usage_{usage}",
            f"wham/usage queries, concurrency {usage}",
            "req/s",
            0,
            short=f"wham/usage c={usage}",
        )
    )
    for key, name in (("ttfb", "time to first byte"), ("ttfe", "time to first event")):
        rows.append(Figure(f"{key}_p50", f"slow stream, {name} p50", "ms", 2, added_time=True))
        rows.append(Figure(f"{key}_p99", f"slow stream, {name} p99", "ms", 2))
    rows.append(
        Figure(
            "stream",
            f"one {settings.megabytes} MB stream (iter_any)",
            "MB/s",
            0,
            short=f"{settings.megabytes} MB stream",
        )
    )
    return rows


def number(value: float, decimals: int) -> str:
    """A figure with thousands separators, or n/a."""
    return "n/a" if math.isnan(value) else f"{value:,.{decimals}f}"


def describe(values: FigureValues) -> str:
    """A progress line's worth of one scenario's figures."""
    parts = []
    for key, value in values.items():
        if key.startswith(("rps_", "usage_")):
            parts.append(f"{number(value, 0)} req/s")
        elif key.startswith("ws_"):
            parts.append(f"{number(value, 0)} turns/s")
        elif key == "stream":
            parts.append(f"{number(value, 0)} MB/s")
        elif key == "latency_samples":
            parts.append(f"({number(value, 0)} samples)")
        else:
            parts.append(f"{key.replace('_', ' ')} {number(value, 2)} ms")
    return ", ".join(parts)


def medians(rounds: Sequence[dict[str, FigureValues]]) -> dict[str, FigureValues]:
    """Per figure and target, the median over the rounds."""
    keys = {key for figures_ in rounds for key in figures_}
    result: dict[str, FigureValues] = {}
    for key in sorted(keys):
        targets = {target for figures_ in rounds for target in figures_.get(key, {})}
        result[key] = {
            target: median(figures_[key][target] for figures_ in rounds if target in figures_[key])
            for target in sorted(targets)
        }
    return result


def ratio_cell(figure: Figure, numerator: float, denominator: float) -> str:
    """numerator/denominator, with the added milliseconds for p50 latencies."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return "n/a"
    cell = f"{numerator / denominator:.2f}"
    if figure.added_time:
        cell += f" ({numerator - denominator:+.2f} ms)"
    return cell


def _value(values: dict[str, FigureValues], key: str, target: str) -> float:
    return values.get(key, {}).get(target, math.nan)


def table(settings: Settings, values: dict[str, FigureValues]) -> list[str]:
    """The markdown table: scenario, the three targets, both against direct, on against off."""
    lines = [
        "| scenario | direct | codexgate, capture on | codexgate, capture off "
        "| on / direct | off / direct | on / off |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for figure in figures(settings):
        direct, on, off = (_value(values, figure.key, target) for target in TARGETS)
        cells = [number(value, figure.decimals) for value in (direct, on, off)]
        ratios = [
            ratio_cell(figure, on, direct),
            ratio_cell(figure, off, direct),
            ratio_cell(figure, on, off),
        ]
        lines.append(f"| {figure.label} ({figure.unit}) | {' | '.join([*cells, *ratios])} |")
    return lines


def added_times(values: dict[str, FigureValues]) -> list[str]:
    """The time each codexgate adds at p50 to the first byte and the first event."""
    lines = []
    for key, name in (("ttfb_p50", "first byte"), ("ttfe_p50", "first event")):
        direct = _value(values, key, DIRECT)
        on, off = (_value(values, key, target) - direct for target in (CAPTURE_ON, CAPTURE_OFF))
        lines.append(
            f"added time to {name} at p50: capture on {number(on, 2)} ms, "
            f"capture off {number(off, 2)} ms"
        )
    return lines


def capture_costs(settings: Settings, values: dict[str, FigureValues]) -> list[str]:
    """What capture costs in each throughput figure (1 - on/off) against the 5 % budget."""
    costs: list[str] = []
    over: list[str] = []
    for figure in figures(settings):
        if not figure.throughput:
            continue
        on, off = (_value(values, figure.key, target) for target in (CAPTURE_ON, CAPTURE_OFF))
        if math.isnan(on) or math.isnan(off) or off == 0:
            costs.append(f"{figure.short} n/a")
            continue
        cost = 1 - on / off
        costs.append(f"{figure.short} {cost:+.1%}")
        if cost > CAPTURE_BUDGET:
            over.append(figure.short)
    verdict = (
        f"over the {CAPTURE_BUDGET:.0%} budget: {', '.join(over)}"
        if over
        else f"within the {CAPTURE_BUDGET:.0%} budget everywhere"
    )
    return [
        "capture's cost in throughput (1 - on/off; negative: capture on was faster): "
        + ", ".join(costs),
        f"capture cost: {verdict}",
    ]


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo, or what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line: CPU, cores, OS, Python, aiohttp, the load generator's loop."""
    return (
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"{loop_name()} in every process"
    )


def _joined(numbers: tuple[int, ...]) -> str:
    return " and ".join(str(value) for value in numbers)


def method(settings: Settings) -> str:
    """One paragraph saying how the figures were measured."""
    extra = " ".join(settings.gateway_args)
    return (
        f"Medians of {settings.rounds} round(s); the order of the three targets (direct, "
        "codexgate with capture on, codexgate with --capture off: two instances with their "
        "own port and database in front of the same upstream) rotated each round. "
        f"Rates: {settings.seconds:g} s each after {settings.warmup_seconds:g} s warm-up. "
        f"SSE turns: {SMALL_TURN.events} SSE events of ~{SMALL_TURN.size} B with the real "
        f"rate-limit headers and a seat JWT, concurrency {_joined(settings.rate_concurrencies)}. "
        f"WebSocket turns: {_joined(settings.ws_concurrencies)} persistent connection(s) "
        "(opened in the warm-up; the 101 carries the rate-limit headers; permessage-deflate "
        "negotiated, as the Codex CLI offers it), each running turns back to back: "
        f"response.create answered by a codex.rate_limits frame, {WS_TURN.deltas} "
        f"output_text.delta frames of ~{WS_TURN.size} B and response.completed with usage. "
        f"wham/usage: GET at concurrency {settings.usage_concurrency}, a Plus seat's "
        f"{len(usage_body()):,} B JSON report. "
        f"Latency: {settings.samples} turns at concurrency {settings.latency_concurrency}, "
        f"{SLOW_TURN.events} events {SLOW_TURN.delay_ms} ms apart, the first right after the "
        "headers. MB = 10^6 bytes. Load generator, fake upstream and both codexgate instances "
        "are separate processes on the same cores."
        + (f" codexgate ran with {extra}." if extra else "")
    )
