"""The page script's pure modules (web/static/js): their node:test suite, and the same outputs
as core/text.py and dashboard/charts.py for the same inputs."""

from __future__ import annotations

import subprocess
from typing import Final

from codexgate.core.text import duration, iso, percent_number
from codexgate.dashboard.charts import sparkline, time_ticks, x_at
from codexgate.dashboard.views import Thresholds
from tests.helpers.node import node, run_module
from tests.helpers.paths import REPO

PERCENTS: Final = [
    0.0,
    0.04,
    0.05,
    0.15,
    0.25,
    2.675,
    12.04,
    12.25,
    12.5,
    12.75,
    45.55,
    99.94,
    99.95,
    99.96,
    100.0,
    130.25,
]
TIMES: Final = [
    0,
    1,
    1.5,
    1.0009996,
    0.0000005,
    0.0000015,
    -1.5,
    1_800_000_000,
    1_800_000_000.25,
    1_767_225_599.999,
    253402300799,
    253402300800,
    -62135596800,
    -62135596801,
    1e300,
]
SPANS: Final = [-5, 0, 0.9, 45, 59.9, 60, 61, 3599, 3600, 3661, 86399, 86400, 86460, 172859, 1e7]
SERIES: Final = [
    [],
    [7],
    [0, 0, 0],
    [0, 5, 10],
    [1, 2, 3],
    [1, 3, 2, 4],
    [3, 0, 1, 0, 0, 2, 7],
    [1] * 24,
]
THRESHOLDS: Final = [(50.0, 80.0), (30.0, 45.0), (0.0, 100.0), (80.0, 95.5)]
USED: Final = [None, -1.0, *PERCENTS, 29.99, 30.0, 44.99, 45.0, 79.99, 80.0, 95.49, 95.5]

# Reads the inputs as JSON on stdin, writes each module's outputs as JSON.
COMPUTE: Final = """
import { readFileSync } from "node:fs";
import { duration, iso, percentNumber } from "./web/static/js/text.js";
import { sparklinePoints } from "./web/static/js/charts.js";
const inputs = JSON.parse(readFileSync(0, "utf8"));
console.log(JSON.stringify({
  percents: inputs.percents.map(percentNumber),
  times: inputs.times.map(iso),
  spans: inputs.spans.map(duration),
  series: inputs.series.map((values) => sparklinePoints(values)),
}));
"""


def test_the_node_suite_passes() -> None:
    done = subprocess.run(
        [node(), "--test", "tests/js"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout


def test_the_script_writes_what_python_writes() -> None:
    inputs = {"percents": PERCENTS, "times": TIMES, "spans": SPANS, "series": SERIES}
    written = run_module(COMPUTE, inputs)
    assert written["percents"] == [percent_number(value) for value in PERCENTS]
    assert written["times"] == [iso(at) for at in TIMES]
    assert written["spans"] == [duration(seconds) for seconds in SPANS]
    assert written["series"] == [sparkline(values).points for values in SERIES]


# Levels each list of used percents by the page data's level rule it comes with.
LEVELS: Final = """
import { readFileSync } from "node:fs";
import { level } from "./web/static/js/windows.js";
const cases = JSON.parse(readFileSync(0, "utf8"));
const levelled = cases.map(([levels, used]) => used.map((value) => level(value, levels)));
console.log(JSON.stringify(levelled));
"""


def test_the_script_levels_a_bar_as_python_does() -> None:
    cases = [Thresholds(warn, critical) for warn, critical in THRESHOLDS]
    written = run_module(LEVELS, [[thresholds.script_levels(), USED] for thresholds in cases])
    assert written == [[thresholds.level(value) for value in USED] for thresholds in cases]


# Lays out each chart's axis and "now" marker as the account page's script does.
AXES: Final = """
import { readFileSync } from "node:fs";
import { timeTicks, xAt } from "./web/static/js/charts.js";
const cases = JSON.parse(readFileSync(0, "utf8"));
console.log(JSON.stringify(cases.map(([start, end, width, offset, now]) => ({
  ticks: timeTicks(start, end, width, offset).map((tick) => [tick.x, tick.at, tick.kind]),
  now: xAt(now, start, end, width),
}))));
"""
# (start, end, width, UTC offset, now): a 5-hour window, a day, a week, a month, odd zones.
AXIS_CASES: Final = [
    (1_772_357_520.0, 1_772_375_520.0, 600, 0, 1_772_360_000.0),
    (1_772_357_520.5, 1_772_375_520.5, 600, 19_800, 1_772_375_600.0),
    (1_772_300_000.0, 1_772_386_400.0, 600, -25_200, 1_772_386_400.0),
    (1_772_300_000.0, 1_772_904_800.0, 600, 28_800, 1_772_600_000.0),
    (1_772_300_000.0, 1_774_892_000.0, 600, 45_900, 1_772_200_000.0),
    (1_772_323_200.0, 1_772_341_200.0, 333, -34_200, 1_772_330_000.123),
    (0.0, 900.0, 100, 3_600, 450.0),
]


def test_the_script_lays_out_a_chart_axis_as_python_does() -> None:
    written = run_module(AXES, AXIS_CASES)
    expected = [
        {
            "ticks": [
                [tick.x, tick.at, tick.kind] for tick in time_ticks(start, end, width, offset)
            ],
            "now": x_at(now, start, end, width),
        }
        for start, end, width, offset, now in AXIS_CASES
    ]
    assert written == expected
    assert all(len(case["ticks"]) >= 2 for case in expected)
