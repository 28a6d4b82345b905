// What dashboard/charts.py draws that must also run in the browser: a sparkline's points for live
// requests, the time axis on whole steps of the reader's time zone, and the moving "now" marker.
// tests/unit/test_js.py checks each against the Python for the same inputs.

import { percentNumber } from "./text.js";

const DAY = 86400;
// As charts.py's TICK_STEPS and MAX_TICK_INTERVALS.
const TICK_STEPS = [900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, DAY, 2 * DAY, 5 * DAY, 10 * DAY, 30 * DAY];
const MAX_TICK_INTERVALS = 7;
const DAY_FORMAT = { month: "short", day: "numeric" };
// A 24-hour clock, as every other time on the pages (text.js).
const CLOCK_FORMAT = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };

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

/** The x coordinate of a moment on a chart from start to end, clamped to its edges (x_at). */
export function xAt(at, start, end, width) {
  return num(((Math.min(Math.max(at, start), end) - start) / (end - start)) * width);
}

/** The tick step for a range of `span` seconds (tick_step). */
export function tickStep(span) {
  return TICK_STEPS.find((step) => span / step <= MAX_TICK_INTERVALS) ?? TICK_STEPS[TICK_STEPS.length - 1];
}

/** The ticks {x, at, kind} from start to end on whole steps of a zone utcOffset seconds east (time_ticks). */
export function timeTicks(start, end, width, utcOffset = 0) {
  if (!(end > start)) throw new RangeError("end must be after start");
  const step = tickStep(end - start);
  const ticks = [];
  let previousDay = null;
  for (let index = Math.ceil((start + utcOffset) / step); ; index += 1) {
    const at = index * step - utcOffset;
    if (at > end) break;
    const day = Math.floor((at + utcOffset) / DAY);
    const kind = step >= DAY ? "date" : day === previousDay ? "time" : "datetime";
    ticks.push({ x: xAt(at, start, end, width), at, kind });
    previousDay = day;
  }
  return ticks;
}

/** This browser's offset from UTC at a moment, in seconds east. */
export function utcOffsetAt(at) {
  return -new Date(at * 1000).getTimezoneOffset() * 60;
}

/** A tick's lines in the reader's time zone and the page's language: the day, the time, or the
 * time over its day (as charts.py's tick_lines). */
export function tickLines(at, kind, lang) {
  const moment = new Date(at * 1000);
  const day = new Intl.DateTimeFormat(lang, DAY_FORMAT).format(moment);
  const clock = new Intl.DateTimeFormat(lang, CLOCK_FORMAT).format(moment);
  return kind === "date" ? [day] : kind === "time" ? [clock] : [clock, day];
}

/** A marker label's anchor: kept inside the chart near its edges (as account.html does). */
export function markerAnchor(x, width) {
  const value = Number(x);
  return value > width * 0.85 ? "end" : value < width * 0.15 ? "start" : "middle";
}
