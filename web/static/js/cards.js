// An account's card, filled from the feed: its limits, their windows, forecasts, freshness and
// the rename and delete actions. The structure is the server's (web/templates/macros.html):
// new windows, limits and cards are clones of its <template> copies.

import { isStale, percentNumber } from "./text.js";
import { activeHit, level, windowsOf } from "./windows.js";
import { callApi, cloneTemplate, field, notice, setCountdown, windowName } from "./page.js";

export function drawWindow(ctx, item) {
  const raw = item.dataset.used;
  const used = raw === "" ? null : Number(raw);
  const pct = field(item, "pct");
  const fill = item.querySelector(".fill");
  if (used === null) {
    pct.textContent = ctx.t("window.unknown");
    fill.setAttribute("width", "0");
    return;
  }
  const left = Math.min(100, Math.max(0, 100 - used));
  const shown = ctx.view === "remaining" ? left : Math.min(100, Math.max(0, used));
  pct.textContent = ctx.view === "remaining"
    ? ctx.t("window.left", { percent: percentNumber(left) })
    : ctx.t("window.used", { percent: percentNumber(used) });
  fill.setAttribute("width", String(Math.round(shown * 100) / 100));
}

export function drawAllWindows(ctx) {
  for (const item of document.querySelectorAll("#cards .window")) drawWindow(ctx, item);
}

function fillForecast(ctx, item, forecast) {
  const box = field(item, "forecast");
  if (!box) return;
  if (!forecast) {
    box.hidden = true;
    return;
  }
  const t = ctx.t;
  box.hidden = false;
  const runsOut = forecast.status === "runs_out" && forecast.exhausts_at !== null;
  box.classList.toggle("forecast-runs-out", runsOut);
  const countdown = field(box, "forecast-countdown");
  countdown.hidden = !runsOut;
  setCountdown(ctx, countdown, runsOut ? forecast.exhausts_at : null);
  const parts = [];
  if (runsOut && forecast.runs_out_before_reset_seconds) {
    parts.push(t("forecast.before_reset", { duration: t.duration(forecast.runs_out_before_reset_seconds) }));
  } else if (forecast.status === "lasts") {
    parts.push(t("forecast.lasts"));
  } else if (forecast.status === "idle") {
    parts.push(t("forecast.idle"));
  } else if (forecast.status === "insufficient_data") {
    parts.push(t("forecast.insufficient"));
  }
  if (forecast.rate_per_hour !== null && (forecast.status === "runs_out" || forecast.status === "lasts")) {
    parts.push(t("forecast.separator") + t("forecast.pace", { rate: percentNumber(forecast.rate_per_hour) }));
    if (forecast.sustainable_rate_per_hour !== null) {
      parts.push(t("forecast.separator") + t("forecast.sustainable", { rate: percentNumber(forecast.sustainable_rate_per_hour) }));
    }
  }
  field(box, "forecast-text").textContent = parts.join("");
}

function setWindow(ctx, item, used, resetsAt) {
  const value = used === null || !Number.isFinite(used) ? null : used;
  const lvl = level(value, ctx.rules.levels);
  item.dataset.used = value === null ? "" : String(value);
  item.className = "window level-" + lvl;
  field(item, "level").textContent = ctx.t("level." + lvl);
  drawWindow(ctx, item);
  setCountdown(ctx, item.querySelector(".countdown"), resetsAt);
}

/** One limit family's section from a usage event's history item and forecasts. */
function fillLimit(ctx, section, row, forecasts) {
  const limitName = field(section, "limit-name");
  if (row.limit_id === ctx.rules.main_limit) {
    limitName.hidden = true;
  } else {
    limitName.textContent = ctx.t("limit.extra", { name: row.limit_name || row.limit_id });
    limitName.hidden = false;
  }
  const list = section.querySelector(".windows");
  const seen = new Set();
  for (const w of windowsOf(row, ctx.rules)) {
    seen.add(w.label);
    let item = list.querySelector('[data-window="' + CSS.escape(w.label) + '"]');
    if (!item) {
      item = cloneTemplate("window-template");
      item.dataset.window = w.label;
      field(item, "window-name").textContent = windowName(ctx, w.label);
      list.append(item);
    }
    setWindow(ctx, item, w.used, w.resetsAt);
    fillForecast(ctx, item, w.used === null ? null : forecasts[w.label] || null);
    item.hidden = !w.shown;
  }
  for (const item of list.querySelectorAll(".window")) {
    if (!seen.has(item.dataset.window)) item.remove(); // another label the row no longer reports
  }
  const hit = activeHit(row, ctx.now());
  field(section, "limit-hit").hidden = hit === null;
  section.dataset.hitUntil = hit === null ? "" : (hit.resetsAt === null ? "unknown" : String(hit.resetsAt));
  setCountdown(ctx, field(section, "limit-hit").querySelector(".countdown"), hit === null ? null : hit.resetsAt);
  const fresh = field(section, "fresh");
  fresh.hidden = false;
  fresh.dataset.confirmedAt = String(row.confirmed_at);
  const sourceKey = "source." + row.source;
  const source = ctx.t.has(sourceKey) ? ctx.t(sourceKey) : row.source;
  field(section, "source").textContent = ctx.t("fresh.via", { source });
  tickFreshness(ctx, section, ctx.now());
}

export function tickFreshness(ctx, section, current) {
  const fresh = field(section, "fresh");
  if (!fresh || fresh.dataset.confirmedAt === "") return;
  const age = Math.max(0, current - Number(fresh.dataset.confirmedAt));
  field(section, "age").textContent = age < ctx.rules.just_now_seconds
    ? ctx.t("fresh.just_now")
    : ctx.t("fresh.updated", { age: ctx.t.duration(age) });
  const stale = isStale(age, ctx.rules.stale_after_seconds);
  section.classList.toggle("stale", stale);
  field(section, "stale").hidden = !stale;
}

/** Put a usage event into its card: the limit's section, added when new. */
export function applyUsageToCard(ctx, card, payload) {
  const row = payload.row;
  const limits = field(card, "limits");
  let section = limits.querySelector('.limit[data-limit-id="' + CSS.escape(row.limit_id) + '"]');
  if (!section) {
    section = cloneTemplate("limit-template");
    section.dataset.limitId = row.limit_id;
    limits.append(section);
  }
  fillLimit(ctx, section, row, payload.forecasts);
  field(card, "no-data").hidden = true;
}

// -- the card's account -----------------------------------------------------------------------

export function cardList() {
  return document.getElementById("cards");
}

export function findCard(accountId) {
  return cardList()?.querySelector('.card[data-account-id="' + CSS.escape(String(accountId)) + '"]') || null;
}

export function cardTitle(account) {
  return account.display_name || account.email || null;
}

export function fillMeta(ctx, card, account) {
  const title = cardTitle(account);
  card.dataset.title = title || "";
  card.dataset.displayName = account.display_name || "";
  const titleElement = field(card, "title");
  titleElement.textContent = title || ctx.t("card.unnamed");
  titleElement.classList.toggle("unnamed", !title);
  const email = field(card, "email");
  email.textContent = account.email || "";
  email.hidden = !(account.display_name && account.email); // else the title already is the email
  field(card, "plan").textContent = account.plan_type || ctx.t("window.unknown");
  const input = card.querySelector('input[name="display_name"]');
  if (input && field(card, "rename-form").hidden) input.value = account.display_name || "";
}

export function createCard(ctx, account) {
  const card = cloneTemplate("card-template");
  card.dataset.accountId = String(account.id);
  field(card, "title").id = "card-title-" + account.id;
  for (const button of card.querySelectorAll("button[aria-describedby]")) {
    button.setAttribute("aria-describedby", "card-title-" + account.id);
  }
  for (const name of ["title-link", "history-link"]) {
    const link = field(card, name);
    if (link) link.href = ctx.base + "/accounts/" + encodeURIComponent(String(account.id));
  }
  fillMeta(ctx, card, account);
  cardList().append(card);
  document.getElementById("no-accounts")?.setAttribute("hidden", "");
  return card;
}

export async function fetchAccount(ctx, accountId) {
  const response = await fetch(ctx.api + "/accounts/" + encodeURIComponent(String(accountId)), { credentials: "same-origin" });
  return response.ok ? response.json() : null;
}

/** What the summary and the sorting need of a card, as it shows now. */
export function cardFacts(card, current) {
  let maxUsed = null;
  let soonest = null;
  let atLimit = false;
  for (const item of card.querySelectorAll(".window:not([hidden])")) {
    if (item.dataset.used !== "") {
      const used = Number(item.dataset.used);
      maxUsed = maxUsed === null ? used : Math.max(maxUsed, used);
      if (used >= 100) atLimit = true;
    }
    const at = Number(item.querySelector(".countdown").dataset.resetAt || NaN);
    if (Number.isFinite(at) && at > current && (soonest === null || at < soonest)) soonest = at;
  }
  for (const section of card.querySelectorAll(".limit")) {
    const until = section.dataset.hitUntil;
    if (until === "unknown" || (until && Number(until) > current)) atLimit = true;
  }
  return { maxUsed, soonest, atLimit, title: card.dataset.title || "", id: Number(card.dataset.accountId) };
}

// -- rename and delete ------------------------------------------------------------------------

/** The cards' rename and delete buttons; `changed()` after a rename, `deleted(card, name)`
 * after a deletion the server confirmed. */
export function setupCardActions(ctx, { changed, deleted }) {
  const list = cardList();
  if (!list) return;
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const card = button.closest(".card");
    const action = button.dataset.action;
    if (action === "rename") openRename(card);
    else if (action === "cancel") closeRename(card);
    else if (action === "delete") confirmDelete(ctx, card, deleted);
  });
  list.addEventListener("submit", async (event) => {
    const form = event.target.closest(".rename-form");
    if (!form) return;
    event.preventDefault();
    const card = form.closest(".card");
    const value = form.elements.display_name.value.trim();
    const response = await callApi(ctx, "PATCH", "/accounts/" + card.dataset.accountId, { display_name: value || null });
    if (!response) return;
    const account = await response.json();
    closeRename(card);
    fillMeta(ctx, card, account);
    notice(ctx.t("renamed", { name: cardTitle(account) || ctx.t("card.unnamed") }));
    changed();
  });
  list.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && event.target.closest(".rename-form")) closeRename(event.target.closest(".card"));
  });
}

function openRename(card) {
  const form = field(card, "rename-form");
  form.hidden = false;
  const input = form.elements.display_name;
  input.focus();
  input.select();
}

function closeRename(card) {
  const form = field(card, "rename-form");
  form.hidden = true;
  form.elements.display_name.value = card.dataset.displayName; // a cancelled edit is dropped
  card.querySelector('button[data-action="rename"]').focus();
}

function confirmDelete(ctx, card, deleted) {
  const dialog = document.getElementById("delete-dialog");
  const name = card.dataset.title || ctx.t("card.unnamed");
  field(dialog, "delete-title").textContent = ctx.t("delete.title", { name });
  field(dialog, "delete-body").textContent = ctx.t("delete.body", { name });
  dialog.returnValue = "";
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "delete") {
      card.querySelector('button[data-action="delete"]')?.focus();
      return;
    }
    const response = await callApi(ctx, "DELETE", "/accounts/" + card.dataset.accountId);
    if (response) deleted(card, name);
  }, { once: true });
  dialog.showModal();
}
