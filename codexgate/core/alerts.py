"""Alert rules (pure): what fires on a usage row or with time alone, and the rules' validation.

Rules (each fires once per crossing, not on every snapshot; what has fired is kept as alert
states, so a restart does not fire it again):

- threshold: a window's used percent reaches a threshold (75, 90, 95 by default, as the Codex
  CLI warns). A jump over several fires once, naming the highest; falling back below a
  threshold (a reset) re-arms it, and so does a new window period.
- limit_hit: a quota error says the limit is hit. limit_reset: that limit is back (its reset
  time passed, or a report without the hit came).
- forecast: the forecast says the window runs out before its reset (once per period).
- stale: a limit family's newest report is older than `stale_minutes` (once, until fresh data).

One event, one alert: a report that says the limit is reached (a 429 `usage_limit_reached`)
fires limit_hit only; the thresholds and forecasts it crosses count as told by it (their states
are set, nothing more fires for them in this period). With the limit_hit rule off they fire.

Each kind has a severity (`SEVERITIES`): critical, warning, info, or test.

Rules changed through the API are validated here (`rules_from`, `stored_rules`); a bad field
raises `RuleError`, which the API answers as a 400.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

import orjson

from codexgate.config import AlertConfig
from codexgate.core.accounts import default_title
from codexgate.core.forecast import Forecast
from codexgate.core.limits import MAIN_LIMIT
from codexgate.core.rows import AlertKind, AlertState, NewAlert, UsageRow
from codexgate.core.text import clock, duration, percent
from codexgate.core.windows import SAME_PERIOD_SECONDS

WHOLE_FAMILY: Final = "*"
RULE_FIELDS: Final = ("thresholds", "limit_hit", "limit_reset", "forecast", "stale_minutes")

StateKey = tuple[int, str, str, str]

Severity = Literal["critical", "warning", "info", "test"]
# How urgent each kind is: the limit is reached (nothing works until it is back); it is coming
# (a threshold crossed, a forecast that runs out before the reset); for the record (a limit back,
# data gone quiet); and the test alert, which says nothing about any account.
SEVERITIES: Final[Mapping[AlertKind, Severity]] = {
    "limit_hit": "critical",
    "threshold": "warning",
    "forecast": "warning",
    "limit_reset": "info",
    "stale": "info",
    "test": "test",
}
# The kind of the "send a test alert" action's alert: kept apart from the recent alerts.
TEST_KIND: Final[AlertKind] = "test"


def severity(kind: AlertKind) -> Severity:
    """How urgent an alert of this kind is."""
    return SEVERITIES[kind]


@dataclass(slots=True)
class Decision:
    """What one evaluation decided: alerts to fire, states to set and to clear."""

    fired: list[NewAlert] = field(default_factory=list)
    states: dict[StateKey, AlertState] = field(default_factory=dict)
    cleared: set[StateKey] = field(default_factory=set)

    def set(self, state: AlertState) -> None:
        self.states[state.key] = state
        self.cleared.discard(state.key)

    def clear(self, key: StateKey) -> None:
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
    if resets_at <= now:
        return "resetting now"
    return f"resets at {clock(resets_at, now)} UTC, in {duration(resets_at - now)}"


def evaluate_row(
    row: UsageRow,
    account: str,
    states: Mapping[StateKey, AlertState],
    rules: AlertConfig,
    forecasts: Mapping[str, Forecast],
    now: float,
) -> Decision:
    """The threshold, limit-hit, limit-reset and forecast rules on one new usage row."""
    decision = Decision()
    who = account
    # The limit_hit alert speaks for this report: what it crosses is marked, not fired again.
    quiet = rules.limit_hit and limit_hit_active(row, now)
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
        if crossed and not quiet:
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
            if quiet:
                continue
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


def limit_hit_active(row: UsageRow, now: float) -> bool:
    """Whether row reports its limit reached and not yet back at `now`."""
    return row.limit_hit_type is not None and (
        row.limit_hit_resets_at is None or row.limit_hit_resets_at > now
    )


def _limit_hit(
    row: UsageRow,
    who: str,
    states: Mapping[StateKey, AlertState],
    rules: AlertConfig,
    now: float,
) -> Decision:
    """limit_hit when a quota error arrives; limit_reset when a report says it is gone."""
    decision = Decision()
    key = (row.account_id, row.limit_id, WHOLE_FAMILY, "limit_hit")
    hit = limit_hit_active(row, now)
    state = states.get(key)
    if hit and state is None:
        decision.set(AlertState(*key, row.limit_hit_resets_at, now))
        if rules.limit_hit:
            back = (
                f"back at {clock(row.limit_hit_resets_at, now)} UTC, "
                f"in {duration(row.limit_hit_resets_at - now)}"
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


def limits_back(
    states: Iterable[AlertState], names: Mapping[int, str], rules: AlertConfig, now: float
) -> Decision:
    """limit_reset for each hit limit among states whose reset time has passed."""
    decision = Decision()
    for hit in states:
        if hit.rule == "limit_hit" and hit.period is not None and hit.period <= now:
            who = names.get(hit.account_id, default_title(hit.account_id))
            decision.extend(_limit_back(hit, who, rules, now))
    return decision


def evaluate_stale(
    rows: Iterable[UsageRow],
    names: Mapping[int, str],
    states: Mapping[StateKey, AlertState],
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
            who = names.get(row.account_id, default_title(row.account_id))
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
    family = "" if limit_id == MAIN_LIMIT else f"{limit_id} "
    return f"{family}{window} window"


def test_alert(now: float) -> NewAlert:
    """The alert the "send test alert" action sends."""
    return NewAlert(
        at=now,
        kind=TEST_KIND,
        message="codexgate test alert: this webhook receives codexgate's alerts",
    )


class RuleError(ValueError):
    """A rules field codexgate refuses: which field, and why."""

    def __init__(self, field: str, message: str) -> None:
        """Keep the offending field's name and the message the API answers with."""
        super().__init__(message)
        self.field = field
        self.message = message


def rules_from(body: Mapping[str, Any], base: AlertConfig) -> AlertConfig:
    """Rules from a JSON object: the given fields over `base`; a bad field raises RuleError."""
    unknown = sorted(set(body) - set(RULE_FIELDS))
    if unknown:
        raise RuleError(unknown[0], f"unknown field {unknown[0][:40]!r}")
    changes: dict[str, Any] = {}
    if "thresholds" in body:
        values = body["thresholds"]
        if not isinstance(values, list) or len(values) > 10:
            raise RuleError("thresholds", "thresholds must be a list of at most 10 percents")
        checked = []
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RuleError("thresholds", "each threshold must be a number")
            if not (math.isfinite(value) and 0 < value <= 100):
                raise RuleError("thresholds", "each threshold must be above 0 and at most 100")
            checked.append(float(value))
        changes["thresholds"] = tuple(sorted(set(checked)))
    for name in ("limit_hit", "limit_reset", "forecast"):
        if name in body:
            if not isinstance(body[name], bool):
                raise RuleError(name, f"{name} must be true or false")
            changes[name] = body[name]
    if "stale_minutes" in body:
        value = body["stale_minutes"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= 525_600
        ):
            raise RuleError("stale_minutes", "stale_minutes must be 0 (off) to 525600")
        changes["stale_minutes"] = float(value)
    return replace(base, webhooks=(), **changes)


@dataclass(frozen=True, slots=True)
class StoredRules:
    """The rules stored through the API as this codexgate reads them, and what it had to skip."""

    rules: AlertConfig | None  # None: the settings file's rules apply
    warnings: tuple[str, ...] = ()


def stored_rules(raw: str | None, base: AlertConfig) -> StoredRules:
    """The rules stored through the API: unknown fields ignored; damaged ones, the file's."""
    if raw is None:
        return StoredRules(None)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return StoredRules(
            None,
            ("stored alert rules are not a JSON object: the settings file's rules apply",),
        )
    warnings: list[str] = []
    unknown = sorted(set(body) - set(RULE_FIELDS))
    if unknown:
        # Written by a newer codexgate: the fields this one knows still apply.
        names = ", ".join(repr(name[:40]) for name in unknown[:10])
        warnings.append(f"stored alert rules: ignoring unknown field(s) {names}")
    try:
        rules = rules_from({k: v for k, v in body.items() if k in RULE_FIELDS}, base)
    except RuleError as error:
        warnings.append(f"stored alert rules: {error}; the settings file's rules apply")
        return StoredRules(None, tuple(warnings))
    return StoredRules(rules, tuple(warnings))
