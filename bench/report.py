"""What the bench prints: progress lines, the machine, medians and the markdown table."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from . import nginx
from .loops import loop_name
from .protocol import SLOW_TURN, SMALL_TURN, WS_TURN, usage_body
from .settings import Settings
from .stats import median

FigureValues = dict[str, float]

DIRECT = "direct"
NGINX = "nginx"  # Debian's nginx as a reverse proxy, proxy_buffering off
BEFORE = "before (capture on)"  # --before: codexgate of an earlier revision, capture on
CAPTURE_ON = "capture on"  # codexgate as deployed
CAPTURE_OFF = "capture off"  # codexgate --capture off: the relay alone
TARGETS = (DIRECT, NGINX, BEFORE, CAPTURE_ON, CAPTURE_OFF)
HEADINGS = {
    DIRECT: "direct",
    NGINX: "nginx",
    BEFORE: "before (capture on)",
    CAPTURE_ON: "codexgate, capture on",
    CAPTURE_OFF: "codexgate, capture off",
}
# The ratio columns: numerator and denominator targets, and the column heading.
RATIOS = (
    (NGINX, DIRECT, "nginx / direct"),
    (CAPTURE_ON, DIRECT, "on / direct"),
    (CAPTURE_OFF, DIRECT, "off / direct"),
    (CAPTURE_ON, NGINX, "on / nginx"),
    (CAPTURE_OFF, NGINX, "off / nginx"),
    (CAPTURE_ON, BEFORE, "on / before"),
    (BEFORE, NGINX, "before / nginx"),
)
CAPTURE_BUDGET = 0.05  # the design lets capture cost at most 5 % of throughput
PEAK_RSS = "peak_rss"  # a scenario's peak; the round keeps the largest as "rss"
ROUND_RSS = "rss"


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the table: a figure's key, its label, unit and decimals."""

    key: str
    label: str
    unit: str
    decimals: int
    added_time: bool = False  # show the added milliseconds next to the ratios
    short: str = ""  # the name in the capture-cost line; throughput figures only
    proxy_only: bool = False  # a proxy's own CPU or memory: nothing to show for direct

    @property
    def throughput(self) -> bool:
        """Whether more is better (a rate), so that capture's cost is 1 - on/off."""
        return bool(self.short)


def proxy_label(name: str) -> str:
    """How the summary names a proxy: nginx, or which codexgate."""
    if name == NGINX:
        return "nginx"
    if name == BEFORE:
        return f"codexgate {BEFORE}"
    return f"codexgate ({name})"


def cpu_key(key: str) -> str:
    """The key of the proxy-CPU-per-request figure that goes with the rate figure `key`."""
    return f"cpu_{key}"


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
    rates = [row for row in rows if row.throughput and row.key != "stream"]
    rows.extend(
        Figure(cpu_key(row.key), f"proxy CPU per request, {row.label}", "µs", 0, proxy_only=True)
        for row in rates
    )
    rows.append(
        Figure(
            cpu_key("stream"),
            f"proxy CPU for the {settings.megabytes} MB stream",
            "ms",
            0,
            proxy_only=True,
        )
    )
    rows.append(Figure(ROUND_RSS, "proxy peak RSS during a round", "MB", 1, proxy_only=True))
    return rows


def number(value: float, decimals: int) -> str:
    """A figure with thousands separators, or n/a."""
    return "n/a" if math.isnan(value) else f"{value:,.{decimals}f}"


def describe(values: FigureValues) -> str:
    """A progress line's worth of one scenario's figures."""
    parts = []
    for key, value in values.items():
        if (key.startswith("cpu_") or key == PEAK_RSS) and math.isnan(value):
            continue  # no proxy process: a direct connection
        if key == cpu_key("stream"):
            parts.append(f"CPU {number(value, 0)} ms")
        elif key.startswith("cpu_"):
            parts.append(f"CPU {number(value, 0)} µs/req")
        elif key == PEAK_RSS:
            parts.append(f"peak RSS {number(value, 1)} MB")
        elif key.startswith(("rps_", "usage_")):
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


def value_of(values: dict[str, FigureValues], key: str, target: str) -> float:
    """The median of figure `key` for `target`, or NaN."""
    return values.get(key, {}).get(target, math.nan)


def table_targets(settings: Settings) -> tuple[str, ...]:
    """The table's target columns: the before instance only when --before asked for it."""
    return tuple(target for target in TARGETS if target != BEFORE or settings.before)


def table(settings: Settings, values: dict[str, FigureValues]) -> list[str]:
    """The markdown table: scenario, the targets, then the ratios to direct, nginx and before."""
    targets = table_targets(settings)
    ratios_shown = [ratio for ratio in RATIOS if ratio[0] in targets and ratio[1] in targets]
    lines = [
        "| scenario | "
        + " | ".join(HEADINGS[target] for target in targets)
        + " | "
        + " | ".join(heading for _, _, heading in ratios_shown)
        + " |",
        "|---|" + "---:|" * (len(targets) + len(ratios_shown)),
    ]
    for figure in figures(settings):
        cells = [
            "—"
            if target == DIRECT and figure.proxy_only
            else number(value_of(values, figure.key, target), figure.decimals)
            for target in targets
        ]
        ratios = [
            ratio_cell(
                figure,
                value_of(values, figure.key, numerator),
                value_of(values, figure.key, denominator),
            )
            for numerator, denominator, _ in ratios_shown
        ]
        lines.append(f"| {figure.label} ({figure.unit}) | {' | '.join([*cells, *ratios])} |")
    return lines


def added_times(values: dict[str, FigureValues]) -> list[str]:
    """The time each proxy adds at p50 to the first byte and the first event."""
    lines = []
    for key, name in (("ttfb_p50", "first byte"), ("ttfe_p50", "first event")):
        direct = value_of(values, key, DIRECT)
        added = ", ".join(
            f"{target} {number(value_of(values, key, target) - direct, 2)} ms"
            for target in (NGINX, BEFORE, CAPTURE_ON, CAPTURE_OFF)
            if target != BEFORE or target in values.get(key, {})
        )
        lines.append(f"added time to {name} at p50: {added}")
    return lines


def capture_costs(settings: Settings, values: dict[str, FigureValues]) -> list[str]:
    """What capture costs in each throughput figure (1 - on/off) against the 5 % budget."""
    costs: list[str] = []
    over: list[str] = []
    for figure in figures(settings):
        if not figure.throughput:
            continue
        on, off = (value_of(values, figure.key, target) for target in (CAPTURE_ON, CAPTURE_OFF))
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


def machine(nginx_version: str | None = None) -> str:
    """One line: CPU, cores, kernel, Python, aiohttp, the event loop, nginx."""
    return (
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()} {platform.machine()}, Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, {loop_name()} in every Python process"
        + (f", {nginx_version}" if nginx_version else "")
    )


def _joined(numbers: tuple[int, ...]) -> str:
    return " and ".join(str(value) for value in numbers)


def _target_list(before: str | None) -> str:
    """The targets the rounds rotate, for the method paragraph."""
    if before is None:
        return (
            "the four targets (direct, Debian's nginx, codexgate with capture on, codexgate "
            "with --capture off: two instances with their own port and database, all in front "
            "of the same upstream)"
        )
    return (
        f"the five targets (direct, Debian's nginx, codexgate as at {before} with capture on "
        '("before": exported with git archive, run with the export first on PYTHONPATH), '
        "codexgate with capture on, codexgate with --capture off: three instances with their "
        "own port and database and the same arguments, all in front of the same upstream)"
    )


def method(settings: Settings, before: str | None = None) -> str:
    """One paragraph saying how the figures were measured; `before` names the --before commit."""
    extra = " ".join(settings.gateway_args)
    return (
        f"Medians of {settings.rounds} round(s); the order of {_target_list(before)} "
        f"rotated each round. Rates: {settings.seconds:g} s each after "
        f"{settings.warmup_seconds:g} s warm-up. "
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
        "headers. MB = 10^6 bytes. Proxy CPU: utime + stime from /proc/<pid>/stat (10 ms "
        "ticks) of the codexgate process, or of nginx's master and all its workers, around each "
        "measured run, divided by the requests it completed. Peak RSS: VmHWM, reset through "
        "clear_refs before each measured run, the largest of the round (nginx: summed over its "
        "processes, so shared pages count once per process). nginx: "
        f"{nginx.workers()} worker process(es), one per core (nginx's `auto`, what a "
        "deployment runs), HTTP/1.1 with a keep-alive pool to the upstream, proxy_buffering "
        "and proxy_request_buffering off, WebSocket upgrade headers, no access log. Load "
        "generator, fake upstream and every proxy are separate processes on the same cores."
        + (f" codexgate ran with {extra}." if extra else "")
    )
