"""Alert rules, and the engine that applies them to every usage row as it is written.

Rules (each fires once per crossing, not on every snapshot; what has fired is kept in the
`alert_state` table, so a restart does not fire it again):

- threshold: a window's used percent reaches a threshold (75, 90, 95 by default, as the Codex
  CLI warns). A jump over several fires once, naming the highest; falling back below a
  threshold (a reset) re-arms it, and so does a new window period.
- limit_hit: a quota error says the limit is hit. limit_reset: that limit is back (its reset
  time passed, or a report without the hit came).
- forecast: the forecast says the window runs out before its reset (once per period).
- stale: a limit family's newest report is older than `stale_minutes` (once, until fresh data).

The engine follows the store like the feed does (after each of the recorder's commits, from the
last usage row id it read, evaluating only the accounts the commit touched), sweeps the time
rules over every account every `tick` seconds, writes what fired, tells its listeners (the
feed) and hands the alerts to the notifier. Nothing here is on the traffic
path, and a failure costs an alert, never a request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from codexgate.config import AlertConfig
from codexgate.core.forecast import Forecast
from codexgate.core.rows import (
    AlertRow,
    AlertState,
    LatestUsageRow,
    NewAlert,
    RecordResult,
    UsageRow,
)
from codexgate.core.text import duration, percent
from codexgate.core.windows import SAME_PERIOD_SECONDS
from codexgate.services.forecasts import ForecastCache
from codexgate.services.tasks import cancel_and_wait
from codexgate.storage.sqlite.store import Store

log = logging.getLogger(__name__)

WHOLE_FAMILY: Final = "*"
_PAGE: Final = 500
# Accounts per page of the time rules' sweep: one page's rows are evaluated between two awaits.
_SWEEP_ACCOUNTS: Final = 500

_StateKey = tuple[int, str, str, str]


@dataclass(slots=True)
class Decision:
    """What one evaluation decided: alerts to fire, states to set and to clear."""

    fired: list[NewAlert] = field(default_factory=list)
    states: dict[_StateKey, AlertState] = field(default_factory=dict)
    cleared: set[_StateKey] = field(default_factory=set)

    def set(self, state: AlertState) -> None:
        self.states[state.key] = state
        self.cleared.discard(state.key)

    def clear(self, key: _StateKey) -> None:
        self.states.pop(key, None)
        self.cleared.add(key)

    def extend(self, other: Decision) -> None:
        self.fired.extend(other.fired)
        for key in other.cleared:
            self.clear(key)
        for state in other.states.values():
            self.set(state)


def _same_period(a: int | None, b: int | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= SAME_PERIOD_SECONDS


def _resets(resets_at: int | None, now: float) -> str:
    if resets_at is None:
        return "reset time unknown"
    return f"resets in {duration(resets_at - now)}" if resets_at > now else "resetting now"


def evaluate_row(
    row: UsageRow,
    account: str,
    states: Mapping[_StateKey, AlertState],
    rules: AlertConfig,
    forecasts: Mapping[str, Forecast],
    now: float,
) -> Decision:
    """The threshold, limit-hit, limit-reset and forecast rules on one new usage row."""
    decision = Decision()
    who = account
    for value in row.windows():
        used = value.used_percent
        if used is None or not math.isfinite(used):
            continue
        crossed: list[float] = []
        for threshold in sorted(set(rules.thresholds)):
            key = (row.account_id, row.limit_id, value.label, f"threshold:{threshold:g}")
            state = states.get(key)
            if used >= threshold:
                if state is None or not _same_period(state.period, value.resets_at):
                    crossed.append(threshold)
                    decision.set(AlertState(*key, value.resets_at, now))
            elif state is not None:
                decision.clear(key)
        if crossed:
            top = crossed[-1]
            decision.fired.append(
                NewAlert(
                    at=now,
                    kind="threshold",
                    account_id=row.account_id,
                    account=who,
                    limit_id=row.limit_id,
                    window=value.label,
                    used_percent=used,
                    threshold=top,
                    resets_at=value.resets_at,
                    message=f"{who}: {_window_name(row.limit_id, value.label)} at "
                    f"{percent(used)} used (crossed {percent(top)}), "
                    f"{_resets(value.resets_at, now)}",
                )
            )
        forecast = forecasts.get(value.label)
        key = (row.account_id, row.limit_id, value.label, "forecast")
        state = states.get(key)
        if state is not None and not _same_period(state.period, value.resets_at):
            decision.clear(key)
            state = None
        if (
            rules.forecast
            and forecast is not None
            and forecast.status == "runs_out"
            and forecast.exhausts_at is not None
            and (forecast.runs_out_before_reset_seconds or 0) > 0
            and used < 100
            and state is None
        ):
            decision.set(AlertState(*key, value.resets_at, now))
            ahead = forecast.runs_out_before_reset_seconds or 0.0
            decision.fired.append(
                NewAlert(
                    at=now,
                    kind="forecast",
                    account_id=row.account_id,
                    account=who,
                    limit_id=row.limit_id,
                    window=value.label,
                    used_percent=used,
                    resets_at=value.resets_at,
                    exhausts_at=forecast.exhausts_at,
                    message=f"{who}: {_window_name(row.limit_id, value.label)} at "
                    f"{percent(used)} runs out in {duration(forecast.exhausts_at - now)} "
                    f"at the current pace, {duration(ahead)} before its reset",
                )
            )
    decision.extend(_limit_hit(row, who, states, rules, now))
    return decision


def _limit_hit(
    row: UsageRow,
    who: str,
    states: Mapping[_StateKey, AlertState],
    rules: AlertConfig,
    now: float,
) -> Decision:
    """limit_hit when a quota error arrives; limit_reset when a report says it is gone."""
    decision = Decision()
    key = (row.account_id, row.limit_id, WHOLE_FAMILY, "limit_hit")
    hit = row.limit_hit_type is not None and (
        row.limit_hit_resets_at is None or row.limit_hit_resets_at > now
    )
    state = states.get(key)
    if hit and state is None:
        decision.set(AlertState(*key, row.limit_hit_resets_at, now))
        if rules.limit_hit:
            back = (
                f"back in {duration(row.limit_hit_resets_at - now)}"
                if row.limit_hit_resets_at is not None
                else "no reset time given"
            )
            decision.fired.append(
                NewAlert(
                    at=now,
                    kind="limit_hit",
                    account_id=row.account_id,
                    account=who,
                    limit_id=row.limit_id,
                    resets_at=row.limit_hit_resets_at,
                    message=f"{who}: {row.limit_id} limit reached ({row.limit_hit_type}), {back}",
                )
            )
    elif not hit and state is not None:
        decision.extend(_limit_back(state, who, rules, now))
    return decision


def _limit_back(state: AlertState, who: str, rules: AlertConfig, now: float) -> Decision:
    decision = Decision()
    decision.clear(state.key)
    if rules.limit_reset:
        decision.fired.append(
            NewAlert(
                at=now,
                kind="limit_reset",
                account_id=state.account_id,
                account=who,
                limit_id=state.limit_id,
                resets_at=state.period,
                message=f"{who}: {state.limit_id} limit has reset and can be used again",
            )
        )
    return decision


def evaluate_time(
    latest: Iterable[LatestUsageRow],
    names: Mapping[int, str],
    states: Mapping[_StateKey, AlertState],
    rules: AlertConfig,
    now: float,
) -> Decision:
    """The rules that fire with time alone: stale data, and a hit limit whose reset passed."""
    decision = limits_back(states.values(), names, rules, now)
    decision.extend(evaluate_stale((item.usage for item in latest), names, states, rules, now))
    return decision


def limits_back(
    states: Iterable[AlertState], names: Mapping[int, str], rules: AlertConfig, now: float
) -> Decision:
    """limit_reset for each hit limit among states whose reset time has passed."""
    decision = Decision()
    for hit in states:
        if hit.rule == "limit_hit" and hit.period is not None and hit.period <= now:
            who = names.get(hit.account_id, f"account {hit.account_id}")
            decision.extend(_limit_back(hit, who, rules, now))
    return decision


def evaluate_stale(
    rows: Iterable[UsageRow],
    names: Mapping[int, str],
    states: Mapping[_StateKey, AlertState],
    rules: AlertConfig,
    now: float,
) -> Decision:
    """The stale rule on each limit family's newest row."""
    decision = Decision()
    for row in rows:
        key = (row.account_id, row.limit_id, WHOLE_FAMILY, "stale")
        state = states.get(key)
        age = now - row.confirmed_at
        stale = rules.stale_minutes > 0 and age > rules.stale_minutes * 60
        if stale and state is None:
            decision.set(AlertState(*key, int(row.confirmed_at), now))
            who = names.get(row.account_id, f"account {row.account_id}")
            decision.fired.append(
                NewAlert(
                    at=now,
                    kind="stale",
                    account_id=row.account_id,
                    account=who,
                    limit_id=row.limit_id,
                    message=f"{who}: no new {row.limit_id} usage report for "
                    f"{duration(age)}; the numbers shown may be out of date",
                )
            )
        elif not stale and state is not None:
            decision.clear(key)
    return decision


def _window_name(limit_id: str, window: str) -> str:
    family = "" if limit_id == "codex" else f"{limit_id} "
    return f"{family}{window} window"


def test_alert(now: float) -> NewAlert:
    """The alert the "send test alert" action sends."""
    return NewAlert(
        at=now,
        kind="test",
        message="codexgate test alert: this webhook receives codexgate's alerts",
    )


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


class _Pending(Mapping[_StateKey, AlertState]):
    """The engine's states as a pending decision leaves them, without copying either."""

    def __init__(self, base: Mapping[_StateKey, AlertState], pending: Decision) -> None:
        self._base = base
        self._pending = pending

    def __getitem__(self, key: _StateKey) -> AlertState:
        if key in self._pending.cleared:
            raise KeyError(key)
        found = self._pending.states.get(key)
        return self._base[key] if found is None else found

    def __iter__(self) -> Iterator[_StateKey]:
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
        store: Store,
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
        self._confirmed: set[int] = set()  # usage row ids confirmed since the last evaluation
        self._states: dict[_StateKey, AlertState] = {}
        self._names: dict[int, str] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[AlertListener] = []  # told of alerts after they are written
        self.stats = EngineStats()

    async def start(self) -> None:
        """Start after the newest row: history is not alerted on again."""
        self._cursor = (await self._store.feed_cursor()).usage
        self._states = {state.key: state for state in await self._store.alert_states()}
        self._task = asyncio.create_task(self._run(), name="codexgate-alerts")

    async def stop(self) -> None:
        """Stop the task (what it has not evaluated yet is evaluated by no one)."""
        await cancel_and_wait(self._task)

    def committed(self, result: RecordResult) -> None:
        """The recorder's on_commit callback: note the confirmations and wake the task."""
        self._confirmed.update(result.confirmed_row_ids)
        self._wake.set()

    def forget(self, account_id: int) -> None:
        """Drop what is kept about a deleted account (its states went with it in the store)."""
        self._states = {k: v for k, v in self._states.items() if k[0] != account_id}
        self._names.pop(account_id, None)
        self._forecasts.forget(account_id)

    async def record(self, decision: Decision) -> list[AlertRow]:
        """Write a decision, keep its states, and tell the listeners what fired."""
        written = await self._store.record_alerts(
            decision.fired, list(decision.states.values()), sorted(decision.cleared)
        )
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
            await self._learn_names({row.account_id for row in rows})
            for row in rows:
                self._cursor = max(self._cursor, row.id)
                decision.extend(await self._evaluate(row, decision, rules, moment))
                _keep_newest(touched, row)
            if len(rows) < _PAGE:
                break
        # Only a confirmation moves confirmed_at without a new row: read those rows as they are.
        if confirmed:
            for row in await self._store.usage_rows(sorted(confirmed)):
                _keep_newest(touched, row)
        if touched:
            await self._learn_names({account_id for account_id, _ in touched})
            states = _Pending(self._states, decision)
            decision.extend(evaluate_stale(touched.values(), self._names, states, rules, moment))
        return await self.record(decision)

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
        await self._learn_names({state.account_id for state in hits})
        written = await self.record(limits_back(hits, self._names, rules, moment))
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
                await self._learn_names({row.usage.account_id for row in rows})
                usage = (row.usage for row in rows)
                decision = evaluate_stale(usage, self._names, self._states, rules, moment)
                written.extend(await self.record(decision))
        return written

    async def _evaluate(
        self, row: UsageRow, pending: Decision, rules: AlertConfig, now: float
    ) -> Decision:
        self.stats.evaluated_rows += 1
        await self._forecasts.ensure(row.account_id, row.limit_id, now)
        self._forecasts.add(row)
        forecasts = self._forecasts.forecasts(row.account_id, row.limit_id, now)
        name = self._names.get(row.account_id, f"account {row.account_id}")
        states = _Pending(self._states, pending)
        return evaluate_row(row, name, states, rules, forecasts, now)

    async def _learn_names(self, account_ids: set[int]) -> None:
        unknown = account_ids - self._names.keys()
        if not unknown:
            return
        for account in await self._store.accounts_of(sorted(unknown)):
            self._names[account.id] = (
                account.display_name or account.email or f"account {account.id}"
            )

    def names_changed(self) -> None:
        """Accounts were renamed, added or deleted: read their names again when needed."""
        self._names.clear()

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
            steps = [self.run_commits]
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + self._tick
                steps.append(self.sweep)
            for step in steps:
                try:
                    await step()
                except (sqlite3.Error, ValueError, OSError) as exc:
                    self.stats.failures += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    self.stats.last_error_at = time.time()
                    log.warning("alerts: evaluation failed, retrying later: %s", exc)


def _keep_newest(rows: dict[tuple[int, str], UsageRow], row: UsageRow) -> None:
    """Keep row as its limit family's newest unless a newer one is there."""
    key = (row.account_id, row.limit_id)
    found = rows.get(key)
    if found is None or row.id >= found.id:
        rows[key] = row
