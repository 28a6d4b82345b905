"""The pure geometry of the dashboard's SVG charts."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codexgate.dashboard.charts import SeriesPath, Sparkline, sparkline, step_path


def draw(
    samples: Sequence[tuple[float, float]], max_gap: float, max_points: int = 600
) -> SeriesPath:
    """A 100 x 50 chart of 0..100 s: a second is one unit across, a percent half a unit up."""
    return step_path(
        samples, start=0, end=100, width=100, height=50, max_gap=max_gap, max_points=max_points
    )


# -- sparkline --------------------------------------------------------------------------------


def test_sparkline_scales_the_maximum_to_the_top_inside_a_margin() -> None:
    assert sparkline([0, 5, 10]) == Sparkline("0,23 50,12 100,1", 10)
    assert sparkline([1, 3, 2, 4], width=30, height=10) == Sparkline("0,7 10,3 20,5 30,1", 4)


def test_sparkline_rounds_to_one_decimal() -> None:
    assert sparkline([1, 2, 3], width=10, height=10).points == "0,6.3 5,3.7 10,1"


def test_sparkline_of_nothing_is_empty() -> None:
    assert sparkline([]) == Sparkline("", 0)


def test_sparkline_of_one_value_is_a_flat_line_across() -> None:
    assert sparkline([7]) == Sparkline("0,1 100,1", 7)


def test_sparkline_of_zeros_lies_on_the_bottom() -> None:
    assert sparkline([0, 0, 0], width=10) == Sparkline("0,23 5,23 10,23", 0)


def test_sparkline_counts_negative_and_nan_as_zero() -> None:
    assert sparkline([-5, math.nan, 2], width=10) == Sparkline("0,23 5,23 10,1", 2)


# -- step_path --------------------------------------------------------------------------------


def test_a_reset_is_drawn_as_a_drop() -> None:
    path = draw([(0, 80), (50, 3)], max_gap=100)
    # 80 % holds until t=50, then drops to 3 % (y 48.5), which holds until the end.
    assert path == SeriesPath("M 0 10 H 50 V 48.5 H 100", points=2, last_value=3)


def test_the_last_value_holds_for_max_gap_only() -> None:
    path = draw([(10, 50), (20, 100)], max_gap=30)
    assert path.d == "M 10 25 H 20 V 0 H 50"


def test_a_gap_lifts_the_pen() -> None:
    path = draw([(0, 80), (10, 20), (60, 40)], max_gap=20)
    assert path.d == "M 0 10 H 10 V 40 H 30 M 60 30 H 80"
    assert path.d.count("M") == 2
    assert path.last_value == 40


def test_the_last_sample_before_start_opens_the_line() -> None:
    samples = [(-30, 10), (-5, 80), (20, 20)]
    path = draw(samples, max_gap=30)
    assert path == SeriesPath("M 0 10 H 20 V 40 H 50", points=2, last_value=20)


def test_a_sample_before_start_beyond_max_gap_is_ignored() -> None:
    path = draw([(-40, 80), (20, 20)], max_gap=30)
    assert path == SeriesPath("M 20 40 H 50", points=1, last_value=20)
    assert draw([(-40, 80)], max_gap=30) == SeriesPath("", 0, None)


def test_an_opening_value_alone_holds_for_max_gap() -> None:
    path = draw([(-10, 50)], max_gap=30)
    assert path == SeriesPath("M 0 25 H 20", points=1, last_value=50)


def test_samples_after_end_are_ignored() -> None:
    path = draw([(90, 50), (100, 60), (101, 0), (500, 100)], max_gap=30)
    assert path == SeriesPath("M 90 25 H 100 V 20", points=2, last_value=60)


def test_percent_is_clamped_for_drawing_only() -> None:
    path = draw([(0, 130), (40, -8)], max_gap=100)
    assert path == SeriesPath("M 0 0 H 40 V 50 H 100", points=2, last_value=-8)


def test_no_sample_in_range_draws_nothing() -> None:
    assert draw([], max_gap=30) == SeriesPath("", 0, None)
    assert draw([(150, 20), (160, 30)], max_gap=30) == SeriesPath("", 0, None)


def test_equal_values_draw_one_level_run() -> None:
    path = draw([(0, 50), (10, 50), (20, 50), (30, 10)], max_gap=100)
    assert path.d == "M 0 25 H 30 V 45 H 100"


def test_downsampling_caps_the_points_and_keeps_the_peak_and_a_drop() -> None:
    samples = [(t / 10, 40.0) for t in range(1000)]  # a sample every 0.1 s
    samples[123] = (12.3, 97.0)  # a peak
    samples[351] = (35.1, 90.0)  # a peak, then a reset inside the same bucket
    samples[352:360] = [(t / 10, 5.0) for t in range(352, 360)]
    path = draw(samples, max_gap=1, max_points=50)
    assert path.points <= 50
    # 25 buckets of 4 s: [32, 36) holds 90 % then ends on 5 %, [36, 40) goes back to 40 %.
    assert path.d == "M 0 30 H 12.3 V 1.5 H 15.9 V 30 H 35.1 V 5 H 35.9 V 47.5 H 36 V 30 H 100"


def test_downsampling_makes_up_no_gap() -> None:
    # Kept samples are 8 s apart, more than max_gap, but every sample is 1 s from the next.
    samples = [(float(t), 10.0 + t % 7) for t in range(100)]
    path = draw(samples, max_gap=2, max_points=25)
    assert path.points <= 25
    assert path.d.count("M") == 1


def test_downsampling_keeps_a_real_gap() -> None:
    samples = [(t / 4, 50.0) for t in range(160)] + [(t / 4, 50.0) for t in range(240, 400)]
    path = draw(samples, max_gap=1, max_points=10)
    assert path.d == "M 0 25 H 40.8 M 60 25 H 100"


def test_the_opening_value_counts_against_max_points() -> None:
    samples = [(-1.0, 50.0)] + [(float(t), 10.0 * (t % 2)) for t in range(10)]
    assert draw(samples, max_gap=5, max_points=11).points == 11
    assert draw(samples, max_gap=5, max_points=10).points <= 10


def test_step_path_rejects_an_empty_range_and_too_few_points() -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        step_path([], start=10, end=10, width=100, height=50, max_gap=1)
    with pytest.raises(ValueError, match="max_points"):
        draw([], max_gap=1, max_points=2)


_NUMBER = re.compile(r"\d+(\.\d)?")
_ARITY = {"M": 2, "H": 1, "V": 1}


def _parse(d: str) -> list[tuple[str, list[float]]]:
    """The (command, numbers) of path data made of M, H and V with unsigned 1-decimal numbers."""
    tokens = d.split()
    commands: list[tuple[str, list[float]]] = []
    while tokens:
        command = tokens.pop(0)
        assert command in _ARITY, d
        numbers = [tokens.pop(0) for _ in range(_ARITY[command])]
        assert all(_NUMBER.fullmatch(number) for number in numbers), d
        commands.append((command, [float(number) for number in numbers]))
    return commands


@given(
    times=st.lists(st.floats(-500, 1500), max_size=60),
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=60, max_size=60),
    start=st.floats(0, 500),
    span=st.floats(1, 1000),
    width=st.integers(1, 2000),
    height=st.integers(1, 500),
    max_gap=st.floats(0, 2000),
    max_points=st.integers(3, 40),
)
def test_any_path_parses_and_stays_in_the_box(
    times: list[float],
    values: list[float],
    start: float,
    span: float,
    width: int,
    height: int,
    max_gap: float,
    max_points: int,
) -> None:
    samples = list(zip(sorted(times), values, strict=False))
    path = step_path(
        samples,
        start=start,
        end=start + span,
        width=width,
        height=height,
        max_gap=max_gap,
        max_points=max_points,
    )
    commands = _parse(path.d)
    assert path.points <= max_points
    assert (path.d == "") == (path.points == 0) == (path.last_value is None)
    if commands:
        assert commands[0][0] == "M"
    for command, numbers in commands:
        xs = numbers[:1] if command in "MH" else []
        ys = numbers[1:] if command == "M" else numbers if command == "V" else []
        assert all(0 <= x <= width for x in xs), path.d
        assert all(0 <= y <= height for y in ys), path.d
