// What a usage payload's windows are. The server classifies them (core/windows.py) and sends a
// history item whose `windows` maps each label to its values, or null when it was not reported;
// the display rules (order, which are always shown, the main limit, a bar's level at a used
// percent) come from the page data (`rules`, built from dashboard/views.py), so none is written
// here a second time.

/** The windows of a history item in display order, as a card shows them (views.windows_of):
 * [{label, used, resetsAt, shown}]. The fixed labels come first, each always listed; any
 * other label only when it has a used percent or a reset time. */
export function windowsOf(row, rules) {
  const reported = row.windows;
  const result = [];
  for (const label of rules.windows) {
    const found = reported[label] ?? null;
    const used = found === null ? null : found.used_percent;
    const resetsAt = found === null ? null : found.resets_at;
    const shown = rules.always_shown.includes(label) || used !== null || resetsAt !== null;
    result.push({ label, used, resetsAt, shown });
  }
  for (const [label, found] of Object.entries(reported)) {
    if (rules.windows.includes(label) || found === null) continue;
    if (found.used_percent !== null || found.resets_at !== null) {
      result.push({ label, used: found.used_percent, resetsAt: found.resets_at, shown: true });
    }
  }
  return result;
}

/** A bar's level for a used percent (views.Thresholds.level), by the page's `rules.levels`:
 * the first of its `steps` ([from percent, level], highest first) that the percent reaches,
 * else `below`; `unknown` when there is no finite percent. */
export function level(used, levels) {
  if (used === null || !Number.isFinite(used)) return levels.unknown;
  const step = levels.steps.find(([from]) => used >= from);
  return step === undefined ? levels.below : step[1];
}

/** When a hit limit comes back: null when no limit is hit (or it is back by `now`), else
 * {resetsAt} with resetsAt null when the upstream did not say. */
export function activeHit(row, now) {
  const hit = row.limit_hit;
  if (!hit || (hit.resets_at !== null && hit.resets_at <= now)) return null;
  return { resetsAt: hit.resets_at };
}

/** Whether a window's reported reset time has come by `now` (core/windows.py reset_passed). */
export function resetPassed(resetsAt, now) {
  return resetsAt !== null && resetsAt !== undefined && resetsAt <= now;
}

/** A reported window at `now` (core/windows.py as_of): reset, 0 % used, once its reset time has
 * passed with no newer report. {used, reportedUsed, resetInferred} */
export function asOf(used, resetsAt, now) {
  if (resetPassed(resetsAt, now)) return { used: 0, reportedUsed: used, resetInferred: true };
  return { used, reportedUsed: used, resetInferred: false };
}

/** Whether a limit is reached and when it is back (core/outlook.py comes_back): null while not
 * reached, else {at} (null: not known). `windows` as [used now, resetsAt]. */
export function comesBack(hitActive, hitResetsAt, windows, fullPercent) {
  const full = windows.filter(([used]) => used !== null && used >= fullPercent).map(([, at]) => at);
  if (!hitActive && full.length === 0) return null;
  const known = (hitActive ? [hitResetsAt, ...full] : full).filter((at) => at !== null);
  return { at: known.length ? Math.max(...known) : null };
}

/** The index of the forecast a card tells (core/outlook.py urgent_forecast): the soonest to run
 * out before its reset, or null. Candidates: {used, status, exhaustsAt, beforeReset, blocked}. */
export function urgentForecast(candidates, now, fullPercent) {
  let best = null;
  candidates.forEach((found, index) => {
    const tells = !found.blocked && found.status === "runs_out"
      && found.used !== null && found.used < fullPercent
      && found.exhaustsAt !== null && found.exhaustsAt > now
      && found.beforeReset !== null && found.beforeReset > 0;
    if (tells && (best === null || found.exhaustsAt < candidates[best].exhaustsAt)) best = index;
  });
  return best;
}

/** The limits that decide whether a seat can be used (core/use_next.py seat_limits): its main
 * limit (`mainLimit`, the page's rules.main_limit) when it has one, else all of them. Each limit
 * is an object with a `limitId`. */
export function seatLimits(limits, mainLimit) {
  const main = limits.filter((limit) => limit.limitId === mainLimit);
  return main.length ? main : limits;
}

/** What a seat's limits say of it at `now`, counting only the limits that decide it
 * (seatLimits): whether it is at its limit (core/use_next.py at_limit: a hit not back yet, or a
 * window at `fullPercent` whose reset has not passed) and its highest used percent now
 * (views.CardView.max_used). Another limit reached shows on its own section only.
 * `limits`: [{limitId, hit: null | {resetsAt}, windows: [[used as reported, resetsAt]]}]. */
export function seatFacts(limits, now, mainLimit, fullPercent) {
  let atLimit = false;
  let maxUsed = null;
  for (const limit of seatLimits(limits, mainLimit)) {
    const hit = limit.hit;
    if (hit && (hit.resetsAt === null || hit.resetsAt > now)) atLimit = true;
    for (const [reported, resetsAt] of limit.windows) {
      const used = asOf(reported, resetsAt, now).used;
      if (used === null) continue;
      maxUsed = maxUsed === null ? used : Math.max(maxUsed, used);
      if (used >= fullPercent) atLimit = true;
    }
  }
  return { atLimit, maxUsed };
}
