// web/static/js/text.js clockText and windows.js asOf: a reset's clock time in the reader's zone
// and language, and a window whose reset time has passed shown as reset.
import assert from "node:assert/strict";
import { test } from "node:test";

import { clockText } from "../../web/static/js/text.js";
import { asOf, comesBack, urgentForecast } from "../../web/static/js/windows.js";

const RULES = { time_within: 86400, weekday_within: 518400 };
const NOW = Date.UTC(2026, 2, 3, 12, 0) / 1000; // Tuesday 2026-03-03 12:00 UTC

test("a reset within a day is its time in the reader's zone, 24-hour, in both languages", () => {
  assert.equal(clockText(NOW + 7500, NOW, "en", RULES, "Europe/Berlin"), "15:05");
  assert.equal(clockText(NOW + 7500, NOW, "en", RULES, "Asia/Shanghai"), "22:05");
  assert.equal(clockText(NOW + 7500, NOW, "zh-CN", RULES, "Asia/Shanghai"), "22:05");
});

test("beyond a day the weekday comes first, beyond a week the date", () => {
  assert.equal(clockText(NOW + 2 * 86400 + 3600, NOW, "en", RULES, "Europe/Berlin"), "Thu 14:00");
  assert.equal(clockText(NOW + 2 * 86400 + 3600, NOW, "zh-CN", RULES, "Europe/Berlin"), "周四 14:00");
  assert.equal(clockText(NOW + 10 * 86400, NOW, "en", RULES, "Asia/Shanghai"), "Mar 13, 20:00");
  assert.equal(clockText(NOW + 10 * 86400, NOW, "zh-CN", RULES, "Asia/Shanghai"), "3月13日 20:00");
});

test("a passed reset is a reset, inferred, with the last report kept", () => {
  assert.deepEqual(asOf(46, NOW - 1, NOW), { used: 0, reportedUsed: 46, resetInferred: true });
  assert.deepEqual(asOf(46, NOW + 1, NOW), { used: 46, reportedUsed: 46, resetInferred: false });
  assert.deepEqual(asOf(46, null, NOW), { used: 46, reportedUsed: 46, resetInferred: false });
});

test("a reached limit is back at the last of its resets; a card tells the soonest run-out", () => {
  assert.equal(comesBack(false, null, [[50, NOW + 60]], 100), null);
  assert.deepEqual(comesBack(true, NOW + 60, [[100, NOW + 600]], 100), { at: NOW + 600 });
  const runsOut = (exhaustsAt, blocked = false) => ({ used: 60, status: "runs_out", exhaustsAt, beforeReset: 600, blocked });
  assert.equal(urgentForecast([runsOut(NOW + 900), runsOut(NOW + 300)], NOW, 100), 1);
  assert.equal(urgentForecast([runsOut(NOW + 900), runsOut(NOW + 300, true)], NOW, 100), 0);
  assert.equal(urgentForecast([{ ...runsOut(NOW + 300), status: "lasts" }], NOW, 100), null);
});
