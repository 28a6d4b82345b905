// web/static/js/charts.js: the time axis and markers, as dashboard/charts.py lays them out.
import assert from "node:assert/strict";
import { test } from "node:test";

import { markerAnchor, tickLines, tickStep, timeTicks, xAt } from "../../web/static/js/charts.js";

const HOUR = 3600;
const DAY = 86400;
const MIDNIGHT = Date.UTC(2026, 2, 1) / 1000; // 2026-03-01 00:00 UTC

test("a five-hour window gets hourly ticks, the day on the first", () => {
  const start = MIDNIGHT + 9 * HOUR + 32 * 60;
  const ticks = timeTicks(start, start + 5 * HOUR, 600);
  assert.deepEqual(ticks.map((tick) => tick.kind), ["datetime", "time", "time", "time", "time"]);
  assert.deepEqual(ticks[0], { x: "56", at: MIDNIGHT + 10 * HOUR, kind: "datetime" });
});

test("ticks fall on whole hours of the reader's zone, days on its midnights", () => {
  const offset = 5 * HOUR + 30 * 60;
  const hours = timeTicks(MIDNIGHT + 9 * HOUR, MIDNIGHT + 14 * HOUR, 600, offset);
  assert.deepEqual(hours.map((tick) => tick.at - MIDNIGHT), [9, 10, 11, 12, 13].map((h) => h * HOUR + 1800));
  const days = timeTicks(MIDNIGHT, MIDNIGHT + 7 * DAY, 700, offset);
  assert.ok(days.every((tick) => (tick.at + offset) % DAY === 0 && tick.kind === "date"));
});

test("steps, edges and anchors", () => {
  assert.equal(tickStep(5 * HOUR), HOUR);
  assert.equal(tickStep(30 * DAY), 5 * DAY);
  assert.equal(xAt(-5, 0, 10, 100), "0");
  assert.equal(xAt(5, 0, 10, 100), "50");
  assert.equal(markerAnchor("95", 100), "end");
  assert.equal(markerAnchor("5", 100), "start");
  assert.throws(() => timeTicks(10, 10, 100), RangeError);
});

test("tick lines are the reader's local time in the page's language", () => {
  const [clock] = tickLines(MIDNIGHT + 10 * HOUR, "time", "en-GB");
  assert.match(clock, /^\d\d:\d\d$/);
  assert.equal(tickLines(MIDNIGHT + 10 * HOUR, "datetime", "en-GB").length, 2);
  assert.match(tickLines(MIDNIGHT + 10 * HOUR, "date", "zh-CN")[0], /月/);
});
