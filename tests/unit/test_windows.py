"""windows.py: which windows a usage row reports, and the one rule for "same window period"."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest

from codexgate.core.forecast import Sample, forecast
from codexgate.core.rows import LatestUsageRow, UsageRow
from codexgate.core.windows import (
    SAME_PERIOD_SECONDS,
    UNCHANGED_RESET_SECONDS,
    WindowValue,
    reported,
)
from codexgate.dashboard import views
from codexgate.dashboard.handlers import _samples
from codexgate.services import metrics
from codexgate.services.forecasts import ForecastCache
from codexgate.storage.sqlite.store import Store
from tests.helpers.alert_rules import apply
from tests.helpers.builders import RESET, usage_row
from tests.helpers.traces import START, TRACE_RESET, line

NONE3: tuple[None, None, None] = (None, None, None)
NONE4: tuple[None, None, None, None] = (None, None, None, None)


def test_fixed_windows_come_first_and_unreported_ones_are_left_out() -> None:
    found = reported(
        (40.0, 300, 1000),
        NONE3,
        (None, 43200, None),  # only a length: still reported
        ("5h", 40.0, 300, 1000),  # the 5h column's own slot: not a second 5h window
        ("daily", 10.0, 1440, 2000),
    )
    assert found == (
        WindowValue("5h", 40.0, 300, 1000),
        WindowValue("monthly", None, 43200, None),
        WindowValue("daily", 10.0, 1440, 2000),
    )
    assert reported(NONE3, NONE3, NONE3, NONE4, NONE4) == ()
    assert reported(NONE3, NONE3, NONE3, ("daily", None, None, None), NONE4) == ()


def test_two_slots_with_the_same_other_label_count_once_the_primary_first() -> None:
    found = reported(NONE3, NONE3, NONE3, ("daily", 10.0, 1440, 2000), ("daily", 90.0, 1440, 9))
    assert found == (WindowValue("daily", 10.0, 1440, 2000),)
    # An empty primary does not hide a secondary that says something.
    found = reported(NONE3, NONE3, NONE3, ("daily", None, None, None), ("daily", 90.0, 1440, 9))
    assert found == (WindowValue("daily", 90.0, 1440, 9),)


def _row(**fields: Any) -> UsageRow:
    return replace(usage_row(None, resets_at=None), **fields)


def test_every_reader_takes_a_row_s_windows_from_usage_row_windows() -> None:
    """The card, the metrics and the charts once disagreed on two slots of one label."""
    row = _row(
        five_hour_used_percent=40.0,
        primary_window="daily",
        primary_used_percent=10.0,
        primary_window_minutes=1440,
        secondary_window="daily",
        secondary_used_percent=90.0,
        secondary_window_minutes=1440,
    )
    assert [(w.label, w.used_percent) for w in row.windows()] == [("5h", 40.0), ("daily", 10.0)]
    card = views.windows_of(row, views.Thresholds())
    assert [(w.key, w.used_percent, w.shown) for w in card] == [
        ("5h", 40.0, True),
        ("7d", None, True),
        ("monthly", None, False),
        ("daily", 10.0, True),
    ]
    latest = metrics.window_states([_latest(row)])
    assert [(s.window, s.used_percent) for s in latest] == [("5h", 40.0), ("daily", 10.0)]
    assert _samples([row], "daily") == [(row.captured_at, 10.0)]


def _latest(row: UsageRow) -> LatestUsageRow:
    return LatestUsageRow(row, "k", "alice", None, None, 0.0, None, None, None, None, None)


def test_a_reset_time_that_moves_is_the_same_value_only_within_a_few_seconds() -> None:
    # Insert-or-confirm records a moved reset time long before it would call it a new period.
    assert UNCHANGED_RESET_SECONDS < SAME_PERIOD_SECONDS


@pytest.mark.parametrize(("moved", "new_period"), [(SAME_PERIOD_SECONDS, False), (121, True)])
def test_the_forecast_starts_a_new_period_past_the_tolerance(moved: int, new_period: bool) -> None:
    first = line(30, 60)
    second = line(30, 30, start=first[-1].at + 180, used=first[-1].used_percent)
    samples = [*first, *(Sample(s.at, s.used_percent, TRACE_RESET + moved) for s in second)]
    found = forecast(samples, now=samples[-1].at, window_minutes=300)
    assert found.since_reset == (second[0].at if new_period else START)


class _EmptyStore:
    async def recent_history(self, *args: Any, **kwargs: Any) -> list[UsageRow]:
        return []


@pytest.mark.parametrize(("moved", "new_period"), [(SAME_PERIOD_SECONDS, False), (121, True)])
async def test_the_forecast_cache_starts_a_new_period_past_the_tolerance(
    moved: int, new_period: bool
) -> None:
    cache = ForecastCache(cast(Store, _EmptyStore()))
    await cache.ensure(1, "codex", START)
    first = _row(id=1, five_hour_used_percent=10.0, five_hour_resets_at=TRACE_RESET)
    cache.add(first)
    cache.add(
        replace(first, id=2, captured_at=START + 600, five_hour_resets_at=TRACE_RESET + moved)
    )
    assert cache.forecasts(1, "codex", START + 600)["5h"].samples == (1 if new_period else 2)


def test_alerts_take_the_same_tolerance_for_the_same_period() -> None:
    states: dict[tuple[int, str, str, str], Any] = {}
    assert apply(states, 80.0) == ["threshold:75"]
    assert apply(states, 80.0, resets_at=RESET + SAME_PERIOD_SECONDS) == []
    assert apply(states, 80.0, resets_at=RESET + SAME_PERIOD_SECONDS + 1) == ["threshold:75"]
