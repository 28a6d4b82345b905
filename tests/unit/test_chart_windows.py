"""Charts that fit the windows: the current period, ticks with dates, the markers, the table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from codexgate.dashboard.charts import (
    Marker,
    Tick,
    current_window,
    markers,
    step_path,
    tick_lines,
    tick_step,
    time_ticks,
    value_changes,
    x_at,
)

HOUR = 3600
DAY = 86400
# 2026-03-01 00:00:00 UTC, a Sunday.
MIDNIGHT = datetime(2026, 3, 1, tzinfo=UTC).timestamp()


# -- the current window ------------------------------------------------------------------------


def test_the_current_window_ends_at_its_reset() -> None:
    assert current_window(MIDNIGHT + 5 * HOUR, 5 * HOUR, MIDNIGHT + HOUR) == (
        MIDNIGHT,
        MIDNIGHT + 5 * HOUR,
    )


def test_a_reset_past_with_no_newer_report_rolls_forward_by_whole_windows() -> None:
    # Reset at 05:00, now 12:30: the windows 05:00-10:00 and 10:00-15:00 have begun since.
    assert current_window(MIDNIGHT + 5 * HOUR, 5 * HOUR, MIDNIGHT + 12.5 * HOUR) == (
        MIDNIGHT + 10 * HOUR,
        MIDNIGHT + 15 * HOUR,
    )
    # Exactly at the reset, the next window has begun.
    assert current_window(MIDNIGHT, 5 * HOUR, MIDNIGHT) == (MIDNIGHT, MIDNIGHT + 5 * HOUR)


def test_a_window_needs_a_length() -> None:
    with pytest.raises(ValueError, match="length"):
        current_window(MIDNIGHT, 0, MIDNIGHT)


# -- ticks ---------------------------------------------------------------------------------------


def test_each_range_gets_few_ticks_on_whole_steps() -> None:
    assert tick_step(5 * HOUR) == HOUR
    assert tick_step(DAY) == 6 * HOUR
    assert tick_step(7 * DAY) == DAY
    assert tick_step(30 * DAY) == 5 * DAY
    assert tick_step(10 * 365 * DAY) == 30 * DAY  # the largest step, however long the range


def test_a_five_hour_window_has_hourly_ticks_with_the_date_on_the_first() -> None:
    start = MIDNIGHT + 9 * HOUR + 32 * 60  # 09:32 to 14:32
    ticks = time_ticks(start, start + 5 * HOUR, width=600)
    assert [tick_lines(tick.at, tick.kind) for tick in ticks] == [
        ("10:00", "03-01"),
        ("11:00",),
        ("12:00",),
        ("13:00",),
        ("14:00",),
    ]
    assert ticks[0] == Tick("56", MIDNIGHT + 10 * HOUR, "datetime")
    assert [tick.kind for tick in ticks] == ["datetime", "time", "time", "time", "time"]


def test_the_day_is_written_again_where_it_changes() -> None:
    start = MIDNIGHT - 6 * HOUR  # 18:00 the day before, for a day
    ticks = time_ticks(start, start + DAY, width=240)
    assert [(tick.x, tick_lines(tick.at, tick.kind)) for tick in ticks] == [
        ("0", ("18:00", "02-28")),  # ticks on the range's ends are drawn on its edges
        ("60", ("00:00", "03-01")),
        ("120", ("06:00",)),
        ("180", ("12:00",)),
        ("240", ("18:00",)),
    ]


def test_ticks_of_a_week_or_a_month_are_days() -> None:
    week = time_ticks(MIDNIGHT + HOUR, MIDNIGHT + HOUR + 7 * DAY, width=700)
    assert [tick_lines(tick.at, tick.kind) for tick in week] == [
        ("03-02",),
        ("03-03",),
        ("03-04",),
        ("03-05",),
        ("03-06",),
        ("03-07",),
        ("03-08",),
    ]
    assert {tick.kind for tick in week} == {"date"}
    month = time_ticks(MIDNIGHT, MIDNIGHT + 30 * DAY, width=600)
    assert len(month) in (6, 7)
    assert {tick.kind for tick in month} == {"date"}


def test_ticks_fall_on_whole_hours_of_the_readers_time_zone() -> None:
    # UTC+05:30: local whole hours are at :30 UTC; local midnight is 18:30 UTC the day before.
    offset = 5 * HOUR + 30 * 60
    start = MIDNIGHT + 9 * HOUR
    ticks = time_ticks(start, start + 5 * HOUR, width=600, utc_offset=offset)
    assert [tick.at - MIDNIGHT for tick in ticks] == [h * HOUR + 1800 for h in range(9, 14)]
    days = time_ticks(MIDNIGHT, MIDNIGHT + 7 * DAY, width=700, utc_offset=offset)
    assert all((tick.at + offset) % DAY == 0 for tick in days)


def test_ticks_need_a_range() -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        time_ticks(10, 10, width=100)


# -- markers ---------------------------------------------------------------------------------------


def test_the_current_window_chart_marks_its_reset_and_now() -> None:
    window = (MIDNIGHT, MIDNIGHT + 5 * HOUR)
    now = MIDNIGHT + 2 * HOUR
    # The window's start is the chart's left edge: no marker there.
    assert markers(*window, now, 600, window) == [
        Marker("reset", "600", MIDNIGHT + 5 * HOUR),
        Marker("now", "240", now),
    ]


def test_a_day_back_from_now_marks_the_reset_that_opened_the_window() -> None:
    now = MIDNIGHT + 12 * HOUR
    window = (MIDNIGHT + 10 * HOUR, MIDNIGHT + 15 * HOUR)
    assert markers(now - DAY, now, now, 240, window) == [
        Marker("reset", "220", MIDNIGHT + 10 * HOUR),
        Marker("now", "240", now),
    ]
    # Without a known window, only now.
    assert markers(now - DAY, now, now, 240, None) == [Marker("now", "240", now)]


def test_x_at_clamps_to_the_edges() -> None:
    assert x_at(5, 0, 10, 100) == "50"
    assert x_at(-5, 0, 10, 100) == "0"
    assert x_at(50, 0, 10, 100) == "100"


# -- the line of the current window ----------------------------------------------------------------


def test_the_line_stops_at_now_in_a_range_that_reaches_into_the_future() -> None:
    # 0..100 s, now at 40: the value at 10 s holds to now, not to the window's end.
    path = step_path([(10, 50)], start=0, end=100, width=100, height=50, max_gap=500, until=40)
    assert path.d == "M 10 25 H 40"


def test_the_value_before_a_windows_start_is_not_carried_into_it() -> None:
    samples = [(-10, 90.0), (20, 5.0)]
    carried = step_path(samples, start=0, end=100, width=100, height=50, max_gap=500, until=50)
    assert carried.d.startswith("M 0 5 H 20")
    fresh = step_path(
        samples, start=0, end=100, width=100, height=50, max_gap=500, until=50, carry_in=False
    )
    assert fresh.d == "M 20 47.5 H 50"
    assert fresh.last_value == 5.0


# -- the table alternative -------------------------------------------------------------------------


def test_the_table_lists_each_change_in_the_range() -> None:
    samples = [(-5, 10.0), (0, 10.0), (1, 10.0), (2, 12.0), (3, 12.0), (4, 1.0), (9, 3.0)]
    assert value_changes(samples, 0, 5, limit=10) == [(0, 10.0), (2, 12.0), (4, 1.0)]
    # The newest are kept past the limit.
    assert value_changes(samples, 0, 5, limit=2) == [(2, 12.0), (4, 1.0)]
    assert value_changes(samples, 6, 8, limit=10) == []
