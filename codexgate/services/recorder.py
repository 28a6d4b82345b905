"""The bounded queue between capture and the store, and the task that writes it in batches."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Final, Literal

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
# An item as it waits: its arrival number, the item, and a snapshot's key (None for a request).
_Entry = tuple[int, Item, _SnapshotKey | None]
# Items by arrival number, in arrival order, each with its snapshot key.
_Waiting = dict[int, tuple[Item, _SnapshotKey | None]]

_LIMIT_ID: Final = attrgetter("limit_id")


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
    failed_writes: int = 0  # batches the database could not take (each retried later)
    failing_since: float | None = None  # unix time of the first failed write of this outage


class Recorder:
    """Takes snapshots and request records without waiting; one task writes them in batches.

    At most `queue_size` items wait, in arrival order. When that is full, a snapshot replaces the
    newest waiting one of its account and limits (so under load what waits is bounded by the
    accounts, not the request rate); a request record, or a snapshot with none to replace, is
    dropped and counted.

    A batch the database cannot take (StorageUnavailable) goes back in front of what waits, by
    the same bound, and is tried again after a pause that doubles from `retry_delay` up to
    `max_retry_delay`: an outage costs what does not fit, never what does. `stop` writes what
    waits within `stop_timeout` and drops (and counts) the rest.
    """

    def __init__(
        self,
        store: UsageStore,
        *,
        queue_size: int,
        max_accounts: int | None = None,
        batch_size: int = 1000,
        linger: float = 0.05,
        retry_delay: float = 0.5,
        max_retry_delay: float = 5.0,
        stop_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_accounts = max_accounts
        self._capacity = queue_size
        # By arrival number, so in arrival order; a snapshot with its key (made once, on offer).
        self._pending: _Waiting = {}
        self._newest: dict[_SnapshotKey, int] = {}  # the newest waiting snapshot of each key
        self._numbers = itertools.count()
        self._wake = asyncio.Event()
        self._asleep = False  # the writer waits for _wake: offer() sets it only then
        self._batch_size = batch_size
        self._linger = linger
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._stop_timeout = stop_timeout
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0  # taken off the queue, being written
        self._stopping = False
        self._drop_warning = _OncePerInterval(60.0, clock)
        self._refused_warning = _OncePerInterval(60.0, clock)
        self._outage_warning = _OncePerInterval(60.0, clock)
        self.recorded = 0
        self.dropped = 0
        self.coalesced = 0
        self.unattributed = 0
        self.accounts_refused = 0
        self.requests_logged = 0
        self.requests_dropped = 0
        self.failed_writes = 0
        self.db_state: DbState = "ok"
        self.last_error: str | None = None
        self.failing_since: float | None = None
        # Told what each batch wrote, right after its COMMIT, on the writer task: they must not
        # block (the event bus only notes the result and wakes its own task).
        self.on_commit: list[Callable[[RecordResult], None]] = []
        # Told of every request record as it is offered, on the proxy's path: they must only
        # count (the metrics); one that raises costs its count, never the request.
        self.on_request: list[Callable[[RequestRecord], None]] = []
        self._observer_warning = _OncePerInterval(60.0, clock)

    def offer(self, item: Item) -> None:
        """Queue an item for writing: coalesce a snapshot, or drop and count what does not fit."""
        # On the proxy's path for every turn: kept to plain dict and tuple work.
        number = next(self._numbers)
        pending = self._pending
        if isinstance(item, Snapshot):
            report = item.report
            key = (
                item.identity.account_key,
                tuple(map(_LIMIT_ID, report.limits)),
                report.limit_hit is not None,
            )
            if len(pending) >= self._capacity:
                older = self._newest.get(key)
                if older is None:
                    self._drop([item], "queue full")
                    return
                del pending[older]
                self.coalesced += 1
            self._newest[key] = number
            pending[number] = (item, key)
        else:
            if self.on_request:
                self._observed(item)
            if len(pending) >= self._capacity:
                self._drop([item], "queue full")
                return
            pending[number] = (item, None)
        if self._asleep:
            self._asleep = False
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
            failed_writes=self.failed_writes,
            failing_since=self.failing_since,
        )

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="codexgate-recorder")

    async def stop(self) -> None:
        """Stop the writer, then write what waits; what is not written within stop_timeout, or
        what a database that is down refuses once more, is dropped and counted."""
        self._stopping = True
        deadline = asyncio.get_running_loop().time() + self._stop_timeout
        task = self._task
        if task is not None:
            if self._in_flight:
                # A write is under way: let it end (written, or back in the queue), but not past
                # the deadline. Anywhere else the writer holds nothing the queue lacks.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await wait_owned(task)
            await cancel_and_wait(task)
        await self._write_last(deadline)

    async def _run(self) -> None:
        delay = self._retry_delay
        while not self._stopping:
            if not self._pending:
                self._wake.clear()
                self._asleep = True
                await self._wake.wait()
            if len(self._pending) < self._batch_size:
                # Let a batch gather: one transaction per snapshot would cost more than the proxy.
                await asyncio.sleep(self._linger)
            if await self._write(self._take_batch()):
                delay = self._retry_delay
            elif not self._stopping:
                await asyncio.sleep(delay)  # the database is down: give it time to come back
                delay = min(delay * 2, self._max_retry_delay)

    def _take_batch(self) -> _Waiting:
        """The oldest batch_size waiting items, taken off the queue."""
        pending = self._pending
        if len(pending) <= self._batch_size:  # all of them: the newest of every key goes too
            self._pending = {}
            self._newest.clear()
            return pending
        batch: _Waiting = {}
        for number in list(itertools.islice(pending, self._batch_size)):
            entry = pending.pop(number)
            key = entry[1]
            if key is not None and self._newest.get(key) == number:
                del self._newest[key]
            batch[number] = entry
        return batch

    async def _write_last(self, deadline: float) -> None:
        """Write what waits at shutdown; a database that refuses a batch now is not waited for."""
        reason = "stopping while the database is unavailable"
        try:
            async with asyncio.timeout_at(deadline):
                while self._pending:
                    if not await self._write(self._take_batch()):
                        break
        except TimeoutError:
            reason = f"stopping: not written within {self._stop_timeout:g} s"
        if self._pending:
            items = [item for item, _ in self._pending.values()]
            self._pending.clear()
            self._newest.clear()
            self._drop(items, reason, always=True)

    async def _write(self, batch: _Waiting) -> bool:
        """Write one batch; False when the database could not take it and it waits again."""
        if not batch:
            return True
        items = [item for item, _ in batch.values()]
        self._in_flight = len(batch)
        try:
            result = await self._store.record(items, max_accounts=self._max_accounts)
        except StorageUnavailable as exc:
            self._put_back(batch)
            self._failed(str(exc))
            return False
        except asyncio.CancelledError:  # stop() gave up on this write: it decides what is lost
            self._put_back(batch)
            raise
        except Exception as exc:  # a bug here must cost snapshots, not the writer task
            # Not put back: a batch that fails for what it holds would fail forever.
            log.exception("unexpected error while writing %d snapshot(s)", len(batch))
            self.last_error = f"{exc.__class__.__name__}: {exc}"
            self._drop(items, self.last_error)
            return True
        finally:
            self._in_flight = 0
        if self.db_state != "ok":
            log.info("database writes recovered")
        self.db_state = "ok"
        self.failing_since = None
        snapshots = _count_snapshots(items)
        self.recorded += snapshots - result.snapshots_refused
        self.requests_logged += len(items) - snapshots
        if result.seats_refused:
            self._refused(result)
        self._committed(result)
        return True

    def _put_back(self, batch: _Waiting) -> None:
        """Put a batch that was not written back in front of what waits, within the capacity.

        Everything waiting arrived after the batch. When not all fits, first the batch's
        snapshots that a newer one of their key follows are coalesced (the oldest first), then
        the oldest of the rest are dropped: what waits keeps its place, as in offer().
        """
        entries = [(number, item, key) for number, (item, key) in batch.items()]
        excess = len(entries) + len(self._pending) - self._capacity
        kept = entries
        if excess > 0:
            followed = _followed(entries, set(self._newest))
            kept = []
            for position, entry in enumerate(entries):
                if excess > 0 and position in followed:
                    excess -= 1
                    self.coalesced += 1
                else:
                    kept.append(entry)
            if excess > 0:
                self._drop([item for _, item, _ in kept[:excess]], "queue full, database down")
                kept = kept[excess:]
        waiting_keys = set(self._newest)
        for number, _, key in kept:  # in arrival order: the newest of a key is set last
            if key is not None and key not in waiting_keys:
                self._newest[key] = number
        restored = {number: (item, key) for number, item, key in kept}
        self._pending = restored | self._pending

    def _failed(self, reason: str) -> None:
        """Note a write the database refused: healthz degrades, the batch is tried again."""
        self.failed_writes += 1
        self.last_error = reason
        starting = self.db_state == "ok"
        if starting:
            self.db_state = "error"
            self.failing_since = time.time()
        if self._outage_warning.ready() or starting:
            log.warning(
                "database writes fail (%s); %d item(s) wait and are tried again; "
                "since start: %d snapshot(s) and %d request record(s) dropped",
                reason,
                len(self._pending),
                self.dropped,
                self.requests_dropped,
            )

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

    def _drop(self, items: list[Item], reason: str, *, always: bool = False) -> None:
        if not items:
            return
        snapshots = _count_snapshots(items)
        self.dropped += snapshots
        self.requests_dropped += len(items) - snapshots
        if self._drop_warning.ready() or always:
            log.warning(
                "dropped %d snapshot(s) and %d request record(s) (%s); since start: %d and %d",
                snapshots,
                len(items) - snapshots,
                reason,
                self.dropped,
                self.requests_dropped,
            )


def _followed(batch: list[_Entry], newer_keys: set[_SnapshotKey]) -> set[int]:
    """Positions in batch of the snapshots a newer one of their key follows (in the batch, or
    among newer_keys: those of what arrived after it)."""
    followed = set()
    seen = set(newer_keys)
    for position in range(len(batch) - 1, -1, -1):
        key = batch[position][2]
        if key is not None:
            if key in seen:
                followed.add(position)
            seen.add(key)
    return followed


def _count_snapshots(items: list[Item]) -> int:
    return sum(1 for item in items if isinstance(item, Snapshot))
