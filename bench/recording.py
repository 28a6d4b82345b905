"""codexgate's recorder alone: snapshots and request rows committed per second, on SQLite or on
PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from codexgate.capture.headers import identity_from_token, parse_rate_limit_headers
from codexgate.core.models import Identity, RequestRecord, Snapshot, TokenUsage, UsageReport, Window
from codexgate.core.rows import RecordResult
from codexgate.services.recorder import Item, Recorder
from codexgate.storage import open_storage
from codexgate.storage.location import DatabaseLocation

from .processes import BenchError
from .protocol import (
    AUTH_CLAIMS,
    RESPONSES_PATH,
    bearer_token,
    rate_limit_headers,
    request_body,
    seat_claims,
)

SEATS: Final = 50  # a team's worth of Codex seats, offered round-robin
VARIANTS: Final = 100  # distinct used_percent values a seat cycles through when values change
QUEUE_SIZE: Final = 10_000  # codexgate's default --queue-size
HEARTBEAT: Final = 300.0  # codexgate's default --history-heartbeat
WARMUP: Final = 1.0
COMMIT_WITHIN: Final = 30.0
SQLITE: Final = "SQLite"
POSTGRESQL: Final = "PostgreSQL"


@dataclass(frozen=True, slots=True)
class Mode:
    """What is offered: whether every snapshot changes a value, whether a request row goes too."""

    name: str
    changing: bool
    requests: bool


MODES: Final = (
    Mode("snapshots, values unchanged (rows confirmed)", changing=False, requests=False),
    Mode("snapshots, a value changed each time (a row each)", changing=True, requests=False),
    Mode("turns: a snapshot and a request row each", changing=False, requests=True),
)


@dataclass(frozen=True, slots=True)
class RecorderRate:
    """Rows one mode committed per second, and what the database holds afterwards."""

    backend: str  # SQLITE or POSTGRESQL
    mode: Mode
    seconds: float
    snapshots_per_second: float
    requests_per_second: float
    rows_inserted: int
    rows_confirmed: int
    dropped: int
    history_rows: int
    request_rows: int


def _identity(seat: int) -> Identity:
    """The identity codexgate derives from a seat's bearer token and account header."""
    claims = copy.deepcopy(seat_claims("seat_a"))
    user = f"user-bench-{seat:03d}"
    claims["sub"] = f"auth0|bench{seat:03d}"
    claims[AUTH_CLAIMS]["chatgpt_user_id"] = claims[AUTH_CLAIMS]["user_id"] = user
    identity = identity_from_token(
        f"Bearer {bearer_token(claims)}", str(claims[AUTH_CLAIMS]["chatgpt_account_id"])
    )
    if identity is None:
        raise BenchError("the bench's seat token does not yield an identity")
    return identity


def _variant(report: UsageReport, percent: float) -> UsageReport:
    """The report with its first window's used_percent replaced."""
    limit = report.limits[0]
    first: Window = dataclasses.replace(limit.windows[0], used_percent=percent)
    changed = dataclasses.replace(limit, windows=(first, *limit.windows[1:]))
    return dataclasses.replace(report, limits=(changed, *report.limits[1:]))


def _items(mode: Mode) -> Iterator[Item]:
    """Snapshots (and request records) as capture builds them, round-robin over the seats."""
    report = parse_rate_limit_headers(rate_limit_headers(), time.time())
    if report is None:
        raise BenchError("the bench's rate-limit headers yield no usage report")
    reports = [_variant(report, float(n)) for n in range(VARIANTS)] if mode.changing else [report]
    identities = [_identity(seat) for seat in range(SEATS)]
    tokens = TokenUsage(1200, 1024, 300, 128, 1500)
    body = len(request_body())
    for count in range(10**12):
        identity = identities[count % SEATS]
        now = time.time()
        yield Snapshot(identity, now, "headers", reports[count // SEATS % len(reports)], 200)
        if mode.requests:
            yield RequestRecord(
                started_at=now - 0.004,
                identity=identity,
                method="POST",
                path=RESPONSES_PATH,
                transport="sse",
                status=200,
                model="gpt-5-codex",
                upstream_request_id="req_0001",
                response_id="resp_bench0001",
                ttfb_ms=1.2,
                duration_ms=3.9,
                bytes_in=body,
                bytes_out=4_000,
                tokens=tokens,
            )


async def _measure(
    backend: str, mode: Mode, location: DatabaseLocation, seconds: float
) -> RecorderRate:
    """Keep the recorder's queue full for WARMUP + `seconds`; count what it commits."""
    store = await open_storage(location, heartbeat_seconds=HEARTBEAT)
    try:
        recorder = Recorder(store, queue_size=QUEUE_SIZE)
        committed = asyncio.Event()
        results: list[RecordResult] = []

        def _note(result: RecordResult) -> None:
            results.append(result)
            committed.set()

        recorder.on_commit.append(_note)
        items = _items(mode)
        recorder.start()
        try:
            start = time.perf_counter()
            marks: list[tuple[float, int, int, int]] = []  # time, snapshots, requests, batches
            while not marks or time.perf_counter() < marks[0][0] + seconds:
                for _ in range(QUEUE_SIZE - recorder.stats().queue_depth):
                    recorder.offer(next(items))
                committed.clear()
                async with asyncio.timeout(COMMIT_WITHIN):
                    await committed.wait()  # refill after each batch: never spin on a full queue
                if not marks and time.perf_counter() >= start + WARMUP:
                    marks.append(_mark(recorder, results))
            marks.append(_mark(recorder, results))
        finally:
            await recorder.stop()
        history, requests = await store.count_history(), await store.count_requests()
    finally:
        await store.close()
    (began, snapshots0, requests0, batches0), (ended, snapshots1, requests1, _) = marks
    elapsed = ended - began
    measured = results[batches0:]
    return RecorderRate(
        backend=backend,
        mode=mode,
        seconds=elapsed,
        snapshots_per_second=(snapshots1 - snapshots0) / elapsed,
        requests_per_second=(requests1 - requests0) / elapsed,
        rows_inserted=sum(result.rows_inserted for result in measured),
        rows_confirmed=sum(result.rows_confirmed for result in measured),
        dropped=recorder.dropped + recorder.requests_dropped,
        history_rows=history,
        request_rows=requests,
    )


def _mark(recorder: Recorder, results: list[RecordResult]) -> tuple[float, int, int, int]:
    return time.perf_counter(), recorder.recorded, recorder.requests_logged, len(results)


async def recorder_rates(
    seconds: float, backend: str, fresh: Callable[[], Awaitable[DatabaseLocation]]
) -> list[RecorderRate]:
    """Every mode, each on a fresh database of `backend` that `fresh()` makes."""
    rates = []
    for mode in MODES:
        rate = await _measure(backend, mode, await fresh(), seconds)
        print(f"  recorder on {backend}: {recorder_line(rate)}", flush=True)
        rates.append(rate)
    return rates


async def sqlite_recorder_rates(seconds: float) -> list[RecorderRate]:
    """Every mode on SQLite, each on a fresh file in a temporary directory."""
    numbers = itertools.count()
    with tempfile.TemporaryDirectory(prefix="codexgate-bench-recorder-") as folder:

        async def fresh() -> DatabaseLocation:
            return Path(folder) / f"recorder-{next(numbers)}.db"

        return await recorder_rates(seconds, SQLITE, fresh)


def recorder_line(rate: RecorderRate) -> str:
    """One mode's figures."""
    requests = f", {rate.requests_per_second:,.0f} request rows/s" if rate.mode.requests else ""
    return (
        f"{rate.mode.name}: {rate.snapshots_per_second:,.0f} snapshots/s{requests} over "
        f"{rate.seconds:.1f} s (history rows inserted {rate.rows_inserted:,}, confirmed "
        f"{rate.rows_confirmed:,}; dropped {rate.dropped:,})"
    )
