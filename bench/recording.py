"""codexgate's recorder alone: snapshots and request rows committed per second, on SQLite or on
PostgreSQL.

`python -m bench.recording --mode N --seconds S` measures one mode on SQLite and prints it as
JSON: --before runs it once against today's tree and once against the exported revision, each in
a process of its own. That entry uses only what both revisions have (open_storage, the store's
counts, Recorder with offer, start, stop, stats and on_commit), as the old package cannot change.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import itertools
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

import codexgate
from codexgate.capture.headers import identity_from_token, parse_rate_limit_headers
from codexgate.core.models import Identity, RequestRecord, Snapshot, TokenUsage, UsageReport, Window
from codexgate.core.rows import RecordResult
from codexgate.services.recorder import Item, Recorder
from codexgate.storage import open_storage
from codexgate.storage.location import DatabaseLocation

from .before import Revision, check_imported
from .loops import loop_factory
from .processes import LOG_TAIL_LINES, BenchError, child_environment
from .protocol import (
    AUTH_CLAIMS,
    REPO_ROOT,
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
# A subprocess's time beyond its mode's seconds: start-up, the warm-up, the last commits.
SUBPROCESS_WITHIN: Final = 120.0


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
        stats = recorder.stats()
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
        dropped=stats.dropped + stats.requests_dropped,
        history_rows=history,
        request_rows=requests,
    )


def _mark(recorder: Recorder, results: list[RecordResult]) -> tuple[float, int, int, int]:
    stats = recorder.stats()
    return time.perf_counter(), stats.recorded, stats.requests_logged, len(results)


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


def _rate_json(rate: RecorderRate) -> dict[str, Any]:
    """A rate as JSON, its mode as an index into MODES."""
    fields = {field.name: getattr(rate, field.name) for field in dataclasses.fields(rate)}
    return {**fields, "mode": MODES.index(rate.mode)}


def _rate_from_json(data: dict[str, Any]) -> RecorderRate:
    return RecorderRate(**{**data, "mode": MODES[int(data["mode"])]})


async def _sqlite_rate(mode: Mode, seconds: float) -> RecorderRate:
    """One mode on a fresh SQLite file in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="codexgate-bench-recorder-") as folder:
        return await _measure(SQLITE, mode, Path(folder) / "recorder.db", seconds)


def _in_subprocess(
    mode: Mode, seconds: float, cwd: Path, environment: dict[str, str]
) -> tuple[RecorderRate, Path]:
    """One mode measured by `python -m bench.recording` in `cwd`; the rate and the codexgate
    package it imported."""
    argv = [sys.executable, "-m", "bench.recording", "--mode", str(MODES.index(mode))]
    try:
        done = subprocess.run(
            [*argv, "--seconds", repr(seconds)],
            cwd=cwd,
            env={**child_environment(), **environment},
            capture_output=True,
            text=True,
            timeout=seconds + SUBPROCESS_WITHIN,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"the recorder subprocess in {cwd} did not finish: {exc}") from exc
    if done.returncode != 0 or not done.stdout.strip():
        tail = "\n".join(done.stderr.splitlines()[-LOG_TAIL_LINES:])
        raise BenchError(f"the recorder subprocess in {cwd} exited {done.returncode}:\n{tail}")
    answer = orjson.loads(done.stdout.splitlines()[-1])
    return _rate_from_json(answer["rate"]), Path(answer["codexgate"])


def sqlite_recorder_comparison(
    seconds: float, revision: Revision
) -> tuple[list[RecorderRate], list[RecorderRate]]:
    """Every mode on SQLite against today's tree and against `revision`: each run in a process of
    its own (so that neither carries the bench's heap), which of the two goes first alternating
    from mode to mode."""
    today_package = (REPO_ROOT / "codexgate").resolve()
    today: list[RecorderRate] = []
    before: list[RecorderRate] = []
    shown = False
    for index, mode in enumerate(MODES):
        for is_before in (False, True) if index % 2 == 0 else (True, False):
            if is_before:
                rate, imported = _in_subprocess(
                    mode, seconds, revision.imports, revision.recorder_environment()
                )
                check_imported(revision, imported)
                if not shown:
                    print(f"  recorder, before: codexgate imported from {imported}", flush=True)
                    shown = True
                before.append(rate)
                label = f"{SQLITE}, before {revision.commit}"
            else:
                # python -m puts the repository first on sys.path: today's codexgate.
                rate, imported = _in_subprocess(mode, seconds, REPO_ROOT, {})
                if not imported.resolve().is_relative_to(today_package):
                    raise BenchError(f"today's recorder run imported codexgate from {imported}")
                today.append(rate)
                label = SQLITE
            print(f"  recorder on {label}: {recorder_line(rate)}", flush=True)
    return today, before


def main(argv: Sequence[str] | None = None) -> int:
    """Measure one mode on SQLite; print it, and where codexgate was imported from, as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.recording",
        description="codexgate's recorder alone, one mode on a temporary SQLite file, as JSON",
    )
    parser.add_argument("--mode", type=int, choices=range(len(MODES)), required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        rate = runner.run(_sqlite_rate(MODES[args.mode], args.seconds))
    answer = {"codexgate": codexgate.__file__, "rate": _rate_json(rate)}
    sys.stdout.write(orjson.dumps(answer).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
