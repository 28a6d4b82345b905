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
from .protocol import SLOW_TURN, SMALL_TURN
from .settings import Settings
from .stats import median

FigureValues = dict[str, float]

DIRECT = "direct"
GATEWAY = "codexgate"


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the table: a figure's key, its label, unit and decimals."""

    key: str
    label: str
    unit: str
    decimals: int
    added_time: bool = False  # show codexgate - direct next to the ratio


def figures(settings: Settings) -> list[Figure]:
    """The table's rows, in order."""
    rows = [
        Figure(f"rps_{concurrency}", f"small SSE turns, concurrency {concurrency}", "req/s", 0)
        for concurrency in settings.rate_concurrencies
    ]
    for key, name in (("ttfb", "time to first byte"), ("ttfe", "time to first event")):
        rows.append(Figure(f"{key}_p50", f"slow stream, {name} p50", "ms", 2, added_time=True))
        rows.append(Figure(f"{key}_p99", f"slow stream, {name} p99", "ms", 2))
    rows.append(Figure("stream", f"one {settings.megabytes} MB stream (iter_any)", "MB/s", 0))
    return rows


def number(value: float, decimals: int) -> str:
    """A figure with thousands separators, or n/a."""
    return "n/a" if math.isnan(value) else f"{value:,.{decimals}f}"


def describe(values: FigureValues) -> str:
    """A progress line's worth of one scenario's figures."""
    parts = []
    for key, value in values.items():
        if key.startswith("rps_"):
            parts.append(f"{number(value, 0)} req/s")
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


def ratio_cell(figure: Figure, direct: float, gateway: float) -> str:
    """codexgate/direct, with the added milliseconds for p50 latencies."""
    if math.isnan(direct) or math.isnan(gateway) or direct == 0:
        return "n/a"
    cell = f"{gateway / direct:.2f}"
    if figure.added_time:
        cell += f" ({gateway - direct:+.2f} ms)"
    return cell


def table(settings: Settings, values: dict[str, FigureValues]) -> list[str]:
    """The markdown table: scenario, direct, codexgate, ratio."""
    lines = ["| scenario | direct | codexgate | ratio |", "|---|---:|---:|---:|"]
    for figure in figures(settings):
        direct = values.get(figure.key, {}).get(DIRECT, math.nan)
        gateway = values.get(figure.key, {}).get(GATEWAY, math.nan)
        lines.append(
            f"| {figure.label} ({figure.unit}) | {number(direct, figure.decimals)} "
            f"| {number(gateway, figure.decimals)} | {ratio_cell(figure, direct, gateway)} |"
        )
    return lines


def added_times(values: dict[str, FigureValues]) -> list[str]:
    """The added time at p50 (codexgate p50 - direct p50) for first byte and first event."""
    lines = []
    for key, name in (("ttfb_p50", "first byte"), ("ttfe_p50", "first event")):
        pair = values.get(key, {})
        added = pair.get(GATEWAY, math.nan) - pair.get(DIRECT, math.nan)
        lines.append(f"added time to {name} at p50: {number(added, 2)} ms")
    return lines


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


def method(settings: Settings) -> str:
    """One line saying how the figures were measured."""
    rates = " and ".join(str(concurrency) for concurrency in settings.rate_concurrencies)
    extra = " ".join(settings.gateway_args)
    return (
        f"Medians of {settings.rounds} round(s), direct/codexgate order rotated each round. "
        f"Turns: {SMALL_TURN.events} SSE events of ~{SMALL_TURN.size} B with the real rate-limit "
        f"headers and a seat JWT, concurrency {rates}, {settings.seconds:g} s each after "
        f"{settings.warmup_seconds:g} s warm-up. Latency: {settings.samples} turns at "
        f"concurrency {settings.latency_concurrency}, {SLOW_TURN.events} events "
        f"{SLOW_TURN.delay_ms} ms apart, the first right after the headers. MB = 10^6 bytes. "
        "Load generator, fake upstream and codexgate are separate processes on the same cores."
        + (f" codexgate ran with {extra}." if extra else "")
    )
