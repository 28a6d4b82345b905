// web/static/js/windows.js: a usage event's windows, read from the history item's labels.
import assert from "node:assert/strict";
import { test } from "node:test";

import { activeHit, level, seatFacts, seatLimits, windowsOf } from "../../web/static/js/windows.js";

const RULES = { windows: ["5h", "7d", "monthly"], always_shown: ["5h", "7d"], main_limit: "codex" };
const value = (used, resetsAt) => ({ used_percent: used, window_minutes: null, resets_at: resetsAt, resets_at_iso: null });

test("the fixed windows come first, always listed; 5h and 7d shown even when unknown", () => {
  const row = { windows: { "5h": value(46, 1000), "7d": null, monthly: null } };
  assert.deepEqual(windowsOf(row, RULES), [
    { label: "5h", used: 46, resetsAt: 1000, shown: true },
    { label: "7d", used: null, resetsAt: null, shown: true },
    { label: "monthly", used: null, resetsAt: null, shown: false },
  ]);
});

test("a label missing from the item counts as not reported", () => {
  const labels = windowsOf({ windows: { monthly: value(3, null) } }, RULES);
  assert.deepEqual(labels.map((w) => [w.label, w.used, w.shown]), [["5h", null, true], ["7d", null, true], ["monthly", 3, true]]);
});

test("other labels follow in the item's order, only with a percent or a reset time", () => {
  const row = {
    windows: { daily: value(12.5, null), "5h": null, "90m": value(null, null), "7d": value(null, 2000), weekly: value(null, 3000) },
  };
  assert.deepEqual(windowsOf(row, RULES).map((w) => [w.label, w.used, w.resetsAt, w.shown]), [
    ["5h", null, null, true],
    ["7d", null, 2000, true],
    ["monthly", null, null, false],
    ["daily", 12.5, null, true],
    ["weekly", null, 3000, true],
  ]);
});

test("the display order is the page's, not a copy", () => {
  const rules = { windows: ["7d", "5h"], always_shown: ["7d"], main_limit: "codex" };
  const row = { windows: { "5h": value(1, null), "7d": value(2, null) } };
  assert.deepEqual(windowsOf(row, rules).map((w) => w.label), ["7d", "5h"]);
});

// The shape of views.Thresholds(50, 80).script_levels(), as the page data carries it.
const LEVELS = { steps: [[100, "full"], [80, "critical"], [50, "warn"]], below: "ok", unknown: "unknown" };

test("levels follow the steps the page hands over", () => {
  assert.deepEqual([null, Number.NaN, Infinity, 0, 49.9, 50, 80, 99.9, 100, 130].map((used) => level(used, LEVELS)),
    ["unknown", "unknown", "unknown", "ok", "ok", "warn", "critical", "critical", "full", "full"]);
});

test("the level's percents and names are the page's, not a copy", () => {
  const levels = { steps: [[90, "over"], [10, "some"]], below: "none", unknown: "blank" };
  assert.deepEqual([null, 5, 10, 89, 90, 100, 130].map((used) => level(used, levels)),
    ["blank", "none", "some", "some", "over", "over", "over"]);
});

test("a hit limit is active until it comes back; without a time it stays", () => {
  assert.equal(activeHit({ limit_hit: null }, 100), null);
  assert.deepEqual(activeHit({ limit_hit: { type: "primary", resets_at: 200, resets_at_iso: null } }, 100), { resetsAt: 200 });
  assert.equal(activeHit({ limit_hit: { type: "primary", resets_at: 100, resets_at_iso: null } }, 100), null);
  assert.deepEqual(activeHit({ limit_hit: { type: "primary", resets_at: null, resets_at_iso: null } }, 100), { resetsAt: null });
});

// A seat follows its main limit (core/use_next.py seat_limits); tests/unit/test_use_next.py holds
// seatFacts against Python case by case.
const seatLimit = (limitId, hit, windows) => ({ limitId, hit, windows });

test("the main limit decides a seat when it has one, else every limit does", () => {
  const main = seatLimit("codex", null, []);
  const other = seatLimit("codex_other", null, []);
  assert.deepEqual(seatLimits([other, main], "codex"), [main]);
  assert.deepEqual(seatLimits([other], "codex"), [other]);
  assert.deepEqual(seatLimits([main], "premium"), [main]); // the main limit is the page's
});

test("one model's limit reached leaves the seat usable; its own limit reached does not", () => {
  const room = seatLimit("codex", null, [[40, 2000]]);
  const modelHit = seatLimit("codex_other", { resetsAt: 3000 }, [[100, 3000]]);
  assert.deepEqual(seatFacts([room, modelHit], 1000, "codex", 100), { atLimit: false, maxUsed: 40 });
  const ownHit = seatLimit("codex", { resetsAt: null }, [[40, 2000]]);
  assert.deepEqual(seatFacts([ownHit, modelHit], 1000, "codex", 100), { atLimit: true, maxUsed: 40 });
  assert.deepEqual(seatFacts([modelHit], 1000, "codex", 100), { atLimit: true, maxUsed: 100 });
  // Used up, but its reset time has come: reset (0 %), not at the limit.
  assert.deepEqual(seatFacts([seatLimit("codex", { resetsAt: 900 }, [[100, 1000]])], 1000, "codex", 100), { atLimit: false, maxUsed: 0 });
});
