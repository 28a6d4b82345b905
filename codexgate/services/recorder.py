"""The bounded queue between capture and the store, and the task that writes it in batches."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from codexgate.core.models import RequestRecord, Snapshot
from codexgate.core.rows import RecordResult
from codexgate.services.tasks import cancel_and_wait, wait_owned
from codexgate.storage.interface import StorageUnavailable, UsageStore

log = logging.getLogger(__name__)

DbState = Literal["ok", "error"]
Item = Snapshot | RequestRecord
# What a snapshot may replace under load: account, limit ids, and whether it reports a quota
# error (an event that a later report of the same limits must not erase).
_SnapshotKey = tuple[str, tuple[str, ...], bool]


class _OncePerInterval:
    """Lets a repeated warning through at most once per interval."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._last = float("-inf")

    def ready(self) -> bool:
        now = self._clock()
        if now - self._last < self._interval:
            return False
        self._last = now
        return True


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """Counters shown on healthz."""

    queue_depth: int
    queue_capacity: int
    recorded: int  # snapshots
    dropped: int  # snapshots
    unattributed: int  # snapshots without a credential, or of a seat refused by max_accounts
    requests_logged: int
    requests_dropped: int
    db_state: DbState
    last_error: str | None
    accounts_refused: int = 0  # snapshots and requests of new seats beyond max_accounts
    coalesced: int = 0  # snapshots replaced, before they were written, by a newer one


class Recorder:
    """Takes snapshots and request records without waiting; one task writes them in batches.

    At most `queue_size` items wait, in arrival order. When that is full, a snapshot replaces the
    newest waiting one of its account and limits (so under load what waits is bounded by the
    accounts, not the request rate); a request record, or a snapshot with none to replace, is
    dropped and counted.
    """

    def __init__(
        self,
        store: UsageStore,
        *,
        queue_size: int,
        max_accounts: int | None = None,
        batch_size: int = 1000,
        linger: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_accounts = max_accounts
        self._capacity = queue_size
        # By arrival number, so in arrival order; a snapshot with its key (made once, on offer).
        self._pending: dict[int, tuple[Item, _SnapshotKey | None]] = {}
        self._newest: dict[_SnapshotKey, int] = {}  # the newest waiting snapshot of each key
        self._numbers = itertools.count()
        self._wake = asyncio.Event()
        self._batch_size = batch_size
        self._linger = linger
        self._task: asyncio.Task[None] | None = None
        self._idle = False
        self._in_flight = 0  # taken off the queue, not yet written or dropped
        self._stopping = False
        self._drop_warning = _OncePerInterval(60.0, clock)
        self._refused_warning = _OncePerInterval(60.0, clock)
        self.recorded = 0
        self.dropped = 0
        self.coalesced = 0
        self.unattributed = 0
        self.accounts_refused = 0
        self.requests_logged = 0
        self.requests_dropped = 0
        self.db_state: DbState = "ok"
        self.last_error: str | None = None
        # Told what each batch wrote, right after its COMMIT, on the writer task: they must not
        # block (the event bus only notes the result and wakes its own task).
        self.on_commit: list[Callable[[RecordResult], None]] = []
        # Told of every request record as it is offered, on the proxy's path: they must only
        # count (the metrics); one that raises costs its count, never the request.
        self.on_request: list[Callable[[RequestRecord], None]] = []
        self._observer_warning = _OncePerInterval(60.0, clock)

    def offer(self, item: Item) -> None:
        """Queue an item for writing: coalesce a snapshot, or drop and count what does not fit."""
        number = next(self._numbers)
        key: _SnapshotKey | None = None
        if isinstance(item, RequestRecord):
            if self.on_request:
                self._observed(item)
            if len(self._pending) >= self._capacity:
                self._drop([item], "queue full")
                return
        else:
            key = _snapshot_key(item)
            if len(self._pending) >= self._capacity:
                older = self._newest.get(key)
                if older is None:
                    self._drop([item], "queue full")
                    return
                del self._pending[older]
                self.coalesced += 1
            self._newest[key] = number
        self._pending[number] = (item, key)
        self._wake.set()

    def _observed(self, record: RequestRecord) -> None:
        """Tell every on_request callback; one that fails is logged, and the request goes on."""
        for callback in tuple(self.on_request):
            try:
                callback(record)
            except Exception:  # a counter's bug must cost that count, never the request
                if self._observer_warning.ready():
                    log.exception("on_request callback %r failed", callback)

    def count_unattributed(self) -> None:
        """Note a usage report that came without a credential to attribute it to."""
        self.unattributed += 1

    def capture_failed(self, where: str, error: Exception) -> None:
        """Count a snapshot lost to an error while capturing it."""
        self.dropped += 1
        if self._drop_warning.ready():
            log.warning("could not capture usage from %s", where, exc_info=error)

    def stats(self) -> RecorderStats:
        """A consistent view of the counters."""
        return RecorderStats(
            queue_depth=len(self._pending) + self._in_flight,
            queue_capacity=self._capacity,
            recorded=self.recorded,
            dropped=self.dropped,
            coalesced=self.coalesced,
            unattributed=self.unattributed,
            accounts_refused=self.accounts_refused,
            requests_logged=self.requests_logged,
            requests_dropped=self.requests_dropped,
            db_state=self.db_state,
            last_error=self.last_error,
        )

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="codexgate-recorder")

    async def stop(self) -> None:
        """Stop the writer after it has written everything queued so far."""
        self._stopping = True
        task = self._task
        if self._idle:  # waiting on an empty queue: nothing is lost by cancelling
            await cancel_and_wait(task)
        elif task is not None:
            await wait_owned(task)
        await self._write_pending()

    async def _run(self) -> None:
        while not self._stopping:
            if not self._pending:
                self._idle = True
                self._wake.clear()
                await self._wake.wait()
                self._idle = False
            if len(self._pending) < self._batch_size:
                # Let a batch gather: one transaction per snapshot would cost more than the proxy.
                await asyncio.sleep(self._linger)
            await self._write(self._take_batch())

    def _take_batch(self) -> list[Item]:
        batch = []
        for number in list(itertools.islice(self._pending, self._batch_size)):
            item, key = self._pending.pop(number)
            if key is not None and self._newest.get(key) == number:
                del self._newest[key]
            batch.append(item)
        return batch

    async def _write_pending(self) -> None:
        while self._pending:
            await self._write(self._take_batch())

    async def _write(self, batch: list[Item]) -> None:
        if not batch:
            return
        self._in_flight = len(batch)
        try:
            await self._write_batch(batch)
        finally:
            self._in_flight = 0

    async def _write_batch(self, batch: list[Item]) -> None:
        try:
            result = await self._store.record(batch, max_accounts=self._max_accounts)
        except StorageUnavailable as exc:
            self.db_state = "error"
            self.last_error = str(exc)
            self._drop(batch, self.last_error)
            return
        except Exception as exc:  # a bug here must cost snapshots, not the writer task
            log.exception("unexpected error while writing %d snapshot(s)", len(batch))
            self.last_error = f"{exc.__class__.__name__}: {exc}"
            self._drop(batch, self.last_error)
            return
        if self.db_state != "ok":
            log.info("database writes recovered")
        self.db_state = "ok"
        snapshots = _count_snapshots(batch)
        self.recorded += snapshots - result.snapshots_refused
        self.requests_logged += len(batch) - snapshots
        if result.seats_refused:
            self._refused(result)
        self._committed(result)

    def _refused(self, result: RecordResult) -> None:
        """Count what max_accounts kept out, and say so at most once a minute."""
        self.unattributed += result.snapshots_refused
        self.accounts_refused += result.snapshots_refused + result.requests_refused
        if self._refused_warning.ready():
            log.warning(
                "max_accounts (%s) reached: %d new seat(s) not created, their usage not "
                "recorded; since start: %d snapshot(s) and request(s) of refused seats",
                self._max_accounts,
                result.seats_refused,
                self.accounts_refused,
            )

    def _committed(self, result: RecordResult) -> None:
        """Tell every on_commit callback; one that fails is logged and the writer goes on."""
        for callback in tuple(self.on_commit):
            try:
                callback(result)
            except Exception:  # a subscriber's bug must cost its notice, not the writer task
                log.exception("on_commit callback %r failed", callback)

    def _drop(self, items: list[Item], reason: str) -> None:
        snapshots = _count_snapshots(items)
        self.dropped += snapshots
        self.requests_dropped += len(items) - snapshots
        if self._drop_warning.ready():
            log.warning(
                "dropped %d snapshot(s) and %d request record(s) (%s); since start: %d and %d",
                snapshots,
                len(items) - snapshots,
                reason,
                self.dropped,
                self.requests_dropped,
            )


def _snapshot_key(snapshot: Snapshot) -> _SnapshotKey:
    report = snapshot.report
    limit_ids = tuple(limit.limit_id for limit in report.limits)
    return (snapshot.identity.account_key, limit_ids, report.limit_hit is not None)


def _count_snapshots(items: list[Item]) -> int:
    return sum(1 for item in items if isinstance(item, Snapshot))
