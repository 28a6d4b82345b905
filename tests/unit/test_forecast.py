"""The forecast maths: periods, pauses, thresholds, and accuracy on recorded usage traces."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codexgate.core.forecast import Forecast, Sample, forecast
from tests.helpers.traces import START, TRACE_RESET, TRACES, line, load_trace

H = 3600.0
M = 60.0
# codexgate's default --history-heartbeat: an unchanged value gets a new row after this long.
HEARTBEAT = 300.0


# --- usage traces -------------------------------------------------------------------------------
# A trace is what the gateway would record for one window: a person works in episodes at some pace
# (true usage grows continuously), their client sends requests every 20 s to 2.5 min while they
# work and none in between, each response reports the whole-number floor of the usage, and the
# store keeps a row when the value changed or HEARTBEAT has passed since the newest row.


@dataclass(frozen=True, slots=True)
class Episode:
    """A span of work at a steady pace."""

    start: float  # seconds from the window start
    end: float
    rate: float  # percent per hour


@dataclass(frozen=True, slots=True)
class TraceSpec:
    """How one committed trace is made."""

    name: str
    description: str
    window_minutes: int
    seed: int


def _chunks(
    rng: random.Random, start: float, end: float, rate: float, spread: float
) -> list[Episode]:
    """Continuous work from start to end, its pace drawn anew every 10 minutes."""
    out = []
    t = start
    while t < end:
        out.append(Episode(t, min(end, t + 600), rate * rng.uniform(1 - spread, 1 + spread)))
        t += 600
    return out


def _steady(rng: random.Random) -> list[Episode]:
    return _chunks(rng, 0, 5 * H, 25, 0.15)


def _bursty(rng: random.Random) -> list[Episode]:
    out = []
    t = 0.0
    while t < 5 * H:
        length = rng.uniform(3 * M, 6 * M)
        points = 9.5 * rng.uniform(0.8, 1.2)
        out.append(Episode(t, t + length, points / length * H))
        t += rng.uniform(18 * M, 22 * M)
    return out


def _idle_then_heavy(rng: random.Random) -> list[Episode]:
    return [Episode(0, 6 * M, 20), *_chunks(rng, 90 * M, 5 * H, 65, 0.15)]


def _lasts(rng: random.Random) -> list[Episode]:
    out: list[Episode] = []
    t = 0.0
    while t < 5 * H:
        end = t + rng.uniform(40 * M, 70 * M)
        out += _chunks(rng, t, end, 15, 0.4)
        t = end + rng.uniform(5 * M, 40 * M)
    return out


def _weekly(rng: random.Random) -> list[Episode]:
    out = []
    for day in range(5):
        for begin, finish in ((0.0, 3.5 * H), (4.5 * H, 10 * H)):
            t = day * 24 * H + begin
            end = day * 24 * H + finish
            while t < end:
                length = rng.uniform(5 * M, 25 * M)
                out.append(Episode(t, min(end, t + length), 5.5 * rng.uniform(0.6, 1.4)))
                t += length + rng.uniform(3 * M, 20 * M)
    return out


SPECS = {
    "steady": (
        TraceSpec("steady", "5h window, continuous use at ~25 %/h, runs out near 4h", 300, 1),
        _steady,
    ),
    "bursty": (
        TraceSpec(
            "bursty",
            "5h window, a 3-6 min burst of ~9.5 points every ~20 min, nothing between; "
            "runs out near 3h30",
            300,
            2,
        ),
        _bursty,
    ),
    "idle-then-heavy": (
        TraceSpec(
            "idle-then-heavy",
            "5h window, 2 points in the first 6 min, idle until 1h30, then ~65 %/h; "
            "runs out near 3h",
            300,
            3,
        ),
        _idle_then_heavy,
    ),
    "lasts": (
        TraceSpec(
            "lasts",
            "5h window, 40-70 min blocks at ~15 %/h with 5-40 min breaks; ends near 60 %",
            300,
            4,
        ),
        _lasts,
    ),
    "weekly": (
        TraceSpec(
            "weekly",
            "7d window opened on a Monday 9:00, work 9:00-12:30 and 13:30-19:00 on weekdays "
            "in 5-25 min spells at ~5.5 %/h; runs out on Thursday before noon",
            10080,
            5,
        ),
        _weekly,
    ),
}


def _usage(episodes: Sequence[Episode], t: float) -> float:
    """The true cumulative usage at t."""
    used = 0.0
    for e in episodes:
        if t <= e.start:
            break
        used += e.rate / H * (min(t, e.end) - e.start)
    return used


def _exhaustion(episodes: Sequence[Episode]) -> float | None:
    """When the true usage reaches 100."""
    used = 0.0
    for e in episodes:
        gain = e.rate / H * (e.end - e.start)
        if used + gain >= 100:
            return e.start + (100 - used) / (e.rate / H)
        used += gain
    return None


def make_trace(name: str) -> dict[str, Any]:
    """Record one trace the way the gateway would."""
    spec, episodes_of = SPECS[name]
    rng = random.Random(spec.seed)
    episodes = episodes_of(rng)
    truth = _exhaustion(episodes)
    window = spec.window_minutes * M
    rows: list[tuple[int, int]] = []
    for e in episodes:
        t = e.start
        while t < e.end and t < window and (truth is None or t < truth):
            used = min(100, math.floor(_usage(episodes, t) + 1e-9))
            if not rows or rows[-1][1] != used or t - rows[-1][0] >= HEARTBEAT:
                rows.append((round(t), used))
            t += rng.uniform(20, 150)
    return {
        "description": spec.description,
        "window_minutes": spec.window_minutes,
        "exhausts_at": None if truth is None else round(truth, 1),
        "seed": spec.seed,
        "samples": [{"at": at, "used_percent": used} for at, used in rows],
    }


def _trace_text(trace: dict[str, Any]) -> str:
    """The committed form: metadata first, one sample a line."""
    head = {k: v for k, v in trace.items() if k != "samples"}
    lines = ",\n".join("  " + json.dumps(s) for s in trace["samples"])
    return json.dumps(head, indent=1)[:-2] + ',\n "samples": [\n' + lines + "\n ]\n}\n"


def write_traces() -> None:
    """Regenerate the committed traces (`python -m tests.unit.test_forecast`)."""
    for name in SPECS:
        (TRACES / f"{name}.json").write_text(_trace_text(make_trace(name)), encoding="utf-8")


def test_traces_are_what_their_generator_makes() -> None:
    for name in SPECS:
        assert load_trace(name) == make_trace(name), (
            f"{name}.json: run python -m tests.unit.test_forecast"
        )


# --- the accuracy bar ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Miss:
    """The worst forecast of a replay."""

    error: float  # seconds, inf when nothing was projected
    at: float  # seconds from the window start
    forecast: Forecast | None


def _replay_samples(trace: dict[str, Any]) -> list[Sample]:
    """The trace as the store would hand it over, with the upstream's few seconds of jitter."""
    end = START + trace["window_minutes"] * 60
    return [
        Sample(START + s["at"], float(s["used_percent"]), end + (i * 7) % 5 - 2)
        for i, s in enumerate(trace["samples"])
    ]


def _just_resumed(trace: dict[str, Any], k: int) -> bool:
    """Whether sample k comes less than 5 % of the window after use resumed from a long pause."""
    window = trace["window_minutes"] * 60
    ats = [s["at"] for s in trace["samples"][: k + 1]]
    for i in range(len(ats) - 1, 0, -1):
        if ats[-1] - ats[i] >= window * 0.05:
            return False
        if ats[i] - ats[i - 1] > window / 6:
            return True
    return False


def _worst_miss(trace: dict[str, Any]) -> tuple[Miss, int, list[float]]:
    """Replay a trace; the worst miss, the number of forecasts checked, unexpected no-data times."""
    window = trace["window_minutes"] * 60
    truth = trace["exhausts_at"]
    samples = _replay_samples(trace)
    worst = Miss(0.0, 0.0, None)
    checked = 0
    unexplained: list[float] = []
    for k, raw in enumerate(trace["samples"]):
        at = raw["at"]
        if at < window / 4:
            continue
        if truth is not None and at >= truth:
            break
        f = forecast(samples[: k + 1], now=START + at, window_minutes=trace["window_minutes"])
        checked += 1
        if f.status == "insufficient_data":
            if not _just_resumed(trace, k):
                unexplained.append(at)
            continue
        if truth is None:
            error = 0.0 if f.status in ("lasts", "idle") else math.inf
        elif f.exhausts_at is None:
            error = math.inf
        else:
            error = abs(f.exhausts_at - (START + truth))
        if error > worst.error:
            worst = Miss(error, at, f)
    return worst, checked, unexplained


@pytest.mark.parametrize("name", sorted(SPECS))
def test_projection_stays_within_a_tenth_of_the_window(name: str) -> None:
    trace = load_trace(name)
    window = trace["window_minutes"] * 60
    worst, checked, unexplained = _worst_miss(trace)
    assert checked >= 10
    assert not unexplained, f"{name}: no forecast at {unexplained} s without a pause before"
    if trace["exhausts_at"] is None:
        assert worst.forecast is None, f"{name}: at {worst.at / 3600:.2f} h: {worst.forecast}"
        return
    assert worst.error <= 0.1 * window, (
        f"{name}: worst error {worst.error / 60:.0f} min ({worst.error / window:.1%} of the "
        f"window) at {worst.at / 3600:.2f} h, truth {trace['exhausts_at']} s: {worst.forecast}"
    )


# --- the rules, one by one ----------------------------------------------------------------------


def _at(samples: Sequence[Sample], **kwargs: Any) -> Forecast:
    """The forecast as of the newest sample, for a 5h window."""
    return forecast(samples, now=samples[-1].at, window_minutes=300, **kwargs)


def test_steady_use_gives_its_rate_and_when_it_runs_out() -> None:
    f = _at(line(30, 60))  # 30 %/h for an hour: 30 % used, 70 % left at 30 %/h: 2h20m
    assert f.status == "runs_out"
    assert f.used_percent == pytest.approx(30)
    assert f.rate_per_hour == pytest.approx(30)
    assert f.exhausts_at == pytest.approx(START + 3600 + 70 / 30 * H)
    assert f.runs_out_before_reset_seconds == pytest.approx(
        TRACE_RESET - (START + 3600 + 70 / 30 * H)
    )
    assert f.since_reset == START
    assert f.samples == 21
    assert f.resets_at == TRACE_RESET


def test_a_slow_pace_lasts_until_the_reset() -> None:
    f = _at(line(10, 60))  # 90 % left at 10 %/h: 9h, the reset comes in 4h
    assert f.status == "lasts"
    assert f.exhausts_at == pytest.approx(START + 10 * H)
    assert f.runs_out_before_reset_seconds is None


def test_sustainable_pace_is_what_is_left_over_the_time_left() -> None:
    samples = line(20, 60, resets_at=START + 3 * 3600)  # 20 % used, 80 % over the 2h left
    assert _at(samples).sustainable_rate_per_hour == pytest.approx(40)
    later = forecast(samples, now=START + 2 * 3600, window_minutes=300)
    assert later.sustainable_rate_per_hour == pytest.approx(80)
    assert _at(line(20, 60, resets_at=None)).sustainable_rate_per_hour is None


def test_a_single_burst_moves_the_rate_far_less_than_the_last_interval_would() -> None:
    steady = line(20, 120)
    burst = [*steady, Sample(steady[-1].at + 120, steady[-1].used_percent + 10, TRACE_RESET)]
    naive = 10 / (120 / H)  # 300 %/h
    before = _at(steady).rate_per_hour
    after = _at(burst).rate_per_hour
    assert before is not None
    assert after is not None
    assert before == pytest.approx(20)
    assert 0 < after - before < (naive - before) / 50


def test_used_already_at_100_ran_out_when_it_got_there() -> None:
    samples = [
        *line(38, 150),  # 95 % after 2h30
        Sample(START + 9000 + 60, 100, TRACE_RESET),
        Sample(START + 9600, 100, TRACE_RESET),
    ]
    f = _at(samples)
    assert f.status == "runs_out"
    assert f.exhausts_at == START + 9060
    assert f.runs_out_before_reset_seconds == TRACE_RESET - (START + 9060)
    assert f.sustainable_rate_per_hour == 0
    alone = _at([Sample(START, 100, TRACE_RESET)])
    assert alone.status == "runs_out"
    assert alone.exhausts_at == START


@pytest.mark.parametrize("count", [0, 1, 2])
def test_fewer_than_three_samples_is_not_enough(count: int) -> None:
    samples = line(30, 60, every=1200)[:count]
    f = forecast(samples, now=START + 3600, window_minutes=300)
    assert f.status == "insufficient_data"
    assert f.rate_per_hour is None
    assert f.exhausts_at is None
    assert f.samples == count
    assert f.used_percent == (samples[-1].used_percent if samples else None)


def test_less_than_five_percent_of_the_window_is_not_enough() -> None:
    assert _at(line(60, 14, every=60)).status == "insufficient_data"  # 14 of the 15 min needed
    assert _at(line(60, 15, every=60)).status == "runs_out"


def test_no_movement_since_the_reset_is_idle() -> None:
    f = _at(line(0, 30, used=12))
    assert f.status == "idle"
    assert f.rate_per_hour == 0
    assert f.exhausts_at is None
    assert f.used_percent == 12


def test_a_drop_starts_a_new_period_and_a_new_rate() -> None:
    old = line(60, 60, resets_at=None)
    new = line(10, 60, start=old[-1].at + 600, used=1, resets_at=None)
    assert _at([*old, *new[:1]]).since_reset == new[0].at
    assert _at([*old, *new[:1]]).status == "insufficient_data"
    f = _at([*old, *new])
    assert f.since_reset == new[0].at
    assert f.samples == len(new)
    assert f.rate_per_hour == pytest.approx(10)


def test_a_reset_time_moving_on_starts_a_new_period() -> None:
    old = line(30, 60)
    new = line(
        30, 60, start=old[-1].at + 300, used=old[-1].used_percent, resets_at=TRACE_RESET + 5 * 3600
    )
    f = _at([*old, *new])
    assert f.since_reset == new[0].at
    assert f.resets_at == TRACE_RESET + 5 * 3600


def test_a_sample_after_the_reset_time_starts_a_new_period() -> None:
    old = line(30, 60, resets_at=START + 3700)
    f = forecast([*old, Sample(START + 3800, 30, None)], now=START + 3800, window_minutes=300)
    assert f.since_reset == START + 3800
    assert f.samples == 1


def test_jitter_in_the_reset_time_and_small_dips_keep_the_period() -> None:
    samples = [
        Sample(s.at, s.used_percent - (3 if i == 10 else 0), TRACE_RESET + (30 if i % 2 else -30))
        for i, s in enumerate(line(30, 60))
    ]
    f = _at(samples)
    assert f.since_reset == START
    assert f.samples == len(samples)


def test_a_reset_time_already_past_means_nothing_is_known_yet() -> None:
    samples = line(30, 60, resets_at=START + 4000)
    f = forecast(samples, now=START + 4000, window_minutes=300)
    assert f == forecast([], now=START + 4000, window_minutes=300)
    assert f.status == "insufficient_data"
    assert f.used_percent is None
    assert f.sustainable_rate_per_hour is None
    assert f.samples == 0


def test_a_long_pause_does_not_dilute_the_pace_after_it() -> None:
    before = line(30, 60)
    after = line(12, 30, start=before[-1].at + 3600, used=before[-1].used_percent)
    f = _at([*before, *after])
    assert f.rate_per_hour == pytest.approx(12)
    assert f.since_reset == START
    assert f.samples == len(before) + len(after)


def test_right_after_a_long_pause_the_pace_is_not_known_yet() -> None:
    before = line(30, 60)
    after = line(12, 30, start=before[-1].at + 3600, used=before[-1].used_percent)
    assert _at([*before, *after[:3]]).status == "insufficient_data"  # 1.2 points in 6 min
    moving = line(60, 6, start=after[0].at, used=after[0].used_percent, every=60)
    assert _at([*before, *moving]).status == "runs_out"  # 6 points: enough to read a pace


def test_an_ongoing_long_pause_leaves_the_pace_unknown() -> None:
    samples = line(30, 60)
    paused = forecast(samples, now=samples[-1].at + 3600, window_minutes=300)
    assert paused.status == "insufficient_data"
    assert paused.used_percent == pytest.approx(30)
    assert paused.sustainable_rate_per_hour == pytest.approx(70 / 3)


def test_short_pauses_are_part_of_the_pace() -> None:
    samples: list[Sample] = []
    for k in range(4):  # 10 min at 60 %/h, then 20 min of nothing, four times: 20 %/h
        samples += line(60, 10, start=START + k * 1800, used=10 * k, every=60)
    f = _at(samples)
    assert f.rate_per_hour == pytest.approx(20, rel=0.25)


def test_without_a_window_length_a_5h_window_is_assumed() -> None:
    samples = line(30, 60)
    assert forecast(samples, now=samples[-1].at) == _at(samples)


finite = st.floats(allow_nan=False, allow_infinity=False)
# Any finite value, or one near real data, so that the ordinary paths are exercised too.
times = finite | st.floats(START, START + 10**6)
resets = st.none() | st.integers(-(2**63), 2**63 - 1) | st.integers(START, START + 10**6)


@given(
    rows=st.lists(st.tuples(times, finite | st.floats(0, 110), resets), max_size=40),
    now=times,
    window_minutes=st.none() | st.integers(-10, 10**7) | st.sampled_from([300, 10080]),
)
def test_forecast_never_raises_and_its_numbers_are_finite(
    rows: list[tuple[float, float, int | None]], now: float, window_minutes: int | None
) -> None:
    samples = [Sample(at, used, reset) for at, used, reset in sorted(rows, key=lambda r: r[0])]
    f = forecast(samples, now=now, window_minutes=window_minutes)
    assert f.status in ("insufficient_data", "idle", "runs_out", "lasts")
    for value in (
        f.used_percent,
        f.rate_per_hour,
        f.exhausts_at,
        f.runs_out_before_reset_seconds,
        f.sustainable_rate_per_hour,
        f.since_reset,
    ):
        assert value is None or math.isfinite(value)
    assert 0 <= f.samples <= len(samples)
    if f.status == "insufficient_data":
        assert f.rate_per_hour is None
    if f.runs_out_before_reset_seconds is not None:
        assert f.status == "runs_out"


if __name__ == "__main__":
    write_traces()
