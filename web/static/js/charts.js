// A sparkline's points, as dashboard/charts.py draws them (sparkline), for live requests.

import { percentNumber } from "./text.js";

/** A coordinate rounded to 1 decimal like charts.py's _num: no trailing ".0", no "-0". */
function num(value) {
  const text = percentNumber(value);
  return text === "-0" ? "0" : text;
}

/** The points of a sparkline of evenly spaced values, 0 at the bottom and the maximum at the top. */
export function sparklinePoints(values, width = 100, height = 24) {
  const cleaned = values.map((v) => (v > 0 && Number.isFinite(v) ? v : 0));
  if (cleaned.length === 0) return "";
  const maximum = Math.max(...cleaned);
  // A 1-unit margin at the top and bottom, so that the stroke is not clipped.
  const ys = cleaned.map((v) => height - 1 - (maximum ? (v / maximum) * (height - 2) : 0));
  if (ys.length === 1) return "0," + num(ys[0]) + " " + num(width) + "," + num(ys[0]);
  const step = width / (ys.length - 1);
  return ys.map((y, i) => num(i * step) + "," + num(y)).join(" ");
}
