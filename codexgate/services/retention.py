"""Retention: a background task that prunes old history and requests, and thins old history."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Final, Literal

from aiohttp import web

from codexgate.keys import CONFIG, INSTANCE, RETENTION, RETENTION_OPTIONS, STORE
from codexgate.services.tasks import cancel_and_wait
from codexgate.storage.interface import RetentionStore, StorageUnavailable

log = logging.getLogger(__name__)

DAY: Final = 86_400.0
# Downsampling walks the history this many buckets at a time, so that a batch never rescans
# the rows it keeps in front of the ones it deletes (it would, with the whole range at once).
_SLICE_BUCKETS: Final = 6

_Kind = Literal["history", "requests", "downsampled"]


@dataclass(frozen=True, slots=True)
class RetentionOptions:
    """The task's tunables; the defaults are for production, tests make them small."""

    first_delay: float = 30.0  # seconds from start to the first pass
    interval: float = 600.0  # seconds from the end of one pass to the next
    batch_size: int = 500  # rows deleted per transaction
    pause: float = 0.005  # seconds between full batches: other writers and the proxy go first
    downsample_after: float = 7 * DAY  # history older than this is downsampled
    bucket_seconds: float = 600.0  # downsampling keeps one row per account, limit and bucket

    def __post_init__(self) -> None:
        if (
            self.first_delay < 0
            or not self.interval > 0
            or self.batch_size < 1
            or self.pause < 0
            or self.downsample_after < 0
            or not self.bucket_seconds > 0
        ):
            raise ValueError(f"invalid retention options: {self!r}")


@dataclass(frozen=True, slots=True)
class RetentionStats:
    """Counters shown on healthz."""

    last_run_at: float | None  # unix seconds when the last pass ended; None before the first
    last_run_seconds: float | None  # how long it took (milliseconds precision)
    history_pruned: int  # usage rows deleted for their age, since start
    requests_pruned: int  # requests deleted for their age
    downsampled: int  # usage rows deleted by downsampling
    errors: int  # passes that failed
    last_error: str | None  # why the last pass failed; None once a pass succeeds


class Retention:
    """Deletes history and requests older than their retention, in short batches, on a timer."""

    def __init__(
        self,
        store: RetentionStore,
        *,
        history_days: float,
        request_days: float,
        downsample: bool,
        options: RetentionOptions | None = None,
        clock: Callable[[], float] = time.time,
        leads: Callable[[], bool] = lambda: True,
    ) -> None:
        """Days of 0 keep that table forever; downsample thins history older than a week."""
        self._store = store
        self._history_days = history_days
        self._request_days = request_days
        self._downsample = downsample
        self.options = options or RetentionOptions()
        self._clock = clock
        self._leads = leads  # whether this instance does the singleton work (passes run there)
        self._task: asyncio.Task[None] | None = None
        self._deleted: dict[_Kind, int] = {"history": 0, "requests": 0, "downsampled": 0}
        # History captured before this was downsampled already (this process's passes).
        self._downsampled_until: float | None = None
        self._errors = 0
        self._last_error: str | None = None
        self._last_run_at: float | None = None
        self._last_run_seconds: float | None = None

    def stats(self) -> RetentionStats:
        """A consistent view of the counters."""
        return RetentionStats(
            last_run_at=self._last_run_at,
            last_run_seconds=self._last_run_seconds,
            history_pruned=self._deleted["history"],
            requests_pruned=self._deleted["requests"],
            downsampled=self._deleted["downsampled"],
            errors=self._errors,
            last_error=self._last_error,
        )

    def start(self) -> None:
        """Start the task: a first pass after options.first_delay, then one every interval."""
        self._task = asyncio.create_task(self._run(), name="codexgate-retention")

    async def stop(self) -> None:
        """Cancel the task and wait for it; a batch it is in rolls back (unless committing)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def run_once(self) -> bool:
        """One pass; False when it failed (logged and counted: the next pass tries again)."""
        started = time.monotonic()
        before = dict(self._deleted)
        try:
            await self._pass(self._clock())
        except StorageUnavailable as exc:
            self._failed(str(exc), started)
            log.warning("retention pass failed, trying again later: %s", self._last_error)
            return False
        except Exception as exc:  # a bug here must cost this pass, not the task
            self._failed(f"{exc.__class__.__name__}: {exc}", started)
            log.exception("unexpected error in the retention pass")
            return False
        self._last_error = None
        self._ended(started)
        deleted = {kind: self._deleted[kind] - before[kind] for kind in before}
        if any(deleted.values()):
            log.info(
                "retention: deleted %d history rows, %d requests, %d rows by downsampling in %.2fs",
                deleted["history"],
                deleted["requests"],
                deleted["downsampled"],
                self._last_run_seconds,
            )
        return True

    async def _run(self) -> None:
        await asyncio.sleep(self.options.first_delay)
        while True:
            if self._leads():
                await self.run_once()
            await asyncio.sleep(self.options.interval)

    async def _pass(self, now: float) -> None:
        store = self._store
        if self._history_days > 0:
            cutoff = now - self._history_days * DAY
            await self._drain("history", partial(store.prune_history_batch, cutoff))
        if self._request_days > 0:
            cutoff = now - self._request_days * DAY
            await self._drain("requests", partial(store.prune_requests_batch, cutoff))
        if self._downsample:
            await self._downsample_history(now)

    async def _downsample_history(self, now: float) -> None:
        """Thin history older than downsample_after, a slice of a few buckets at a time."""
        bucket = self.options.bucket_seconds
        until = _floor(now - self.options.downsample_after, bucket)
        start = self._downsampled_until
        while True:
            # Skip to the next row: an idle account's newest row can be years old.
            oldest = await self._store.oldest_history_at(since=start)
            if oldest is None or oldest >= until:
                break
            since = _floor(oldest, bucket)
            before = min(since + bucket * _SLICE_BUCKETS, until)
            thin = partial(self._store.downsample_history_batch, before, bucket, since=since)
            await self._drain("downsampled", thin)
            self._downsampled_until = start = before
        if start is None or start < until:
            self._downsampled_until = until

    async def _drain(self, kind: _Kind, batch: Callable[[int], Awaitable[int]]) -> None:
        """Run batch until it deletes less than a full batch, counting as it goes."""
        size = self.options.batch_size
        while True:
            deleted = await batch(size)
            self._deleted[kind] += deleted
            if deleted < size:
                return
            await asyncio.sleep(self.options.pause)

    def _failed(self, error: str, started: float) -> None:
        self._errors += 1
        self._last_error = error
        self._ended(started)

    def _ended(self, started: float) -> None:
        self._last_run_at = self._clock()
        self._last_run_seconds = round(time.monotonic() - started, 3)


def _floor(at: float, bucket: float) -> float:
    """The start of the bucket that at falls in."""
    return math.floor(at / bucket) * bucket


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the retention task, stopped before the store closes."""
    config = app[CONFIG]
    retention = Retention(
        app[STORE],
        history_days=config.history_retention_days,
        request_days=config.request_retention_days,
        downsample=config.downsample_history,
        options=app.get(RETENTION_OPTIONS),
        leads=lambda: app[INSTANCE].leads,
    )
    app[RETENTION] = retention
    retention.start()
    yield
    await retention.stop()
