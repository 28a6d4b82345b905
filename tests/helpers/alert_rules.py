"""Driving the pure alert rules one row at a time, as the engine does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from codexgate.config import AlertConfig
from codexgate.core.alerts import Decision, StateKey, evaluate_row, evaluate_stale, limits_back
from codexgate.core.forecast import Forecast
from codexgate.core.rows import AlertState, LatestUsageRow
from tests.helpers.builders import NOW, usage_row

RULES: Final = AlertConfig()


def apply(states: dict[StateKey, AlertState], used: float | None, **kwargs: Any) -> list[str]:
    """Evaluate one usage_row over `states` (updated in place); the kinds and thresholds fired."""
    forecasts: dict[str, Forecast] = kwargs.pop("forecasts", {})
    now = kwargs.pop("now", NOW)
    decision = evaluate_row(usage_row(used, **kwargs), "alice", states, RULES, forecasts, now)
    for key in decision.cleared:
        states.pop(key, None)
    states.update(decision.states)
    return [
        f"{a.kind}:{a.threshold:g}" if a.threshold is not None else a.kind for a in decision.fired
    ]


def evaluate_time(
    latest: Iterable[LatestUsageRow],
    names: Mapping[int, str],
    states: Mapping[StateKey, AlertState],
    rules: AlertConfig,
    now: float,
) -> Decision:
    """The rules that fire with time alone, as the engine's sweep applies them: a hit limit
    whose reset passed, and stale data."""
    decision = limits_back(states.values(), names, rules, now)
    decision.extend(evaluate_stale((item.usage for item in latest), names, states, rules, now))
    return decision
