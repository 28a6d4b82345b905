"""The window line's rules: a passed reset is a reset (inferred), how a reset's clock time is
written, when a reached limit is back, which forecast a card tells; and that the page script
(web/static/js/windows.js, text.js) gives the same answers as Python for the same inputs."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any, Final

import pytest

from codexgate.core.forecast import Forecast
from codexgate.core.outlook import Back, ForecastCandidate, comes_back, urgent_forecast
from codexgate.core.rows import UsageRow
from codexgate.core.text import (
    CLOCK_TIME_SECONDS,
    CLOCK_WEEKDAY_SECONDS,
    clock,
    clock_rules,
    clock_style,
)
from codexgate.core.windows import WindowNow, as_of, reset_passed
from codexgate.dashboard import views
from codexgate.dashboard.i18n import Translator
from tests.helpers.builders import usage_row
from tests.helpers.node import run_module

NOW: Final = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, a Friday
THRESHOLDS: Final = views.Thresholds()


def row(
    five_hour: tuple[float, int],
    seven_day: tuple[float, int] | None = None,
    limit_id: str = "codex",
) -> UsageRow:
    """A usage row with its 5h window (used, resets_at) and maybe its 7d one."""
    found = replace(usage_row(five_hour[0], resets_at=five_hour[1]), limit_id=limit_id)
    if seven_day is None:
        return found
    return replace(
        found,
        seven_day_used_percent=seven_day[0],
        seven_day_window_minutes=10080,
        seven_day_resets_at=seven_day[1],
    )


# -- a passed reset is a reset ------------------------------------------------------------------


def test_a_window_before_its_reset_is_as_reported() -> None:
    assert as_of(46.0, int(NOW) + 1, NOW) == WindowNow(46.0, 46.0, False)
    assert as_of(None, int(NOW) + 1, NOW) == WindowNow(None, None, False)
    assert as_of(46.0, None, NOW) == WindowNow(46.0, 46.0, False)  # no reset time: nothing known


def test_a_window_whose_reset_time_has_come_is_reset_and_says_it_is_inferred() -> None:
    assert as_of(46.0, int(NOW), NOW) == WindowNow(0.0, 46.0, True)  # at the reset itself
    assert as_of(100.0, int(NOW) - 3600, NOW) == WindowNow(0.0, 100.0, True)
    assert reset_passed(NOW, NOW)
    assert not reset_passed(NOW + 0.5, NOW)
    assert not reset_passed(None, NOW)


def test_a_card_shows_a_passed_reset_as_reset_without_its_old_forecast() -> None:
    found = row((100.0, int(NOW) - 60), (40.0, int(NOW) + 90_000))
    runs_out = Forecast("runs_out", 100.0, int(NOW) - 60, 20.0, NOW - 600, 540.0, None, NOW, 9)
    five_hour, seven_day, _ = views.windows_of(found, THRESHOLDS, {"5h": runs_out}, NOW)
    assert (five_hour.used_percent, five_hour.reported_used_percent) == (0.0, 100.0)
    assert five_hour.reset_inferred
    assert five_hour.level == "ok"
    assert five_hour.forecast is None
    assert (seven_day.used_percent, seven_day.reset_inferred) == (40.0, False)
    # Without a moment (a history row), the window is what was reported.
    assert views.windows_of(found, THRESHOLDS)[0].used_percent == 100.0
    # A limit whose only full window has reset is no longer reached.
    assert views.limit_view(found, NOW, THRESHOLDS).back is None
    assert views.limit_view(found, NOW - 120, THRESHOLDS).back == Back(int(NOW) - 60)


# -- clock times --------------------------------------------------------------------------------


def test_a_moment_within_a_day_is_its_time_within_a_week_its_weekday_else_its_date() -> None:
    assert clock_style(NOW + 3600, NOW) == "time"
    assert clock_style(NOW - 3600, NOW) == "time"  # a reset that has passed, too
    assert clock_style(NOW + CLOCK_TIME_SECONDS - 1, NOW) == "time"
    assert clock_style(NOW + CLOCK_TIME_SECONDS, NOW) == "weekday"
    assert clock_style(NOW + CLOCK_WEEKDAY_SECONDS - 1, NOW) == "weekday"
    assert clock_style(NOW + CLOCK_WEEKDAY_SECONDS, NOW) == "date"
    assert clock(NOW + 6180, NOW) == "09:43"
    assert clock(NOW + 4 * 86400 + 5520, NOW) == "Tue 09:32"
    assert clock(NOW + 30 * 86400, NOW) == "2027-02-14 08:00"
    local = datetime.fromtimestamp(NOW + 6180).strftime("%H:%M")
    assert clock(NOW + 6180, NOW, None) == local  # the command line's: this machine's zone


def test_the_pages_write_utc_clock_times_marked_as_utc_in_both_languages() -> None:
    english, chinese = Translator("en"), Translator("zh-CN")
    assert english.clock(NOW + 6180, NOW) == "09:43 UTC"
    assert english.clock(NOW + 4 * 86400 + 5520, NOW) == "Tue 09:32 UTC"
    assert (
        chinese.clock(NOW + 4 * 86400 + 5520, NOW) == "周二 09:32\uff08UTC\uff09"
    )  # fullwidth brackets
    assert english("window.resets_at", time="14:05", duration="1h 43m") == "resets 14:05, in 1h 43m"
    assert english("limit.back_at", time="14:05", duration="1h 43m") == (
        "Limit reached, back at 14:05 (in 1h 43m)"
    )
    assert english("window.reset_inferred", time="14:05") == "reset at 14:05 · no request since"


# -- when a reached limit is back, which forecast a card tells ----------------------------------


def test_a_limit_is_reached_by_its_hit_or_a_full_window_and_back_at_the_last_reset() -> None:
    assert comes_back(False, None, [(99.9, NOW + 60)]) is None
    assert comes_back(False, NOW + 60, [(20.0, NOW + 60)]) is None  # a hit that is back
    assert comes_back(True, NOW + 600, [(20.0, NOW + 60)]) == Back(NOW + 600)
    assert comes_back(False, None, [(100.0, NOW + 60), (100.0, NOW + 900)]) == Back(NOW + 900)
    assert comes_back(True, NOW + 600, [(100.0, NOW + 900)]) == Back(NOW + 900)
    assert comes_back(True, None, [(None, None)]) == Back(None)  # reached, not said until when
    assert comes_back(False, None, [(0.0, NOW - 1)]) is None  # the full window reset (inferred)


def candidate(
    window: str = "5h",
    used: float | None = 60.0,
    status: str | None = "runs_out",
    exhausts_at: float | None = NOW + 3600,
    before: float | None = 1800.0,
    blocked: bool = False,
) -> ForecastCandidate:
    return ForecastCandidate(window, used, status, exhausts_at, before, blocked)  # type: ignore[arg-type]


CANDIDATE_CASES: Final[list[tuple[list[ForecastCandidate], int | None]]] = [
    ([], None),
    ([candidate()], 0),
    ([candidate(status="lasts")], None),
    ([candidate(status="idle")], None),
    ([candidate(status="insufficient_data", exhausts_at=None, before=None)], None),
    ([candidate(before=0.0)], None),  # runs out just at its reset: nothing to tell
    ([candidate(before=None)], None),  # no reset time known: no margin to tell
    ([candidate(used=100.0)], None),  # at 100 %: "limit reached" instead
    ([candidate(blocked=True)], None),
    ([candidate(exhausts_at=NOW - 1)], None),  # already past
    ([candidate(used=None)], None),
    ([candidate("5h", exhausts_at=NOW + 7200), candidate("7d", exhausts_at=NOW + 3600)], 1),
    ([candidate("5h", exhausts_at=NOW + 3600), candidate("7d", exhausts_at=NOW + 3600)], 0),
    ([candidate("5h", blocked=True), candidate("7d", exhausts_at=NOW + 9e4)], 1),
]


@pytest.mark.parametrize(("candidates", "chosen"), CANDIDATE_CASES)
def test_a_card_tells_the_forecast_that_runs_out_soonest_before_its_reset(
    candidates: list[ForecastCandidate], chosen: int | None
) -> None:
    assert urgent_forecast(candidates, NOW) == chosen


def test_the_forecast_line_goes_to_the_limit_of_the_chosen_window_and_none_when_reached() -> None:
    soon = Forecast("runs_out", 60.0, int(NOW) + 9000, 20.0, NOW + 7200, 1800.0, None, NOW, 9)
    sooner = Forecast("runs_out", 80.0, int(NOW) + 9000, 20.0, NOW + 3600, 5400.0, None, NOW, 9)
    main = row((60.0, int(NOW) + 9000))
    extra = row((80.0, int(NOW) + 9000), limit_id="codex_other")
    limits = [
        views.limit_view(main, NOW, THRESHOLDS, {"5h": soon}),
        views.limit_view(extra, NOW, THRESHOLDS, {"5h": sooner}),
    ]
    told = views.with_forecast_line(limits, NOW)
    assert told[0].forecast_line is None
    assert told[1].forecast_line is not None
    assert told[1].forecast_line.forecast == sooner
    full = row((100.0, int(NOW) + 9000), limit_id="codex_other")
    reached = views.limit_view(full, NOW, THRESHOLDS, {"5h": sooner})
    assert reached.back == Back(int(NOW) + 9000)
    again = views.with_forecast_line([limits[0], reached], NOW)
    assert again[0].forecast_line is not None
    assert again[1].forecast_line is None


# -- the page script gives the same answers -----------------------------------------------------

MIRROR: Final = """
import { readFileSync } from "node:fs";
import { asOf, comesBack, resetPassed, urgentForecast } from "./web/static/js/windows.js";
import { clockStyle } from "./web/static/js/text.js";
const inputs = JSON.parse(readFileSync(0, "utf8"));
console.log(JSON.stringify({
  asOf: inputs.windows.map(([used, at, now]) => asOf(used, at, now)),
  passed: inputs.windows.map(([, at, now]) => resetPassed(at, now)),
  styles: inputs.moments.map(([at, now]) => clockStyle(at, now, inputs.clock)),
  back: inputs.limits.map(([active, at, windows]) => comesBack(active, at, windows, 100)),
  urgent: inputs.candidates.map((list) => urgentForecast(list, inputs.now, 100)),
}));
"""
# (used, resets_at, now)
WINDOWS: Final[list[tuple[float | None, float | None, float]]] = [
    (46.0, NOW + 1, NOW),
    (46.0, NOW, NOW),
    (46.0, NOW - 0.5, NOW),
    (None, NOW - 10, NOW),
    (None, None, NOW),
    (100.0, None, NOW),
    (12.5, NOW + 0.001, NOW),
]
SPANS: Final = [0, 1, 3599, 86399.9, 86400, 86401, 518399, 518400, 518401, 1e7]
# (hit active, hit resets_at, [(used now, resets_at)])
LIMITS: Final[list[tuple[bool, float | None, list[tuple[float | None, float | None]]]]] = [
    (False, None, []),
    (False, None, [(99.9, NOW + 60)]),
    (True, None, [(None, None)]),
    (True, NOW + 600, [(20.0, NOW + 60)]),
    (False, NOW + 60, [(20.0, NOW + 60)]),
    (False, None, [(100.0, NOW + 60), (100.0, NOW + 900)]),
    (True, NOW + 600, [(100.0, NOW + 900), (130.0, None)]),
]


def _script_candidate(found: ForecastCandidate) -> dict[str, Any]:
    return {
        "used": found.used_percent,
        "status": found.status,
        "exhaustsAt": found.exhausts_at,
        "beforeReset": found.runs_out_before_reset_seconds,
        "blocked": found.blocked,
    }


def test_the_script_applies_the_same_rules_as_python() -> None:
    moments = [[NOW + sign * span, NOW] for span in SPANS for sign in (1, -1)]
    inputs = {
        "windows": WINDOWS,
        "moments": moments,
        "clock": clock_rules(),
        "limits": LIMITS,
        "candidates": [[_script_candidate(c) for c in cases] for cases, _ in CANDIDATE_CASES],
        "now": NOW,
    }
    written = run_module(MIRROR, inputs)
    expected_as_of = [as_of(used, at, now) for used, at, now in WINDOWS]
    assert written["asOf"] == [
        {
            "used": w.used_percent,
            "reportedUsed": w.reported_used_percent,
            "resetInferred": w.reset_inferred,
        }
        for w in expected_as_of
    ]
    assert written["passed"] == [reset_passed(at, now) for _, at, now in WINDOWS]
    assert written["styles"] == [clock_style(at, now) for at, now in moments]
    backs = [comes_back(active, at, ws) for active, at, ws in LIMITS]
    assert written["back"] == [None if b is None else asdict(b) for b in backs]
    assert written["urgent"] == [urgent_forecast(cases, NOW) for cases, _ in CANDIDATE_CASES]
    assert datetime.fromtimestamp(NOW, UTC).weekday() == 4  # NOW is a Friday, as written above
