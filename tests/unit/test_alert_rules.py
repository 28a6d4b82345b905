"""Alert rules, pure: each fires once per crossing; rules from the API validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from codexgate.config import AlertConfig
from codexgate.core.alerts import (
    RuleError,
    StateKey,
    evaluate_row,
    rules_from,
    stored_rules,
)
from codexgate.core.forecast import Forecast
from codexgate.core.rows import AlertState, UsageRow
from tests.helpers.alert_rules import RULES, apply, evaluate_time
from tests.helpers.builders import NOW, RESET, usage_row


def test_each_threshold_fires_once_per_crossing() -> None:
    states: dict[StateKey, AlertState] = {}
    assert apply(states, 70.0) == []
    assert apply(states, 76.0) == ["threshold:75"]
    assert apply(states, 80.0) == []  # still above 75: no new alert on every snapshot
    assert apply(states, 76.0) == []
    assert apply(states, 91.0) == ["threshold:90"]
    assert apply(states, 99.0) == ["threshold:95"]
    assert apply(states, 99.0) == []
    assert apply(states, None) == []  # unknown says nothing either way


def test_a_jump_fires_only_the_highest_and_a_reset_re_arms() -> None:
    states: dict[StateKey, AlertState] = {}
    assert apply(states, 96.0) == ["threshold:95"]  # not three alerts at once
    assert apply(states, 3.0, resets_at=RESET + 18000) == []  # the window reset
    assert apply(states, 77.0, resets_at=RESET + 18000) == ["threshold:75"]


def test_a_new_period_above_the_threshold_fires_again() -> None:
    states: dict[StateKey, AlertState] = {}
    assert apply(states, 80.0) == ["threshold:75"]
    assert apply(states, 80.0, resets_at=RESET + 30) == []  # the upstream's reset jitters
    assert apply(states, 80.0, resets_at=RESET + 18000) == ["threshold:75"]


def test_limit_hit_fires_once_and_reset_when_it_is_back() -> None:
    states: dict[StateKey, AlertState] = {}
    until = int(NOW + 600)
    # One event, one alert: the crossing of 95 % is told by limit_hit (and marked as told).
    assert apply(states, 100.0, limit_hit="usage_limit_reached", hit_until=until) == ["limit_hit"]
    assert apply(states, 100.0, limit_hit="usage_limit_reached", hit_until=until) == []
    assert apply(states, 100.0, now=NOW + 60) == ["limit_reset"]  # a report without the hit
    assert apply(states, 100.0, now=NOW + 61) == []


def test_a_hit_limit_whose_reset_passed_fires_reset_by_time() -> None:
    states: dict[StateKey, AlertState] = {}
    apply(states, 100.0, limit_hit="usage_limit_reached", hit_until=int(NOW + 600))
    early = evaluate_time([], {1: "alice"}, states, RULES, NOW + 300)
    assert early.fired == []
    late = evaluate_time([], {1: "alice"}, states, RULES, NOW + 601)
    assert [a.kind for a in late.fired] == ["limit_reset"]
    assert late.fired[0].message == "alice: codex limit has reset and can be used again"


def forecast_runs_out(exhausts_at: float, resets_at: int = RESET) -> Forecast:
    return Forecast(
        status="runs_out",
        used_percent=60.0,
        resets_at=resets_at,
        rate_per_hour=40.0,
        exhausts_at=exhausts_at,
        runs_out_before_reset_seconds=resets_at - exhausts_at,
        sustainable_rate_per_hour=40.0,
        since_reset=NOW - 3600,
        samples=10,
    )


def test_forecast_fires_once_per_period() -> None:
    states: dict[StateKey, AlertState] = {}
    soon = {"5h": forecast_runs_out(NOW + 1800)}
    assert apply(states, 60.0, forecasts=soon) == ["forecast"]
    assert apply(states, 61.0, forecasts=soon) == []
    later = {"5h": forecast_runs_out(RESET + 18000 - 600, RESET + 18000)}
    assert apply(states, 60.0, resets_at=RESET + 18000, forecasts=later) == ["forecast"]


def test_stale_fires_once_until_fresh_data() -> None:
    states: dict[StateKey, AlertState] = {}
    rules = AlertConfig(stale_minutes=30)

    def latest(confirmed_at: float) -> Any:
        @dataclass
        class Latest:
            usage: UsageRow

        return Latest(usage_row(50.0, confirmed_at=confirmed_at))

    def run(confirmed_at: float, now: float) -> list[str]:
        decision = evaluate_time([latest(confirmed_at)], {1: "alice"}, states, rules, now)
        for key in decision.cleared:
            states.pop(key, None)
        states.update(decision.states)
        return [a.kind for a in decision.fired]

    assert run(NOW, NOW + 29 * 60) == []
    assert run(NOW, NOW + 31 * 60) == ["stale"]
    assert run(NOW, NOW + 90 * 60) == []
    assert run(NOW + 95 * 60, NOW + 95 * 60) == []  # fresh again: re-armed
    assert run(NOW + 95 * 60, NOW + 130 * 60) == ["stale"]
    assert AlertConfig(stale_minutes=0).stale_minutes == 0
    states.clear()
    assert (
        evaluate_time([latest(NOW)], {}, states, AlertConfig(stale_minutes=0), NOW + 1e6).fired
        == []
    )


def test_rules_from_the_api_change_only_the_given_fields() -> None:
    base = AlertConfig(stale_minutes=30)
    rules = rules_from({"thresholds": [99, 50, 50.0], "forecast": False}, base)
    assert rules == AlertConfig(thresholds=(50.0, 99.0), forecast=False, stale_minutes=30)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"quiet": 1}, "quiet", "unknown field 'quiet'"),
        ({"thresholds": 75}, "thresholds", "thresholds must be a list of at most 10 percents"),
        ({"thresholds": [True]}, "thresholds", "each threshold must be a number"),
        ({"thresholds": [0]}, "thresholds", "each threshold must be above 0 and at most 100"),
        ({"limit_hit": 1}, "limit_hit", "limit_hit must be true or false"),
        ({"stale_minutes": -1}, "stale_minutes", "stale_minutes must be 0 (off) to 525600"),
    ],
)
def test_a_bad_rules_field_is_named(body: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(RuleError) as raised:
        rules_from(body, RULES)
    assert (raised.value.field, raised.value.message, str(raised.value)) == (
        field,
        message,
        message,
    )


def test_stored_rules_keep_what_this_version_knows_and_say_what_they_skipped() -> None:
    assert stored_rules(None, RULES).rules is None
    newer = stored_rules('{"thresholds": [50], "quiet_hours": "22-07"}', RULES)
    assert newer.rules == AlertConfig(thresholds=(50.0,))
    assert newer.warnings == ("stored alert rules: ignoring unknown field(s) 'quiet_hours'",)
    damaged = stored_rules('{"thresholds": "all"}', RULES)
    assert damaged.rules is None
    assert damaged.warnings == (
        "stored alert rules: thresholds must be a list of at most 10 percents; "
        "the settings file's rules apply",
    )
    assert stored_rules("[1, 2]", RULES).warnings == (
        "stored alert rules are not a JSON object: the settings file's rules apply",
    )
    assert stored_rules("{not json", RULES).rules is None


def test_the_webhook_text_says_when_a_window_and_a_limit_come_back() -> None:
    now = 1_900_000_000.0  # 2030-03-17 17:46:40 UTC
    crossing = evaluate_row(
        usage_row(91.0, resets_at=int(now) + 2 * 3600 + 600), "alice", {}, RULES, {}, now
    )
    assert [alert.message for alert in crossing.fired] == [
        "alice: 5h window at 91% used (crossed 90%), resets at 19:56 UTC, in 2h 10m"
    ]
    hit = evaluate_row(
        usage_row(40.0, limit_hit="usage_limit_reached", hit_until=int(now) + 3 * 86400),
        "alice",
        {},
        RULES,
        {},
        now,
    )
    assert [alert.message for alert in hit.fired] == [
        "alice: codex limit reached (usage_limit_reached), back at Wed 17:46 UTC, in 3d"
    ]
