"""text.py: the one way codexgate writes times, percents and spans."""

from __future__ import annotations

import pytest

from codexgate.core.text import (
    STALE_AFTER_SECONDS,
    duration,
    is_stale,
    iso,
    percent,
    percent_number,
)
from codexgate.dashboard import i18n


def test_iso() -> None:
    assert iso(None) is None
    assert iso(1_800_000_000) == "2027-01-15T08:00:00Z"
    assert iso(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"
    assert iso(1e300) is None


def test_percents_are_whole_when_whole_else_one_decimal() -> None:
    assert [percent_number(v) for v in (42.0, 12.5, 12.04, 99.96, 0.0)] == [
        "42",
        "12.5",
        "12",
        "100",
        "0",
    ]
    assert percent(91.0) == "91%"
    assert percent(12.25) == "12.2%"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-30, "0s"),
        (45, "45s"),
        (60, "1m"),
        (75, "1m 15s"),
        (12 * 60, "12m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60 + 59, "3h 5m"),
        (2 * 86400, "2d"),
        (2 * 86400 + 4 * 3600 + 59, "2d 4h"),
        (2 * 86400 + 59 * 60, "2d"),
    ],
)
def test_durations_show_the_two_largest_units_and_the_dashboard_agrees(
    seconds: float, text: str
) -> None:
    assert duration(seconds) == text
    assert i18n.Translator("en").duration(seconds) == text


def test_values_turn_stale_after_15_minutes() -> None:
    assert STALE_AFTER_SECONDS == 900
    assert not is_stale(STALE_AFTER_SECONDS)
    assert is_stale(STALE_AFTER_SECONDS + 0.001)
