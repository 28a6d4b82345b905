// The recent alerts as people scan them: each with its severity as an icon and a word, the account
// as a link to its page (none once the account is deleted), what happened and, where the alert
// knows it, when the limit is back or the window resets, in the reader's clock. The same elements
// as macros.html's alert_item; the severity of each kind comes from the page's rules (core/alerts.py).

import { percentNumber } from "./text.js";
import { clock, cloneTemplate, field, localTime, windowName } from "./page.js";

/** An alert's severity: critical, warning, info or test ("info" for a kind this page does not know). */
export function severityOf(ctx, kind) {
  return ctx.rules.alert_severities[kind] ?? "info";
}

/** What happened, without the account, in the page's language, naming the limit when it is not
 * the seat's main one; the webhooks' English `message` for a kind this page does not know. */
export function alertText(ctx, item) {
  const other = item.limit_id && item.limit_id !== ctx.rules.main_limit;
  const fields = {
    limit: other ? item.limit_id + " " : "",
    window: item.window ? windowName(ctx, item.window) : "",
  };
  if (item.used_percent !== null) fields.percent = percentNumber(item.used_percent);
  if (item.threshold !== null) fields.threshold = percentNumber(item.threshold);
  const key = ctx.rules.alert_messages[item.kind];
  return key === undefined ? item.message : ctx.t(key, fields);
}

/** How an alert names its account: its name when it fired. */
function accountName(ctx, item) {
  if (item.account) return item.account;
  return item.account_id !== null ? ctx.t("card.default_title", { id: item.account_id }) : ctx.t("card.unnamed");
}

/** The "back at 14:05" / "resets at 14:05" part, in the reader's clock at `current`. */
function drawWhen(ctx, element, current) {
  const key = element.dataset.whenKey;
  const at = Number(element.dataset.whenAt);
  element.hidden = !key || element.dataset.whenAt === "" || !Number.isFinite(at);
  element.textContent = element.hidden ? "" : ctx.t(key, { time: clock(ctx, at, current) });
}

/** One alert item from the template, filled from an API/feed alert. */
export function alertItem(ctx, item) {
  const entry = cloneTemplate("alert-template");
  const severity = severityOf(ctx, item.kind);
  const known = ctx.rules.alert_messages[item.kind] !== undefined;
  entry.dataset.alertId = String(item.id);
  entry.dataset.kind = item.kind;
  entry.dataset.severity = severity;
  entry.dataset.accountId = item.account_id === null ? "" : String(item.account_id);
  entry.className = "alert severity-" + severity;
  field(entry, "alert-severity-word").textContent = ctx.t("severity." + severity);
  const time = field(entry, "alert-time");
  time.dateTime = item.at_iso ?? "";
  time.dataset.at = String(item.at);
  time.textContent = localTime(ctx, item.at, "datetime");
  const account = field(entry, "alert-account");
  account.textContent = accountName(ctx, item);
  if (item.account_id === null) account.removeAttribute("href");
  else account.href = ctx.base + "/accounts/" + encodeURIComponent(String(item.account_id));
  account.hidden = !known;
  field(entry, "alert-separator").hidden = !known;
  field(entry, "alert-text").textContent = alertText(ctx, item);
  const when = field(entry, "alert-when");
  const whenKey = item.resets_at === null ? undefined : ctx.rules.alert_when[item.kind];
  when.dataset.whenKey = whenKey ?? "";
  when.dataset.whenAt = whenKey === undefined ? "" : String(item.resets_at);
  drawWhen(ctx, when, ctx.now());
  return entry;
}

/** Put a live alert at the top of the list, keeping the newest `limit`; false when it is not one
 * for the list (already there, or a test alert: those show as the test action's result only). */
export function addAlert(ctx, list, item, limit) {
  if (severityOf(ctx, item.kind) === "test") return false;
  if (list.querySelector('[data-alert-id="' + CSS.escape(String(item.id)) + '"]')) return false;
  list.prepend(alertItem(ctx, item));
  while (list.children.length > limit) list.lastElementChild.remove();
  return true;
}

/** An account was deleted: its alerts stay, their names no longer link anywhere. */
export function unlinkAlerts(list, accountId) {
  for (const entry of list.querySelectorAll('[data-account-id="' + CSS.escape(String(accountId)) + '"]')) {
    entry.dataset.accountId = "";
    field(entry, "alert-account")?.removeAttribute("href");
  }
}

/** The server wrote "back at 14:05 UTC": the reader's own clock. */
export function localizeAlerts(ctx, list) {
  const current = ctx.now();
  for (const element of list.querySelectorAll('[data-field="alert-when"]')) drawWhen(ctx, element, current);
}
