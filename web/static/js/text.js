// How the page writes times, percents and spans: the same outputs as codexgate/core/text.py for
// the same inputs, and the page's strings from the catalog the server hands over (dashboard/i18n.py).

// A span's units, largest first: [suffix, seconds] (core/text.py _UNITS).
const UNITS = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];

/** Python's round-half-even of an exactly representable integer-and-a-half. */
function halfEven(value) {
  const floor = Math.floor(value);
  const rest = value - floor;
  if (rest < 0.5) return floor;
  if (rest > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Unix seconds as ISO-8601 UTC (`2026-03-01T12:00:00Z`, milliseconds when fractional), or null. */
export function iso(at) {
  if (typeof at !== "number" || !Number.isFinite(at)) return null;
  // Python's datetime.fromtimestamp: whole seconds, microseconds rounded half to even.
  let whole = Math.trunc(at);
  let micros = halfEven((at - whole) * 1e6);
  if (micros >= 1e6) {
    whole += 1;
    micros -= 1e6;
  } else if (micros < 0) {
    whole -= 1;
    micros += 1e6;
  }
  const moment = new Date(whole * 1000);
  const year = moment.getUTCFullYear();
  if (Number.isNaN(year) || year < 1 || year > 9999) return null; // beyond datetime's calendar
  const seconds = moment.toISOString().slice(0, 19);
  if (Number.isInteger(at)) return seconds + "Z";
  return seconds + "." + String(Math.floor(micros / 1000)).padStart(3, "0") + "Z";
}

/** A percent's number as shown: whole when whole, else one decimal (`42`, `12.5`). */
export function percentNumber(value) {
  const negative = value < 0 || Object.is(value, -0);
  const size = Math.abs(value);
  // toFixed rounds the exact binary value; on an exact tie (an odd multiple of 0.25) it rounds
  // up where Python's round() goes to the even digit.
  const tie = Number.isInteger(size * 4) && !Number.isInteger(size * 2);
  const digits = tie ? (halfEven(size * 10) / 10).toFixed(1) : size.toFixed(1);
  const shown = digits.endsWith(".0") ? digits.slice(0, -2) : digits;
  return (negative ? "-" : "") + shown;
}

/** A percent as shown: `42%`, `12.5%`. */
export function percent(value) {
  return percentNumber(value) + "%";
}

/** A span's two largest units as [unit, count], the second left out when it is zero. */
export function durationParts(seconds) {
  let rest = Math.max(0, Math.trunc(seconds));
  const units = UNITS.map(([unit, size]) => {
    const count = Math.floor(rest / size);
    rest -= count * size;
    return [unit, count];
  });
  let first = units.findIndex(([, count]) => count > 0);
  if (first < 0) first = units.length - 1;
  const shown = [units[first]];
  if (first < units.length - 1 && units[first + 1][1] > 0) shown.push(units[first + 1]);
  return shown;
}

/** A span as its two largest units: 45s, 12m, 3h 5m, 2d 4h (never "2d 0h"). */
export function duration(seconds) {
  return durationParts(seconds).map(([unit, count]) => count + unit).join(" ");
}

/** Whether values last confirmed `ageSeconds` ago are flagged stale. */
export function isStale(ageSeconds, staleAfterSeconds) {
  return ageSeconds > staleAfterSeconds;
}

/** The page's strings: `t(key, fields)` fills `{name}` fields; `t.duration(seconds)` a span. */
export function translator(messages) {
  const has = (key) => Object.prototype.hasOwnProperty.call(messages, key);
  const t = (key, fields) => {
    let text = has(key) ? messages[key] : key;
    if (fields) {
      for (const [name, value] of Object.entries(fields)) text = text.split("{" + name + "}").join(String(value));
    }
    return text;
  };
  t.has = has;
  t.duration = (seconds) =>
    durationParts(seconds).map(([unit, n]) => t("duration." + unit, { n })).join(t("duration.join"));
  return t;
}

/** How a moment is written at `now` (core/text.py clock_style), by the page's `rules.clock`:
 * "time" alone when it is this close, "weekday" and time within a week, else "date". */
export function clockStyle(at, now, rules) {
  const distance = Math.abs(at - now);
  if (distance < rules.time_within) return "time";
  return distance < rules.weekday_within ? "weekday" : "date";
}

// The clock styles as Intl formats, each a list of parts joined by a space: a 24-hour clock in
// the reader's time zone ("Tue 09:32", "周二 09:32").
const HOURS = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
const CLOCK_FORMATS = {
  time: [HOURS],
  weekday: [{ weekday: "short" }, HOURS],
  date: [{ month: "short", day: "numeric", ...HOURS }],
};

/** A moment as the reader's clock shows it in `lang`: "14:05", "Tue 09:32", "Mar 3, 09:32"
 * (`timeZone`: the browser's when not given). */
export function clockText(at, now, lang, rules, timeZone) {
  const moment = new Date(at * 1000);
  try {
    return CLOCK_FORMATS[clockStyle(at, now, rules)]
      .map((options) => new Intl.DateTimeFormat(lang, timeZone ? { ...options, timeZone } : options).format(moment))
      .join(" ");
  } catch {
    return iso(at) ?? "";
  }
}
