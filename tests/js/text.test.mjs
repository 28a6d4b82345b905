// web/static/js/text.js: the same outputs as codexgate/core/text.py for the same inputs.
import assert from "node:assert/strict";
import { test } from "node:test";

import { duration, durationParts, isStale, iso, percent, percentNumber, translator } from "../../web/static/js/text.js";

test("iso writes UTC seconds, milliseconds when fractional, like text.iso", () => {
  assert.equal(iso(null), null);
  assert.equal(iso(1_800_000_000), "2027-01-15T08:00:00Z");
  assert.equal(iso(1_800_000_000.25), "2027-01-15T08:00:00.250Z");
  // Microseconds are rounded half to even first, then cut to milliseconds, as datetime does.
  assert.equal(iso(1.0009996), "1970-01-01T00:00:01.001Z");
  assert.equal(iso(-1.5), "1969-12-31T23:59:58.500Z");
  assert.equal(iso(0.0000015), "1970-01-01T00:00:00.000Z");
  // Only what a calendar date can say.
  assert.equal(iso(253402300799), "9999-12-31T23:59:59Z");
  assert.equal(iso(253402300800), null);
  assert.equal(iso(-62135596800), "0001-01-01T00:00:00Z");
  assert.equal(iso(-62135596801), null);
  assert.equal(iso(1e300), null);
  assert.equal(iso(Number.NaN), null);
});

test("percents are whole when whole, else one decimal, rounded like Python's round()", () => {
  assert.deepEqual([42, 12.5, 12.04, 99.96, 0].map(percentNumber), ["42", "12.5", "12", "100", "0"]);
  assert.equal(percent(91), "91%");
  // Exact ties go to the even digit; others round the binary value (0.15 is just below).
  assert.equal(percent(12.25), "12.2%");
  assert.deepEqual([12.75, 0.25, 0.15, 0.05, 45.55, 2.675].map(percentNumber), ["12.8", "0.2", "0.1", "0.1", "45.5", "2.7"]);
  assert.equal(percentNumber(-0.04), "-0");
});

test("durations show the two largest units, never a zero second one", () => {
  const cases = [
    [0, "0s"], [-30, "0s"], [45, "45s"], [59.9, "59s"], [60, "1m"], [75, "1m 15s"],
    [12 * 60, "12m"], [3 * 3600, "3h"], [3 * 3600 + 5 * 60 + 59, "3h 5m"], [86399, "23h 59m"],
    [2 * 86400, "2d"], [2 * 86400 + 4 * 3600 + 59, "2d 4h"], [2 * 86400 + 59 * 60, "2d"],
    [25 * 3600 + 61, "1d 1h"],
  ];
  for (const [seconds, text] of cases) assert.equal(duration(seconds), text, String(seconds));
  assert.deepEqual(durationParts(2 * 86400 + 4 * 3600), [["d", 2], ["h", 4]]);
});

test("values turn stale only past the limit the page gives", () => {
  assert.equal(isStale(900, 900), false);
  assert.equal(isStale(900.001, 900), true);
});

test("the translator fills fields and writes spans in the page's language", () => {
  const en = translator({ "window.used": "{percent}% used", "duration.d": "{n}d", "duration.h": "{n}h", "duration.m": "{n}m", "duration.s": "{n}s", "duration.join": " " });
  assert.equal(en("window.used", { percent: "46" }), "46% used");
  assert.equal(en("missing.key"), "missing.key");
  assert.equal(en.has("window.used"), true);
  assert.equal(en.duration(3 * 86400 + 12 * 3600), "3d 12h");
  const zh = translator({ "duration.d": "{n}天", "duration.h": "{n}小时", "duration.m": "{n}分", "duration.s": "{n}秒", "duration.join": "" });
  assert.equal(zh.duration(2 * 3600 + 30 * 60), "2小时30分");
});
