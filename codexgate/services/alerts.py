"""Alerting's owned part: the engine that applies the rules to every usage row as it is written,
the settings in force (config file, changed through the API) and the cleanup context.

The rules themselves are pure, in `codexgate.core.alerts`; what has fired is kept in the
`alert_state` table, so a restart does not fire it again.

The engine follows the store like the feed does (after each of the recorder's commits, from the
last usage row id it read, evaluating only the accounts the commit touched), sweeps the time
rules over every account every `tick` seconds, writes what fired, tells its listeners (the
feed) and hands the alerts to the notifier. Nothing here is on the traffic
path, and a failure costs an alert, never a request.

Rules set through the API are kept in the `settings` table and win over the config file's until
they are deleted. Webhooks come from both: the config file's, and those added through the API.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast

from aiohttp import web

from codexgate.config import AlertConfig
from codexgate.core.accounts import account_title, default_title
from codexgate.core.alerts import (
    WHOLE_FAMILY,
    Decision,
    StateKey,
    evaluate_row,
    evaluate_stale,
    limits_back,
    stored_rules,
)
from codexgate.core.rows import (
    AlertRow,
    AlertState,
    LeaseHeld,
    RecordResult,
    UsageRow,
    WebhookRow,
)
from codexgate.keys import (
    ALERT_SETTINGS,
    ALERTS,
    CONFIG,
    FORECASTS,
    INSTANCE,
    NOTIFIER,
    RECORDER,
    STORE,
)
from codexgate.services import notify
from codexgate.services.forecasts import ForecastCache
from codexgate.services.tasks import cancel_and_wait
from codexgate.storage.interface import LeaseLost, Storage, StorageUnavailable

log = logging.getLogger(__name__)

RULES_SETTING: Final = "alert_rules"  # the settings row the API's rules are kept in
_PAGE: Final = 500
# Accounts per page of the time rules' sweep: one page's rows are evaluated between two awaits.
_SWEEP_ACCOUNTS: Final = 500
# Alerts left undelivered by an instance that stopped or died are delivered by the next one to
# take the singleton role, unless older than this: news of an hour ago is no longer news.
REDELIVER_SECONDS: Final = 3600.0


@dataclass(slots=True)
class EngineStats:
    """What the engine did since start."""

    fired: int = 0
    evaluated_rows: int = 0
    swept_rows: int = 0  # rows the sweeps read: those whose stale state was about to change
    failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None


AlertListener = Callable[[Sequence[AlertRow]], None]


class _Pending(Mapping[StateKey, AlertState]):
    """The engine's states as a pending decision leaves them, without copying either."""

    def __init__(self, base: Mapping[StateKey, AlertState], pending: Decision) -> None:
        self._base = base
        self._pending = pending

    def __getitem__(self, key: StateKey) -> AlertState:
        if key in self._pending.cleared:
            raise KeyError(key)
        found = self._pending.states.get(key)
        return self._base[key] if found is None else found

    def __iter__(self) -> Iterator[StateKey]:
        pending = self._pending
        for key in self._base:
            if key not in pending.states and key not in pending.cleared:
                yield key
        yield from pending.states

    def __len__(self) -> int:
        return sum(1 for _ in self)


class AlertEngine:
    """Follows the usage rows as they are committed and fires the rules (an owned task).

    After each commit it evaluates the rows written and confirmed, and the stale rule of their
    accounts only; the time rules over every account run once a tick, a page of accounts at a
    time, reading only the rows whose stale state would change: with 10,000 accounts a commit
    never walks them all on the loop that proxies everyone's traffic.
    """

    def __init__(
        self,
        store: Storage,
        forecasts: ForecastCache,
        rules: Callable[[], AlertConfig],
        *,
        tick: float = 60.0,
    ) -> None:
        self._store = store
        self._forecasts = forecasts
        self._rules = rules
        self._tick = tick
        self._cursor = 0
        # The cursor as far as every decision before it is written: what the lease may save.
        self._saved = 0
        # The instance whose singleton lease fences the engine's writes; None: unfenced.
        self._holder: str | None = None
        self._confirmed: set[int] = set()  # usage row ids confirmed since the last evaluation
        self._delivered: set[int] = set()  # alert ids delivered, to take out of the outbox
        self.on_lease_lost: Callable[[], None] = lambda: None
        self._states: dict[StateKey, AlertState] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[AlertListener] = []  # told of alerts after they are written
        self.stats = EngineStats()

    @property
    def cursor(self) -> int:
        """The newest usage row id evaluated."""
        return self._cursor

    @property
    def saved_cursor(self) -> int:
        """The newest usage row id evaluated whose decisions are all written."""
        return self._saved

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, *, holder: str | None = None, cursor: int = 0) -> None:
        """With `holder`, start after `cursor` (where the lease's previous holder stopped), and
        every write checks that this instance still holds the singleton lease; without, after
        the newest row: history is not alerted on again."""
        await cancel_and_wait(self._task)
        self._holder = holder
        self._cursor = cursor if holder is not None else (await self._store.feed_cursor()).usage
        self._saved = self._cursor
        self._confirmed.clear()
        self._states = {state.key: state for state in await self._store.alert_states()}
        self._task = asyncio.create_task(self._run(), name="codexgate-alerts")

    async def stop(self) -> None:
        """Stop the task (what it has not evaluated yet waits for the next holder's engine)."""
        await cancel_and_wait(self._task)
        self._task = None
        self._holder = None

    def notified(self, confirmed_row_ids: Sequence[int] = ()) -> None:
        """Another writer (instance) committed rows, confirming these: wake the task."""
        self._confirmed.update(confirmed_row_ids)
        self._wake.set()

    def delivered(self, alert_id: int) -> None:
        """The notifier is done with this alert: take it out of the outbox soon."""
        self._delivered.add(alert_id)
        self._wake.set()

    async def flush_delivered(self) -> None:
        """Take the delivered alerts out of the outbox (kept for the next try when it fails)."""
        if not self._delivered:
            return
        done, self._delivered = self._delivered, set()
        try:
            await self._store.alerts_delivered(sorted(done))
        except StorageUnavailable:
            self._delivered |= done
            raise

    def committed(self, result: RecordResult) -> None:
        """The recorder's on_commit callback: note the confirmations and wake the task."""
        self._confirmed.update(result.confirmed_row_ids)
        self._wake.set()

    def forget(self, account_id: int) -> None:
        """Drop what is kept about a deleted account (its states went with it in the store)."""
        self._states = {k: v for k, v in self._states.items() if k[0] != account_id}
        self._forecasts.forget(account_id)

    async def record(self, decision: Decision, *, through: int | None = None) -> list[AlertRow]:
        """Write a decision, keep its states, and tell the listeners what fired; `through` is
        the cursor up to which every decision is then written (saved with the lease)."""
        cursor = self._saved if through is None else through
        lease = None if self._holder is None else LeaseHeld(self._holder, cursor)
        written = await self._store.record_alerts(
            decision.fired, list(decision.states.values()), sorted(decision.cleared), lease=lease
        )
        self._saved = max(self._saved, cursor)
        for key in decision.cleared:
            self._states.pop(key, None)
        self._states.update(decision.states)
        self.stats.fired += len(written)
        if written:
            for listener in tuple(self.listeners):
                try:
                    listener(written)
                except Exception:  # a listener's bug must not stop the alerts
                    log.exception("an alert listener failed")
        return written

    async def run_once(self, now: float | None = None) -> list[AlertRow]:
        """Evaluate the rows committed since the last call, then sweep the time rules."""
        moment = time.time() if now is None else now
        written = await self.run_commits(moment)
        written.extend(await self.sweep(moment))
        return written

    async def run_commits(self, now: float | None = None) -> list[AlertRow]:
        """The rules on the rows written and confirmed since the last call, for their
        accounts only."""
        moment = time.time() if now is None else now
        confirmed, self._confirmed = self._confirmed, set()
        decision = Decision()
        rules = self._rules()
        touched: dict[tuple[int, str], UsageRow] = {}
        while True:
            rows = await self._store.usage_after(self._cursor, _PAGE)
            names = await self._names_of({row.account_id for row in rows})
            for row in rows:
                self._cursor = max(self._cursor, row.id)
                decision.extend(await self._evaluate(row, names, decision, rules, moment))
                _keep_newest(touched, row)
            if len(rows) < _PAGE:
                break
        # Only a confirmation moves confirmed_at without a new row: read those rows as they are.
        if confirmed:
            for row in await self._store.usage_rows(sorted(confirmed)):
                _keep_newest(touched, row)
        if touched:
            names = await self._names_of({account_id for account_id, _ in touched})
            states = _Pending(self._states, decision)
            decision.extend(evaluate_stale(touched.values(), names, states, rules, moment))
        return await self.record(decision, through=self._cursor)

    async def sweep(self, now: float | None = None) -> list[AlertRow]:
        """The time rules over every account: hit limits whose reset passed, and stale data,
        a page of accounts at a time (each page's decision written before the next is read)."""
        moment = time.time() if now is None else now
        rules = self._rules()
        hits = [
            state
            for state in self._states.values()
            if state.rule == "limit_hit" and state.period is not None and state.period <= moment
        ]
        names = await self._names_of({state.account_id for state in hits})
        # An account deleted behind the engine's back (the command line writing the file while
        # the server runs) took its states with it: drop them here, fire nothing for it.
        for gone in {state.account_id for state in hits} - names.keys():
            self.forget(gone)
        hits = [state for state in hits if state.account_id in names]
        written = await self.record(limits_back(hits, names, rules, moment))
        # With the rule off every stale state clears: no row is older than minus infinity.
        stale_seconds = rules.stale_minutes * 60
        cutoff = moment - stale_seconds if stale_seconds > 0 else -math.inf
        after: int | None = 0
        while after is not None:
            rows, after = await self._store.stale_changes_page(
                after, _SWEEP_ACCOUNTS, cutoff, window=WHOLE_FAMILY, rule="stale"
            )
            if rows:
                self.stats.swept_rows += len(rows)
                names = await self._names_of({row.usage.account_id for row in rows})
                usage = (row.usage for row in rows)
                decision = evaluate_stale(usage, names, self._states, rules, moment)
                written.extend(await self.record(decision))
        return written

    async def _evaluate(
        self,
        row: UsageRow,
        names: Mapping[int, str],
        pending: Decision,
        rules: AlertConfig,
        now: float,
    ) -> Decision:
        self.stats.evaluated_rows += 1
        await self._forecasts.ensure(row.account_id, row.limit_id, now)
        self._forecasts.add(row)
        forecasts = self._forecasts.forecasts(row.account_id, row.limit_id, now)
        name = names.get(row.account_id, default_title(row.account_id))
        states = _Pending(self._states, pending)
        return evaluate_row(row, name, states, rules, forecasts, now)

    async def _names_of(self, account_ids: set[int]) -> dict[int, str]:
        """The accounts' names as the store has them now.

        Read for each evaluation, never kept: a name kept between evaluations went stale when
        a rename landed while it was being read, or came from the command line's own write to
        the database file, and the next alert named the account by its old name.
        """
        if not account_ids:
            return {}
        return {
            account.id: account_title(account.id, account.display_name, account.email)
            for account in await self._store.accounts_of(sorted(account_ids))
        }

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self._tick
        while True:
            try:
                async with asyncio.timeout_at(next_sweep):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            steps: list[Callable[[], Awaitable[object]]] = [self.run_commits, self.flush_delivered]
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + self._tick
                steps.append(self.sweep)
            for step in steps:
                try:
                    await step()
                except LeaseLost as exc:
                    # Another instance holds the role now: stop, and let the heartbeat sort
                    # out the role (this task must not cancel itself).
                    log.warning("alerts: %s; stopping the evaluation here", exc)
                    self._holder = None
                    self.on_lease_lost()
                    return
                except StorageUnavailable as exc:
                    self.stats.failures += 1
                    self.stats.last_error = str(exc)[:300]
                    self.stats.last_error_at = time.time()
                    log.warning("alerts: evaluation failed, retrying later: %s", exc)


def _keep_newest(rows: dict[tuple[int, str], UsageRow], row: UsageRow) -> None:
    """Keep row as its limit family's newest unless a newer one is there."""
    key = (row.account_id, row.limit_id)
    found = rows.get(key)
    if found is None or row.id >= found.id:
        rows[key] = row


class AlertSettings:
    """The rules in force and every webhook, for the engine, the notifier and the API."""

    def __init__(
        self, from_file: AlertConfig, from_api: AlertConfig | None, stored: Sequence[WebhookRow]
    ) -> None:
        self.from_file = from_file
        self.from_api = from_api
        self.stored = list(stored)

    def rules(self) -> AlertConfig:
        """The rules in force: those set through the API, else the config file's."""
        return self.from_api or self.from_file

    def webhooks(self) -> list[notify.Webhook]:
        """Every destination: the config file's, then those added through the API."""
        return [notify.from_config(hook) for hook in self.from_file.webhooks] + [
            notify.Webhook(row.url, cast(notify.WebhookFormat, row.format), row.name)
            for row in self.stored
        ]


def to_notification(row: AlertRow) -> notify.Alert:
    """A stored alert as the notifier delivers it."""
    return notify.Alert(
        kind=row.kind,
        at=row.at,
        account_id=row.account_id,
        account=row.account,
        limit_id=row.limit_id,
        window=row.window,
        used_percent=row.used_percent,
        threshold=row.threshold,
        resets_at=row.resets_at,
        exhausts_at=row.exhausts_at,
        message=row.message,
        id=row.id,
    )


async def load_settings(store: Storage, from_file: AlertConfig) -> AlertSettings:
    """The alert settings as the config file and the database say."""
    stored = stored_rules(await store.get_setting(RULES_SETTING), from_file)
    for warning in stored.warnings:
        log.warning("%s", warning)
    return AlertSettings(from_file, stored.rules, await store.webhooks())


async def alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: settings, notifier and engine; after the recorder and the instance's
    lease, before the feed. The engine runs, and undelivered alerts are delivered, only while
    this instance holds the singleton role."""
    store = app[STORE]
    settings = await load_settings(store, app[CONFIG].alerts)
    app[ALERT_SETTINGS] = settings
    session = notify.new_session()
    engine = AlertEngine(store, app[FORECASTS], settings.rules)
    notifier = notify.Notifier(session, settings.webhooks, on_done=engine.delivered)
    notifier.start()
    app[NOTIFIER] = notifier
    coordinator = app[INSTANCE]

    def deliver(rows: Sequence[AlertRow]) -> None:
        for row in rows:
            if row.kind != "test":  # a test alert is sent by its own request, at once
                notifier.submit(to_notification(row))

    async def on_role(leads: bool) -> None:
        if not leads:
            await engine.stop()
            notifier.abandon()  # what is not in flight stays in the outbox for the next holder
            return
        lease = coordinator.lease
        await engine.start(holder=coordinator.id, cursor=lease.cursor if lease else 0)
        await engine.flush_delivered()
        since = time.time() - REDELIVER_SECONDS
        await store.alerts_delivered((), before=since)
        for row in await store.undelivered_alerts(since):
            notifier.submit(to_notification(row), unless_pending=True)

    engine.listeners.append(deliver)
    engine.on_lease_lost = coordinator.lost
    coordinator.progress = lambda: engine.saved_cursor
    coordinator.listeners.append(on_role)
    app[ALERTS] = engine
    recorder = app[RECORDER]
    recorder.on_commit.append(engine.committed)
    try:
        if coordinator.leads:  # the role was taken before this context started
            try:
                await on_role(True)
            except StorageUnavailable as exc:
                log.warning("alerts: cannot start the evaluation yet: %s", exc)
                coordinator.lost()  # the heartbeat takes the role again, and starts it
        yield
    finally:
        recorder.on_commit.remove(engine.committed)
        coordinator.listeners.remove(on_role)
        await engine.stop()
        await notifier.stop()
        try:  # what the notifier finished in its grace is not delivered again
            await engine.flush_delivered()
        except StorageUnavailable as exc:
            log.warning("alerts: could not note the last deliveries: %s", exc)
        await session.close()
