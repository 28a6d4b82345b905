// web/static/js/charts.js: the same sparkline points as dashboard/charts.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import { sparklinePoints } from "../../web/static/js/charts.js";

test("the maximum is at the top inside a margin", () => {
  assert.equal(sparklinePoints([0, 5, 10]), "0,23 50,12 100,1");
  assert.equal(sparklinePoints([1, 3, 2, 4], 30, 10), "0,7 10,3 20,5 30,1");
});

test("coordinates are rounded to one decimal like Python's round()", () => {
  assert.equal(sparklinePoints([1, 2, 3], 10, 10), "0,6.3 5,3.7 10,1");
});

test("nothing, one value, zeros, negatives and NaN", () => {
  assert.equal(sparklinePoints([]), "");
  assert.equal(sparklinePoints([7]), "0,1 100,1");
  assert.equal(sparklinePoints([0, 0, 0], 10), "0,23 5,23 10,23");
  assert.equal(sparklinePoints([-5, Number.NaN, 2], 10), "0,23 5,23 10,1");
});
