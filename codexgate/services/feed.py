"""The live feed's bus: it follows the recorder's commits and reads the rows after a cursor.

An event's position (its SSE id) is a composite cursor `<usage_id>.<request_id>.
<account_event_id>.<alert_id>` of store row ids: the feed's position after that event. Each kind
comes in id order, so a client that reconnects with `Last-Event-ID` gets exactly the rows after
that position from the database, then the live events, without gaps or duplicates.

The bus encodes each event once, with the `Framing` the edge that serves the stream gives it
(api/feed.py: SSE framing and the REST shapes), and queues the same bytes to every subscriber.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final, Generic, Protocol, TypeVar

from aiohttp import web

from codexgate.core.forecast import Forecast
from codexgate.core.rows import (
    AccountEvent,
    AccountRow,
    AlertRow,
    FeedCursor,
    RecordResult,
    RequestRow,
    UsageRow,
)
from codexgate.keys import ALERTS, CONFIG, EVENT_BUS, FEED_OPTIONS, FORECASTS, RECORDER, STORE
from codexgate.services.forecasts import ForecastCache
from codexgate.services.tasks import cancel_and_wait
from codexgate.storage.interface import Storage, StorageUnavailable

log = logging.getLogger(__name__)

# Position of the reconnecting client: four unsigned row ids (bounded, so int() stays cheap).
_EVENT_ID: Final = re.compile(r"([0-9]{1,19})\.([0-9]{1,19})\.([0-9]{1,19})\.([0-9]{1,19})")
# Rows read from the store per query, while replaying or following commits.
PAGE_SIZE: Final = 500
# Replayed frames written to the client at once.
_REPLAY_CHUNK: Final = 100
# Frames queued (events x subscribers) between two yields to the loop while catching up, so a
# burst of events to many subscribers never holds proxied traffic up for long.
_FANOUT_SLICE: Final = 2048


@dataclass(frozen=True, slots=True)
class FeedOptions:
    """The feed's tunables; the defaults are for production, tests make them small."""

    queue_size: int = 1000  # framed events one subscriber may have waiting; beyond: dropped
    ping_interval: float = 15.0  # seconds between `: ping` comments
    retry_ms: int = 3000  # the reconnection delay suggested to clients

    def __post_init__(self) -> None:
        if self.queue_size < 1 or not self.ping_interval > 0 or self.retry_ms < 0:
            raise ValueError(f"invalid feed options: {self!r}")


# -- cursors ------------------------------------------------------------------------------------


def event_id(cursor: FeedCursor) -> str:
    """The SSE id of a position: `<usage_id>.<request_id>.<account_event_id>.<alert_id>`."""
    return f"{cursor.usage}.{cursor.request}.{cursor.account}.{cursor.alert}"


def parse_event_id(raw: str) -> FeedCursor | None:
    """The position a Last-Event-ID names, or None when it is not one of ours."""
    match = _EVENT_ID.fullmatch(raw.strip())
    if match is None:
        return None
    usage, request, account, alert = (int(part) for part in match.groups())
    return FeedCursor(usage, request, account, alert)


def within(cursor: FeedCursor, bound: FeedCursor) -> bool:
    """Whether every id of cursor is at most bound's."""
    return (
        cursor.usage <= bound.usage
        and cursor.request <= bound.request
        and cursor.account <= bound.account
        and cursor.alert <= bound.alert
    )


def _furthest(a: FeedCursor, b: FeedCursor) -> FeedCursor:
    """The larger id of each kind."""
    return FeedCursor(
        max(a.usage, b.usage),
        max(a.request, b.request),
        max(a.account, b.account),
        max(a.alert, b.alert),
    )


# -- reading the store in feed order ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountChange:
    """An account event with the account as it is now (None once deleted)."""

    event: AccountEvent
    account: AccountRow | None

    @property
    def id(self) -> int:
        """The account event's id."""
        return self.event.id


FeedRow = UsageRow | RequestRow | AccountChange | AlertRow


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


_R = TypeVar("_R", bound=_HasId)


class _Source(Generic[_R]):
    """One table's rows after an id, in id order, read a page at a time, up to an optional id."""

    def __init__(
        self, fetch: Callable[[int, int], Awaitable[list[_R]]], after: int, until: int | None
    ) -> None:
        self._fetch = fetch
        self._after = after
        self._until = until
        self._rows: deque[_R] = deque()
        self._done = until is not None and after >= until

    async def peek(self) -> _R | None:
        """The next row, reading the next page when needed; None when there is none."""
        if not self._rows and not self._done:
            rows = await self._fetch(self._after, PAGE_SIZE)
            self._done = len(rows) < PAGE_SIZE
            if rows:
                self._after = rows[-1].id
            if self._until is not None:
                until = self._until
                kept = [row for row in rows if row.id <= until]
                self._done = self._done or len(kept) < len(rows) or self._after >= until
                rows = kept
            self._rows.extend(rows)
        return self._rows[0] if self._rows else None

    def pop(self) -> _R:
        """Take the row peek() returned."""
        return self._rows.popleft()


_AnySource = _Source[UsageRow] | _Source[RequestRow] | _Source[AccountChange] | _Source[AlertRow]


async def _account_changes(store: Storage, after: int, limit: int) -> list[AccountChange]:
    """account_events after an id, each with its account's current row."""
    events = await store.account_events_after(after, limit)
    wanted = {event.account_id for event in events if event.kind != "deleted"}
    accounts: dict[int, AccountRow] = {}
    if len(wanted) == 1:
        row = await store.account(next(iter(wanted)))
        if row is not None:
            accounts[row.id] = row
    elif wanted:
        accounts = {row.id: row for row in await store.accounts_of(sorted(wanted))}
    return [
        AccountChange(event, None if event.kind == "deleted" else accounts.get(event.account_id))
        for event in events
    ]


def _when(row: FeedRow) -> float:
    """The time a row sorts at among the other kinds."""
    if isinstance(row, UsageRow):
        return row.captured_at
    if isinstance(row, RequestRow):
        # A request is logged when it ends, after the snapshots it carried.
        return row.started_at + (row.duration_ms or 0.0) / 1000.0
    if isinstance(row, AlertRow):
        return row.at
    if row.event.kind == "created" and row.account is not None:
        # Before the first rows that name the account (its event is written with the batch).
        return min(row.event.at, row.account.first_seen_at)
    return row.event.at


async def read_after(
    store: Storage, after: FeedCursor, until: FeedCursor | None = None
) -> AsyncGenerator[FeedRow, None]:
    """Every row after `after` (and at most `until`), in id order per kind, merged by time."""
    usage: _Source[UsageRow] = _Source(
        store.usage_after, after.usage, None if until is None else until.usage
    )
    requests: _Source[RequestRow] = _Source(
        store.requests_after, after.request, None if until is None else until.request
    )
    accounts: _Source[AccountChange] = _Source(
        lambda after_id, limit: _account_changes(store, after_id, limit),
        after.account,
        None if until is None else until.account,
    )
    alerts: _Source[AlertRow] = _Source(
        store.alerts_after, after.alert, None if until is None else until.alert
    )
    # At equal times accounts come first (a new seat before its rows), then usage, requests,
    # and the alerts those rows made fire.
    ranked: tuple[_AnySource, ...] = (accounts, usage, requests, alerts)
    while True:
        best: tuple[float, int] | None = None
        for rank, source in enumerate(ranked):
            head = await source.peek()
            if head is not None and (best is None or (_when(head), rank) < best):
                best = (_when(head), rank)
        if best is None:
            return
        yield ranked[best[1]].pop()


def advance(cursor: FeedCursor, row: FeedRow) -> FeedCursor:
    """The position after row."""
    if isinstance(row, UsageRow):
        return replace(cursor, usage=max(cursor.usage, row.id))
    if isinstance(row, RequestRow):
        return replace(cursor, request=max(cursor.request, row.id))
    if isinstance(row, AlertRow):
        return replace(cursor, alert=max(cursor.alert, row.id))
    return replace(cursor, account=max(cursor.account, row.id))


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One event: a row read from the store, and the position after it (the event's id)."""

    row: FeedRow
    cursor: FeedCursor
    at: float  # when it is sent: a usage event's age counts to here
    forecasts: Mapping[str, Forecast]  # a usage row's limit family's forecasts at `at`


@dataclass(frozen=True, slots=True)
class Framing:
    """How the bus turns events into the bytes of a stream; the edge that serves it says."""

    encode: Callable[[FeedEvent], bytes]
    ping: bytes  # queued to every stream each ping interval


async def current_forecasts(
    cache: ForecastCache | None, row: UsageRow, now: float
) -> Mapping[str, Forecast]:
    """The forecasts of a usage row's limit family, taking the row in first."""
    if cache is None:
        return {}
    await cache.ensure(row.account_id, row.limit_id, now)
    cache.add(row)
    return cache.forecasts(row.account_id, row.limit_id, now)


_NO_FORECASTS: Final[Mapping[str, Forecast]] = MappingProxyType({})


async def feed_event(
    row: FeedRow, cursor: FeedCursor, now: float, cache: ForecastCache | None
) -> FeedEvent:
    """The event of one row read from the store, with the position after it as its id."""
    if isinstance(row, UsageRow):
        return FeedEvent(row, cursor, now, await current_forecasts(cache, row, now))
    return FeedEvent(row, cursor, now, _NO_FORECASTS)


# -- subscribers and the bus --------------------------------------------------------------------


class Subscription:
    """One stream's bounded queue of framed events: the bus fills it, the handler empties it."""

    def __init__(self, start: FeedCursor, maxsize: int) -> None:
        self.start = start  # the bus's position when it subscribed: live events come after it
        self._maxsize = maxsize
        self._frames: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed: str | None = None  # why the bus ended the stream
        self.writing = False  # the handler is inside a write (which may wait for the client)
        self.abort: Callable[[], None] | None = None  # cuts the connection under that write

    def put(self, data: bytes) -> bool:
        """Queue a frame; False (nothing queued) when the queue is full."""
        if len(self._frames) >= self._maxsize:
            return False
        self._frames.append(data)
        self._wake()
        return True

    def close(self, reason: str) -> None:
        """End the stream: forget what waits, wake the handler, cut a write that is stuck."""
        if self.closed is None:
            self.closed = reason
        self._frames.clear()
        self._wake()
        if self.writing and self.abort is not None:
            self.abort()  # the client stopped reading: the write would wait for ever

    def ping(self, data: bytes) -> None:
        """Queue a ping, unless the queue is full (a stream that far behind needs none)."""
        if len(self._frames) < self._maxsize:
            self._frames.append(data)
            self._wake()

    async def get(self) -> list[bytes]:
        """Every frame queued, waiting for one; [] once the stream is closed."""
        while not self._frames and self.closed is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frames = list(self._frames)
        self._frames.clear()
        return frames

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class EventBus:
    """Turns each commit into events, read once from the store and queued to every subscriber.

    The recorder calls committed() after each COMMIT; the bus's own task then reads the rows
    after its cursor (only when someone listens: otherwise it just moves the cursor to the
    store's newest ids) and puts each framed event into every subscriber's bounded queue. A
    subscriber whose queue is full is dropped: its stream ends and it reconnects with its last
    id. Writers other than the recorder (the accounts service, the alert engine) call notify().
    """

    def __init__(
        self,
        store: Storage,
        framing: Framing,
        options: FeedOptions | None = None,
        forecasts: ForecastCache | None = None,
        max_subscribers: int = 256,
    ) -> None:
        self._store = store
        self._framing = framing
        self._forecasts = forecasts
        self.options = options or FeedOptions()
        self.max_subscribers = max_subscribers
        self._cursor = FeedCursor(0, 0, 0, 0)
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._confirmed: set[int] = set()  # usage row ids confirmed since the last read
        # The newest row id the bus has seen per (account, limit), and each such row's account:
        # a confirmation names only a row id, and latest_usage_of() wants account ids.
        self._latest: dict[tuple[int, str], int] = {}
        self._row_account: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        # Told of other writers' commits too (the alert engine), with the row ids they confirmed.
        self.remote_listeners: list[Callable[[Sequence[int]], None]] = []
        self._closing = False
        self._last_failure = float("-inf")
        self.published = 0  # events framed
        self.dropped = 0  # subscribers dropped for a full queue
        self.refused = 0  # streams refused: max_subscribers were open

    @property
    def cursor(self) -> FeedCursor:
        """The position after the last event the bus has published."""
        return self._cursor

    @property
    def subscribers(self) -> int:
        """The number of open streams."""
        return len(self._subscribers)

    async def start(self) -> None:
        """Start at the store's newest rows and start the task that follows commits."""
        self._cursor = await self._store.feed_cursor()
        self._task = asyncio.create_task(self._run(), name="codexgate-event-bus")
        self._pinger = asyncio.create_task(self._ping(), name="codexgate-feed-ping")
        self._watcher = asyncio.create_task(self._watch(), name="codexgate-feed-watch")

    async def stop(self) -> None:
        """End every stream and stop the task."""
        self.close_streams("shutdown")
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._pinger)
        await cancel_and_wait(self._watcher)

    def committed(self, result: RecordResult) -> None:
        """The recorder's on_commit callback: note the batch and wake the task (never blocks)."""
        self._confirmed.update(result.confirmed_row_ids)
        self._wake.set()

    def notify(self, confirmed_row_ids: Sequence[int] = ()) -> None:
        """Say that rows the feed follows were committed by another writer (another instance on
        the same PostgreSQL, say), with the usage row ids it confirmed."""
        self._confirmed.update(confirmed_row_ids)
        self._wake.set()
        for listener in tuple(self.remote_listeners):
            listener(confirmed_row_ids)

    async def _watch(self) -> None:
        """Follow the commits of other instances (or processes on the same SQLite file)."""
        try:
            await self._store.watch_commits(self.notify)
        except StorageUnavailable:
            log.exception("live feed: cannot follow other instances' commits")

    def subscribe(self) -> Subscription | None:
        """A new stream's queue (live events after the bus's position go into it); None when
        max_subscribers streams are open."""
        if len(self._subscribers) >= self.max_subscribers:
            self.refused += 1
            return None
        subscription = Subscription(self._cursor, self.options.queue_size)
        if self._closing:
            subscription.close("shutdown")
        else:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a stream (its handler ended)."""
        self._subscribers.discard(subscription)

    def close_streams(self, reason: str) -> None:
        """End every stream and refuse new ones (on shutdown)."""
        self._closing = True
        subscribers, self._subscribers = self._subscribers, set()
        for subscription in subscribers:
            subscription.close(reason)

    async def _ping(self) -> None:
        """Queue a ping to every stream each interval (one timer for all, not one per stream)."""
        while True:
            await asyncio.sleep(self.options.ping_interval)
            for subscription in tuple(self._subscribers):
                subscription.ping(self._framing.ping)

    async def _run(self) -> None:
        """Catch up after each wake-up; several commits in between make one read."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._catch_up()
            except Exception:  # the feed must outlive a failed read; the next commit retries
                now = time.monotonic()
                if now - self._last_failure >= 60.0:
                    self._last_failure = now
                    log.exception("live feed could not read new rows; retrying on next commit")

    async def _catch_up(self) -> None:
        """Publish everything committed after the cursor, then the confirmations noted."""
        confirmed, self._confirmed = self._confirmed, set()
        if not self._subscribers:
            newest = await self._store.feed_cursor()
            if not self._subscribers:  # nobody subscribed while we read: nothing to send
                self._cursor = _furthest(self._cursor, newest)
                return
        # Let the handlers empty their queues after half a queue's worth of events, and the
        # rest of the loop run after a slice of fan-out.
        slice_events = _FANOUT_SLICE // max(1, len(self._subscribers))
        pause_every = max(1, min(self.options.queue_size // 2, slice_events))
        count = 0
        async with aclosing(read_after(self._store, self._cursor)) as rows:
            async for row in rows:
                self._cursor = advance(self._cursor, row)
                if isinstance(row, UsageRow):
                    self._remember(row)
                    confirmed.discard(row.id)  # read after that commit: confirmed_at is current
                elif isinstance(row, AccountChange) and row.event.kind == "deleted":
                    self._forget(row.event.account_id)
                    if self._forecasts is not None:
                        self._forecasts.forget(row.event.account_id)
                event = await feed_event(row, self._cursor, time.time(), self._forecasts)
                self._publish(self._framing.encode(event))
                count += 1
                if count % pause_every == 0:
                    await asyncio.sleep(0)
        if confirmed and self._subscribers:
            await self._publish_confirmed(confirmed)

    async def _publish_confirmed(self, confirmed: set[int]) -> None:
        """Send the rows whose confirmed_at moved, with the current position as their id."""
        accounts = {self._row_account[i] for i in confirmed if i in self._row_account}
        unknown = [row_id for row_id in confirmed if row_id not in self._row_account]
        if unknown:
            # Rows from before this bus followed the table (or while nobody listened): read
            # their accounts, never every account's latest rows.
            accounts.update(row.account_id for row in await self._store.usage_rows(unknown))
        rows = await self._store.latest_usage_of(sorted(accounts))
        now = time.time()
        for latest in rows:
            self._remember(latest.usage)
            if latest.usage.id in confirmed:
                found = await current_forecasts(self._forecasts, latest.usage, now)
                self._publish(
                    self._framing.encode(FeedEvent(latest.usage, self._cursor, now, found))
                )

    def _publish(self, data: bytes) -> None:
        """Queue a frame to every subscriber, dropping those whose queue is full."""
        self.published += 1
        for subscription in tuple(self._subscribers):
            if not subscription.put(data):
                self._subscribers.discard(subscription)
                self.dropped += 1
                log.info(
                    "live feed: dropped a subscriber that fell %d events behind",
                    self.options.queue_size,
                )
                subscription.close("queue full")

    def _remember(self, row: UsageRow) -> None:
        """Note row as its (account, limit)'s newest, unless a newer one is known."""
        key = (row.account_id, row.limit_id)
        previous = self._latest.get(key)
        if previous is not None and previous > row.id:
            return
        if previous is not None:
            self._row_account.pop(previous, None)
        self._latest[key] = row.id
        self._row_account[row.id] = row.account_id

    def _forget(self, account_id: int) -> None:
        """Drop what is noted about a deleted account."""
        for key in [key for key in self._latest if key[0] == account_id]:
            self._row_account.pop(self._latest.pop(key), None)


# -- the app's side -----------------------------------------------------------------------------


def bus_context(framing: Framing) -> Callable[[web.Application], AsyncIterator[None]]:
    """The bus's cleanup context, encoding with `framing`; after the recorder and alert engine."""

    async def bus_ctx(app: web.Application) -> AsyncIterator[None]:
        """The bus, told of every commit by the recorder and of every alert by the engine."""
        bus = EventBus(
            app[STORE],
            framing,
            app.get(FEED_OPTIONS),
            app.get(FORECASTS),
            max_subscribers=app[CONFIG].max_feed_subscribers,
        )
        await bus.start()
        app[EVENT_BUS] = bus
        recorder = app[RECORDER]
        recorder.on_commit.append(bus.committed)
        engine = app.get(ALERTS)

        def alerts_written(rows: Sequence[AlertRow]) -> None:
            bus.notify()

        if engine is not None:
            engine.listeners.append(alerts_written)
            bus.remote_listeners.append(engine.notified)
        yield
        if engine is not None:
            engine.listeners.remove(alerts_written)
            bus.remote_listeners.remove(engine.notified)
        recorder.on_commit.remove(bus.committed)
        await bus.stop()

    return bus_ctx


async def close_streams(app: web.Application) -> None:
    """on_shutdown: end every stream now, so graceful shutdown does not wait for them."""
    app[EVENT_BUS].close_streams("shutdown")
