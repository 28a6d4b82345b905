"""Prometheus metrics: traffic counters fed by request records, window gauges read per scrape.

Every app has its own `Metrics` (and registry); nothing here is global. The traffic metrics are
updated by `observe_request`, which the recorder calls for every request record it is offered:
a few counter increments, no I/O. The window gauges and the recorder's counters are read when
Prometheus scrapes, so they are exact and cost nothing in between.

With several instances on one database each is scraped on its own: the counters and the
instance's own families are this process's, the window gauges the shared database's (the same
on every instance).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Final

from aiohttp import hdrs, web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from codexgate import __version__
from codexgate.core.accounts import account_title
from codexgate.core.models import RequestRecord, Transport
from codexgate.core.rows import LatestUsageRow
from codexgate.core.windows import as_of
from codexgate.keys import FORECASTS, INSTANCE, METRICS, RECORDER, STORE
from codexgate.services.recorder import RecorderStats
from codexgate.storage.interface import UsageStore

# Time to first byte ranges from a cached models list (~10 ms) to a turn that thinks for a minute.
TTFB_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
TRANSPORTS: Final[tuple[Transport, ...]] = ("http", "sse", "websocket")
TOKEN_KINDS: Final = ("input", "cached_input", "output", "reasoning")
WINDOW_LABELS: Final = ("account_id", "account", "limit", "window")

# The window gauge families (_window_families): used, reset, age, forecast, reset inferred.
WINDOW_FAMILIES: Final = 5
WindowKey = tuple[int, str, str]  # account id, limit id, window label
# Accounts read, forecast and formatted per slice of a scrape, and windows per formatted slice
# (prometheus_client takes ~25 µs a line: ~15 ms a slice).
_SCRAPE_ACCOUNTS: Final = 100
_WINDOW_SLICE: Final = 200


@dataclass(frozen=True, slots=True)
class ThisInstance:
    """This process among those sharing the database, as a scrape reports it."""

    id: str
    hostname: str
    version: str
    leads: bool  # holds the singleton lease: alert evaluation, webhook delivery, retention
    takeovers: int  # times it took the singleton role


@dataclass(frozen=True, slots=True)
class WindowState:
    """One window of one account's limit family, as the newest report gave it."""

    account_id: int
    account: str  # display name, else email, else ""
    limit_id: str
    window: str  # "5h", "7d", "monthly", or another window's label ("daily", "<minutes>m")
    used_percent: float | None  # as it stands now: 0 once the reset is inferred
    window_minutes: int | None
    resets_at: int | None  # unix seconds
    confirmed_at: float  # unix seconds, when these values were last reported
    reset_inferred: bool = False  # resets_at passed with no newer report (core/windows.as_of)

    @property
    def key(self) -> WindowKey:
        """What identifies this window across scrapes."""
        return (self.account_id, self.limit_id, self.window)


# When each window (by WindowKey) is forecast to reach 100 % (unix seconds), for this scrape's
# latest_usage rows at now; windows left out get no codexgate_window_forecast_exhaustion_seconds.
# Some windows of a scrape, with the exhaustion times of (at least) those windows.
WindowSlice = tuple[Sequence[WindowState], Mapping[WindowKey, float]]
ForecastSource = Callable[[Sequence[LatestUsageRow], float], Awaitable[Mapping[WindowKey, float]]]


def window_states(latest: Iterable[LatestUsageRow]) -> list[WindowState]:
    """The windows of the newest rows: the classified ones, then raw slots of other lengths."""
    states: list[WindowState] = []
    for row in latest:
        usage = row.usage
        account = account_title(usage.account_id, row.display_name, row.email)
        for window in usage.windows():
            if window.used_percent is None and window.resets_at is None:
                continue  # only a length: no value to export
            current = as_of(window.used_percent, window.resets_at, row.read_at)
            states.append(
                WindowState(
                    account_id=usage.account_id,
                    account=account,
                    limit_id=usage.limit_id,
                    window=window.label,
                    used_percent=current.used_percent,
                    window_minutes=window.window_minutes,
                    resets_at=window.resets_at,
                    confirmed_at=usage.confirmed_at,
                    reset_inferred=current.reset_inferred,
                )
            )
    return states


def status_label(status: int | None) -> str:
    """The `status` label: the HTTP status code, "none" when there was none, else "other"."""
    if status is None:
        return "none"
    # Codes are exact (429 is a quota hit, 401 an expired token; classes would merge them), and
    # bounded: a WebSocket error frame's status comes from JSON, so anything odd is "other".
    if 100 <= status <= 599:
        return str(status)
    return "other"


class Metrics:
    """One app's registry and the metrics the traffic updates."""

    def __init__(self, *, forecasts: ForecastSource | None = None) -> None:
        self.registry = CollectorRegistry()
        self.forecasts = forecasts
        self._requests = Counter(
            "codexgate_requests",
            "Proxied requests (WebSocket: turns), by HTTP status and transport.",
            ("status", "transport"),
            registry=self.registry,
        )
        self._ttfb = Histogram(
            "codexgate_time_to_first_byte_seconds",
            "Time from a request (or a WebSocket turn) to the first byte of its answer.",
            ("transport",),
            buckets=TTFB_BUCKETS,
            registry=self.registry,
        )
        self._tokens = Counter(
            "codexgate_tokens",
            "Tokens of completed turns; cached_input is part of input, reasoning of output.",
            ("kind",),
            registry=self.registry,
        )
        # Children made up front, so that their series exist (at 0) before the first request.
        self._ttfb_by_transport = {t: self._ttfb.labels(t) for t in TRANSPORTS}
        self._tokens_by_kind = {kind: self._tokens.labels(kind) for kind in TOKEN_KINDS}
        # labels() validates and locks on every call; a dict lookup saves ~2 µs a request.
        self._requests_by_labels: dict[tuple[str, Transport], Counter] = {}

    def observe_request(self, record: RequestRecord) -> None:
        """Count one finished request or WebSocket turn; only increments, never I/O."""
        labels = (status_label(record.status), record.transport)
        counter = self._requests_by_labels.get(labels)
        if counter is None:
            counter = self._requests_by_labels[labels] = self._requests.labels(*labels)
        counter.inc()
        if record.ttfb_ms is not None:
            self._ttfb_by_transport[record.transport].observe(record.ttfb_ms / 1000.0)
        tokens = record.tokens
        if tokens is None:
            return
        counts = (
            tokens.input_tokens,
            tokens.cached_input_tokens,
            tokens.output_tokens,
            tokens.reasoning_tokens,
        )
        for kind, count in zip(TOKEN_KINDS, counts, strict=True):
            if count is not None and count > 0:
                self._tokens_by_kind[kind].inc(count)

    async def exposition(
        self,
        windows: Sequence[WindowState],
        stats: RecorderStats,
        *,
        now: float,
        exhausts_at: Mapping[WindowKey, float] | None = None,
        instance: ThisInstance | None = None,
    ) -> bytes:
        """The text exposition of this registry and of the values read for this scrape."""
        slices = _slices_of(windows, exhausts_at or {})
        return await self.exposition_of(slices, stats, now=now, instance=instance)

    async def exposition_of(
        self,
        windows: AsyncIterable[WindowSlice],
        stats: RecorderStats,
        *,
        now: float,
        instance: ThisInstance | None = None,
    ) -> bytes:
        """exposition, the windows (with their exhaustion times) given a slice at a time."""
        parts: list[bytes] = []
        for family in self.registry.collect():
            parts.append(generate_latest(_Family(family)))
            # prometheus_client formats ~20 µs a line (100 accounts: ~15 ms in all): one family
            # at a time, with the proxy's streams served in between.
            await asyncio.sleep(0)
        # The window families have series per account: formatted a slice at a time, each
        # family's slices joined under one HELP and TYPE (10,000 accounts: ~0.8 s in all).
        texts: list[list[bytes]] = [[] for _ in range(WINDOW_FAMILIES)]
        async for chunk, exhausts_at in windows:
            for index, family in enumerate(_window_families(chunk, now, exhausts_at)):
                text = generate_latest(_Family(family))
                texts[index].append(_samples_only(text) if texts[index] else text)
            await asyncio.sleep(0)
        if not texts[0]:  # no window at all: the families' HELP and TYPE alone
            for index, family in enumerate(_window_families((), now, {})):
                texts[index].append(generate_latest(_Family(family)))
        parts.extend(b"".join(text) for text in texts)
        parts.extend(generate_latest(_Family(family)) for family in _recorder_families(stats))
        if instance is not None:
            parts.extend(generate_latest(_Family(f)) for f in _instance_families(instance))
        return b"".join(parts)


async def _slices_of(
    windows: Sequence[WindowState], exhausts_at: Mapping[WindowKey, float]
) -> AsyncIterator[WindowSlice]:
    """windows in slices of _WINDOW_SLICE, each with the exhaustion times."""
    for begin in range(0, len(windows), _WINDOW_SLICE):
        yield windows[begin : begin + _WINDOW_SLICE], exhausts_at


def _samples_only(text: bytes) -> bytes:
    """A family's exposition without its HELP and TYPE lines (its first two)."""
    return text.split(b"\n", 2)[2]


class _Family:
    """A collector of one metric family, so that generate_latest formats one at a time."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        """The one family."""
        yield self._family


def _window_families(
    windows: Sequence[WindowState], now: float, exhausts_at: Mapping[WindowKey, float]
) -> Iterator[Metric]:
    used = GaugeMetricFamily(
        "codexgate_window_used_percent",
        "Used percent of a rate-limit window, as last reported; 0 once its reset time has "
        "passed with no newer report (codexgate_window_reset_inferred is then 1).",
        labels=WINDOW_LABELS,
    )
    reset = GaugeMetricFamily(
        "codexgate_window_reset_seconds",
        "Seconds until the window resets (negative once the reported time has passed); "
        "absent when unknown.",
        labels=WINDOW_LABELS,
    )
    age = GaugeMetricFamily(
        "codexgate_window_data_age_seconds",
        "Seconds since the window's values were last reported.",
        labels=WINDOW_LABELS,
    )
    forecast = GaugeMetricFamily(
        "codexgate_window_forecast_exhaustion_seconds",
        "Seconds until the window reaches 100 % at the current pace; absent without a forecast.",
        labels=WINDOW_LABELS,
    )
    inferred = GaugeMetricFamily(
        "codexgate_window_reset_inferred",
        "1 when the window's reset time has passed with no newer report, so its used percent "
        "is taken as 0; else 0.",
        labels=WINDOW_LABELS,
    )
    for window in windows:
        labels = [str(window.account_id), window.account, window.limit_id, window.window]
        inferred.add_metric(labels, 1 if window.reset_inferred else 0)
        if window.used_percent is not None:
            used.add_metric(labels, window.used_percent)
        if window.resets_at is not None:
            reset.add_metric(labels, window.resets_at - now)
        age.add_metric(labels, max(0.0, now - window.confirmed_at))
        exhausts = exhausts_at.get(window.key)
        if exhausts is not None:
            forecast.add_metric(labels, max(0.0, exhausts - now))
    yield from (used, reset, age, forecast, inferred)


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _recorder_families(stats: RecorderStats) -> Iterator[Metric]:
    yield _counter(
        "codexgate_snapshots_recorded", "Usage snapshots written to the database.", stats.recorded
    )
    yield _counter(
        "codexgate_snapshots_dropped",
        "Usage snapshots lost (queue full, capture error, database down at shutdown).",
        stats.dropped,
    )
    yield _counter(
        "codexgate_snapshots_coalesced",
        "Usage snapshots replaced, before they were written, by a newer one of the same account "
        "and limit (the queue was full).",
        stats.coalesced,
    )
    yield _counter(
        "codexgate_snapshots_unattributed",
        "Usage reports on requests without a credential to attribute them to.",
        stats.unattributed,
    )
    yield _counter(
        "codexgate_requests_logged",
        "Request-log rows written to the database.",
        stats.requests_logged,
    )
    yield _counter(
        "codexgate_requests_dropped",
        "Request-log rows lost (queue full, database down at shutdown).",
        stats.requests_dropped,
    )
    yield GaugeMetricFamily(
        "codexgate_queue_depth", "Items waiting to be written.", value=stats.queue_depth
    )
    yield GaugeMetricFamily(
        "codexgate_queue_capacity",
        "Items that may wait to be written; beyond, snapshots coalesce and the rest is dropped.",
        value=stats.queue_capacity,
    )
    yield _counter(
        "codexgate_database_write_failures",
        "Batches the database could not take; each waits in the queue and is tried again.",
        stats.failed_writes,
    )
    yield GaugeMetricFamily(
        "codexgate_database_ok",
        "1 while database writes succeed, 0 while they fail (the proxy works either way).",
        value=1 if stats.db_state == "ok" else 0,
    )


def _instance_families(instance: ThisInstance) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "codexgate_instance_info",
        "This instance: its id (new at each start), machine and version; always 1.",
        labels=("instance_id", "hostname", "version"),
    )
    info.add_metric([instance.id, instance.hostname, instance.version], 1)
    yield info
    yield GaugeMetricFamily(
        "codexgate_singleton_leader",
        "1 while this instance holds the singleton lease (alert evaluation, webhook delivery, "
        "retention), else 0; across instances at most one is 1.",
        value=1 if instance.leads else 0,
    )
    yield _counter(
        "codexgate_singleton_takeovers",
        "Times this instance took the singleton role since it started.",
        instance.takeovers,
    )


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the app's metrics, told of every request record (after the recorder)."""
    cache = app[FORECASTS]

    async def exhaustion_times(
        latest: Sequence[LatestUsageRow], now: float
    ) -> Mapping[WindowKey, float]:
        table = await cache.of_rows(latest, now)
        return {
            (account_id, limit_id, window): found.exhausts_at
            for (account_id, limit_id), windows in table.items()
            for window, found in windows.items()
            if found.exhausts_at is not None
        }

    metrics = Metrics(forecasts=exhaustion_times)
    app[METRICS] = metrics
    recorder = app[RECORDER]
    recorder.on_request.append(metrics.observe_request)
    yield
    recorder.on_request.remove(metrics.observe_request)


async def _window_slices(
    store: UsageStore, forecasts: ForecastSource | None, now: float
) -> AsyncIterator[WindowSlice]:
    """The windows of every account's newest rows, a small page of accounts at a time: 10,000
    accounts never hold the loop long, and a page's objects are garbage before the next is
    read (fewer of them live long enough to set off a full garbage collection)."""
    after: int | None = 0
    while after is not None:
        latest, after = await store.latest_usage_page(after, _SCRAPE_ACCOUNTS)
        exhausts_at = {} if forecasts is None else await forecasts(latest, now)
        yield window_states(latest), exhausts_at


async def scrape(request: web.Request) -> web.Response:
    """GET metrics: the Prometheus text exposition, window values read from the store now."""
    app = request.app
    metrics = app[METRICS]
    now = time.time()
    windows = _window_slices(app[STORE], metrics.forecasts, now)
    stats = app[RECORDER].stats()
    coordinator = app[INSTANCE]
    instance = ThisInstance(
        id=coordinator.id,
        hostname=coordinator.hostname,
        version=__version__,
        leads=coordinator.leads,
        takeovers=coordinator.takeovers,
    )
    body = await metrics.exposition_of(windows, stats, now=now, instance=instance)
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: CONTENT_TYPE_LATEST})
