"""Alerts people can scan, the pure part: a severity for every kind, and one alert for one event."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

from codexgate.core.alerts import SEVERITIES, StateKey, evaluate_row, severity
from codexgate.core.forecast import Forecast
from codexgate.core.rows import AlertKind, AlertState
from tests.helpers.alert_rules import RULES, apply
from tests.helpers.builders import NOW, RESET, usage_row

HIT_UNTIL = int(NOW + 600)


def test_each_kind_has_its_severity() -> None:
    assert {kind: severity(kind) for kind in get_args(AlertKind)} == {
        "limit_hit": "critical",
        "threshold": "warning",
        "forecast": "warning",
        "limit_reset": "info",
        "stale": "info",
        "test": "test",
    }
    assert set(SEVERITIES) == set(get_args(AlertKind))  # a new kind needs a severity


def runs_out_soon() -> dict[str, Forecast]:
    return {
        "5h": Forecast(
            status="runs_out",
            used_percent=60.0,
            resets_at=RESET,
            rate_per_hour=40.0,
            exhausts_at=NOW + 1800,
            runs_out_before_reset_seconds=RESET - (NOW + 1800),
            sustainable_rate_per_hour=40.0,
            since_reset=NOW - 3600,
            samples=10,
        )
    }


def test_a_report_at_the_limit_fires_limit_hit_only_and_marks_what_it_crossed() -> None:
    states: dict[StateKey, AlertState] = {}
    fired = apply(
        states,
        96.0,
        limit_hit="usage_limit_reached",
        hit_until=HIT_UNTIL,
        forecasts=runs_out_soon(),
    )
    assert fired == ["limit_hit"]  # not also "crossed 95%", nor a forecast
    told = {key[3] for key in states}
    assert {"threshold:75", "threshold:90", "threshold:95", "forecast", "limit_hit"} <= told
    # The next report without the hit says the limit is back, and repeats no crossing.
    assert apply(states, 96.0, now=NOW + 60, forecasts=runs_out_soon()) == ["limit_reset"]


def test_a_hit_that_is_already_over_does_not_silence_the_crossing() -> None:
    states: dict[StateKey, AlertState] = {}
    past = int(NOW - 1)
    assert apply(states, 96.0, limit_hit="usage_limit_reached", hit_until=past) == ["threshold:95"]


def test_with_the_limit_rule_off_the_crossing_is_the_alert() -> None:
    row = usage_row(100.0, limit_hit="usage_limit_reached", hit_until=HIT_UNTIL)
    rules = replace(RULES, limit_hit=False)
    decision = evaluate_row(row, "alice", {}, rules, {}, NOW)
    assert [(a.kind, a.threshold) for a in decision.fired] == [("threshold", 95.0)]
