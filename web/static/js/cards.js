// An account's card, filled from the feed: its limits, their windows, its one forecast line,
// freshness and the rename and delete actions. The structure is the server's (web/templates/macros.html):
// new windows, limits and cards are clones of its <template> copies.

import { isStale, percentNumber } from "./text.js";
import { activeHit, asOf, comesBack, level, resetPassed, seatFacts, urgentForecast, windowsOf } from "./windows.js";
import { callApi, clock, cloneTemplate, field, notice, setCountdown, tickCountdown, windowName } from "./page.js";

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

/** A window's facts: its used percent as it stands at `current` (reset once its reset time has
 * passed, core/windows.py as_of), its level, bar and countdown. */
function setWindow(ctx, item, used, resetsAt, current) {
  const reported = used === null || !Number.isFinite(used) ? null : used;
  const now = asOf(reported, resetsAt, current);
  const lvl = level(now.used, ctx.rules.levels);
  item.dataset.used = now.used === null ? "" : String(now.used);
  item.dataset.reportedUsed = reported === null ? "" : String(reported);
  item.dataset.resetInferred = String(now.resetInferred);
  item.className = "window level-" + lvl + (now.resetInferred ? " reset-inferred" : "");
  field(item, "level").textContent = ctx.t("level." + lvl);
  drawWindow(ctx, item);
  setCountdown(ctx, item.querySelector(".countdown"), resetsAt);
}

/** A window's forecast, kept for choosing the card's one forecast line. */
function setForecast(item, forecast) {
  const known = (value) => (value === null || value === undefined ? "" : String(value));
  item.dataset.forecastStatus = forecast ? forecast.status : "";
  item.dataset.exhaustsAt = forecast ? known(forecast.exhausts_at) : "";
  item.dataset.beforeReset = forecast ? known(forecast.runs_out_before_reset_seconds) : "";
}

const numberOr = (raw) => (raw === "" || raw === undefined ? null : Number(raw));

/** A window whose countdown has passed zero shows as reset (inferred), without a reload. */
function tickWindow(ctx, item, current) {
  const resetsAt = numberOr(item.querySelector(".countdown").dataset.resetAt);
  if (item.dataset.resetInferred === "true" || !resetPassed(resetsAt, current)) return;
  setWindow(ctx, item, numberOr(item.dataset.reportedUsed), resetsAt, current);
  setForecast(item, null);
}

/** A limit at `current`: its windows, "Limit reached, back at ..." while it is reached
 * (core/outlook.py comes_back), and how fresh its numbers are. */
function tickLimit(ctx, section, current) {
  for (const item of section.querySelectorAll(".window")) tickWindow(ctx, item, current);
  const until = section.dataset.hitUntil;
  const hitActive = until === "unknown" || (until !== "" && Number(until) > current);
  const windows = [...section.querySelectorAll(".window:not([hidden])")].map((item) => [
    numberOr(item.dataset.used),
    numberOr(item.querySelector(".countdown").dataset.resetAt),
  ]);
  const hitResetsAt = until === "unknown" ? null : numberOr(until);
  const back = comesBack(hitActive, hitResetsAt, windows, ctx.rules.full_percent);
  const line = field(section, "limit-hit");
  line.hidden = back === null;
  const countdown = line.querySelector(".countdown");
  countdown.dataset.resetAt = back === null || back.at === null ? "" : String(back.at);
  tickCountdown(ctx, countdown, current);
  tickFreshness(ctx, section, current);
}

/** The card's one forecast line (core/outlook.py urgent_forecast): the window that runs out
 * soonest before its reset, told in the limit it belongs to; none while a limit is reached. */
function tickForecastLine(ctx, card, current) {
  const sections = [...card.querySelectorAll(".limit")];
  const found = [];
  for (const section of sections) {
    const blocked = !field(section, "limit-hit").hidden;
    for (const item of section.querySelectorAll(".window:not([hidden])")) {
      const candidate = {
        used: numberOr(item.dataset.used),
        status: item.dataset.forecastStatus || null,
        exhaustsAt: numberOr(item.dataset.exhaustsAt),
        beforeReset: numberOr(item.dataset.beforeReset),
        blocked,
      };
      found.push({ section, item, candidate });
    }
  }
  const chosen = urgentForecast(found.map((f) => f.candidate), current, ctx.rules.full_percent);
  for (const section of sections) {
    const line = field(section, "forecast-line");
    if (!line) continue;
    const mine = chosen !== null && found[chosen].section === section;
    line.hidden = !mine;
    line.textContent = mine ? forecastText(ctx, found[chosen].item, current) : "";
  }
}

function forecastText(ctx, item, current) {
  return ctx.t("forecast.line", {
    window: windowName(ctx, item.dataset.window),
    time: clock(ctx, Number(item.dataset.exhaustsAt), current),
    duration: ctx.t.duration(Number(item.dataset.beforeReset)),
  });
}

/** Every card's windows, limit lines, forecast line and freshness at `current`. */
export function tickCards(ctx, current) {
  for (const card of cardList()?.querySelectorAll(".card") ?? []) tickCard(ctx, card, current);
}

function tickCard(ctx, card, current) {
  for (const section of card.querySelectorAll(".limit")) tickLimit(ctx, section, current);
  tickForecastLine(ctx, card, current);
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
  const current = ctx.now();
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
    setWindow(ctx, item, w.used, w.resetsAt, current);
    const told = w.used !== null && item.dataset.resetInferred !== "true";
    setForecast(item, told ? forecasts[w.label] || null : null);
    item.hidden = !w.shown;
  }
  for (const item of list.querySelectorAll(".window")) {
    if (!seen.has(item.dataset.window)) item.remove(); // another label the row no longer reports
  }
  fillExtras(ctx, section, row);
  const hit = activeHit(row, current);
  section.dataset.hitUntil = hit === null ? "" : (hit.resetsAt === null ? "unknown" : String(hit.resetsAt));
  const fresh = field(section, "fresh");
  fresh.hidden = false;
  fresh.dataset.confirmedAt = String(row.confirmed_at);
  const sourceKey = "source." + row.source;
  const source = ctx.t.has(sourceKey) ? ctx.t(sourceKey) : row.source;
  field(section, "source").textContent = ctx.t("fresh.via", { source });
  tickLimit(ctx, section, current);
}

/** One spend limit's line, as web/templates/macros.html `spend_limit` writes it: "Group spend
 * limit (Engineering): 82 of 100 · 82% · reached · resets Sat 12:00, in 1d 4h". */
export function spendLimitLine(ctx, limit, reached) {
  const line = document.createElement("li");
  line.className = "spend-limit" + (reached ? " reached" : "");
  let text = ctx.t("spend.kind." + limit.kind);
  if (limit.group_name) text += " (" + limit.group_name + ")";
  text += ":";
  if (limit.used !== null && limit.limit !== null) text += " " + ctx.t("spend.amount", { used: limit.used, limit: limit.limit });
  if (limit.used_percent !== null) text += " · " + percentNumber(limit.used_percent) + "%";
  line.append(text);
  if (reached) {
    const mark = document.createElement("strong");
    mark.textContent = ctx.t("spend.reached");
    line.append(" · ", mark);
  }
  if (limit.resets_at !== null && limit.resets_at !== undefined) {
    const countdown = document.createElement("span");
    countdown.className = "countdown";
    countdown.dataset.running = "window.resets_at";
    countdown.dataset.done = "spend.reset_passed";
    line.append(" · ", countdown);
    setCountdown(ctx, countdown, limit.resets_at);
  }
  return line;
}

/** A limit's spend limits, reset credits and promotion, from a usage event's history item; only
 * the main limit's row has them (core/limits.py report_limit_id). Reset credits not reported say
 * nothing: unknown is not 0. */
function fillExtras(ctx, section, row) {
  const list = field(section, "spend-limits");
  const spend = row.spend_control;
  const limits = spend && spend.limits ? spend.limits.filter((item) => ctx.t.has("spend.kind." + item.kind)) : [];
  list.replaceChildren(...limits.map((item) => spendLimitLine(ctx, item, item.kind === spend.reached_limit_type)));
  list.hidden = limits.length === 0;
  const credits = field(section, "reset-credits");
  credits.hidden = row.reset_credits === null || row.reset_credits === undefined;
  credits.textContent = credits.hidden ? "" : ctx.t("card.reset_credits", { count: row.reset_credits });
  const promo = field(section, "promo");
  promo.hidden = !row.promo_message;
  promo.textContent = row.promo_message || "";
}

/** How fresh a limit's numbers are: "updated 3m ago"; an account without recent traffic is idle,
 * not broken: "last report 2h ago". */
export function tickFreshness(ctx, section, current) {
  const fresh = field(section, "fresh");
  if (!fresh || fresh.dataset.confirmedAt === "") return;
  const age = Math.max(0, current - Number(fresh.dataset.confirmedAt));
  const stale = isStale(age, ctx.rules.stale_after_seconds);
  const ageText = field(section, "age");
  if (age < ctx.rules.just_now_seconds) ageText.textContent = ctx.t("fresh.just_now");
  else ageText.textContent = ctx.t(stale ? "fresh.last_report" : "fresh.updated", { age: ctx.t.duration(age) });
  if (stale) ageText.title = ctx.t("fresh.idle_hint");
  else ageText.removeAttribute("title");
  section.classList.toggle("stale", stale);
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
  tickForecastLine(ctx, card, ctx.now());
  field(card, "no-data").hidden = true;
}

// -- the card's account -----------------------------------------------------------------------

export function cardList() {
  return document.getElementById("cards");
}

export function findCard(accountId) {
  return cardList()?.querySelector('.card[data-account-id="' + CSS.escape(String(accountId)) + '"]') || null;
}

/** What the page calls an account: as core/accounts.py account_title, in the page's language. */
export function cardTitle(account, t) {
  return account.display_name || account.email || t("card.default_title", { id: account.id });
}

export function fillMeta(ctx, card, account) {
  const named = account.display_name || account.email || "";
  card.dataset.title = named; // sorting puts accounts nobody named last, as the server does
  card.dataset.displayName = account.display_name || "";
  const titleElement = field(card, "title");
  titleElement.textContent = cardTitle(account, ctx.t);
  titleElement.classList.toggle("unnamed", !named);
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
  for (const described of card.querySelectorAll("[aria-describedby]")) {
    described.setAttribute("aria-describedby", "card-title-" + account.id);
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

/** What the summary and the sorting need of a card, as it shows at `current`: whether the seat
 * is at its limit and its highest used percent, by its deciding limits only (windows.js
 * seatFacts: the main limit, `mainLimit`, when the card shows one); the soonest reset of any. */
export function cardFacts(card, current, mainLimit, fullPercent) {
  let soonest = null;
  const limits = [...card.querySelectorAll(".limit")].map((section) => {
    const windows = [...section.querySelectorAll(".window:not([hidden])")].map((item) => {
      const resetsAt = numberOr(item.querySelector(".countdown").dataset.resetAt);
      if (resetsAt !== null && resetsAt > current && (soonest === null || resetsAt < soonest)) soonest = resetsAt;
      return [numberOr(item.dataset.reportedUsed), resetsAt];
    });
    const until = section.dataset.hitUntil;
    const hit = until === "" || until === undefined ? null : { resetsAt: until === "unknown" ? null : Number(until) };
    return { limitId: section.dataset.limitId, hit, windows };
  });
  const { atLimit, maxUsed } = seatFacts(limits, current, mainLimit, fullPercent);
  return { maxUsed, soonest, atLimit, title: card.dataset.title || "", id: Number(card.dataset.accountId) };
}

// -- the card menu: rename, refresh now, delete ----------------------------------------------

// An account's element: an overview or account-page card, or a row of the Manage accounts view.
const ITEM = "[data-account-id]";

/** Where focus goes back to after an action: the card's menu button, else the action's own. */
function actionFocus(card, action) {
  const menu = field(card, "menu");
  return menu ? menu.querySelector("summary") : card.querySelector('button[data-action="' + action + '"]');
}

function closeMenus(except) {
  for (const menu of document.querySelectorAll('details[data-field="menu"][open]')) {
    if (menu !== except) menu.open = false;
  }
}

/** "Refresh now" is offered only when the account's JSON says a refresh can be made now
 * (`refresh.available`, from GET accounts/{id}); read when the menu opens, so it is current. */
async function offerRefresh(ctx, card) {
  const button = card.querySelector('button[data-action="refresh"]');
  if (!button) return;
  let account = null;
  try {
    account = await fetchAccount(ctx, card.dataset.accountId);
  } catch {
    account = null;
  }
  button.hidden = !(account && account.refresh && account.refresh.available === true);
  if (account && account.refresh) showRefreshStopped(ctx, card, account.refresh);
}

/** The card's line saying why the idle refresh stopped, from the account's `refresh` JSON. */
function showRefreshStopped(ctx, card, refresh) {
  const line = field(card, "refresh-stopped");
  if (!line) return;
  const stopped = refresh.state === "stopped" && refresh.stopped_reason;
  line.textContent = stopped ? ctx.t("refresh.stopped." + refresh.stopped_reason) : "";
  line.hidden = !stopped;
}

// What the notice says after "Refresh now", by the answer's `result` (a stop shows on the card).
const REFRESH_NOTICES = { ok: "card.refresh_done", failed: "card.refresh_failed", no_token: "card.refresh_no_token" };

async function refreshNow(ctx, card) {
  const button = card.querySelector('button[data-action="refresh"]');
  button.disabled = true;
  try {
    const response = await callApi(ctx, "POST", "/accounts/" + encodeURIComponent(card.dataset.accountId) + "/refresh");
    if (!response) return;
    const answer = await response.json();
    if (answer.refresh) showRefreshStopped(ctx, card, answer.refresh);
    const key = REFRESH_NOTICES[answer.result];
    if (key) notice(ctx.t(key, { name: field(card, "title").textContent }));
  } finally {
    button.disabled = false;
  }
}

/** The rename, refresh and delete actions of the accounts in `list` (the cards by default);
 * `changed()` after a rename, `deleted(card, name)` after a deletion the server confirmed. */
export function setupCardActions(ctx, { changed, deleted, list = cardList() }) {
  if (!list) return;
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const card = button.closest(ITEM);
    const action = button.dataset.action;
    const menu = button.closest('details[data-field="menu"]');
    if (menu) menu.open = false;
    if (action === "rename") openRename(card);
    else if (action === "cancel") closeRename(card);
    else if (action === "delete") confirmDelete(ctx, card, deleted);
    else if (action === "refresh") refreshNow(ctx, card);
  });
  // A menu's "toggle" does not bubble: listen while it goes down.
  list.addEventListener("toggle", (event) => {
    const menu = event.target;
    if (!(menu instanceof HTMLDetailsElement) || menu.dataset.field !== "menu" || !menu.open) return;
    closeMenus(menu);
    offerRefresh(ctx, menu.closest(ITEM));
  }, true);
  document.addEventListener("click", (event) => {
    if (!event.target.closest('details[data-field="menu"]')) closeMenus(null);
  });
  list.addEventListener("submit", async (event) => {
    const form = event.target.closest(".rename-form");
    if (!form) return;
    event.preventDefault();
    const card = form.closest(ITEM);
    const value = form.elements.display_name.value.trim();
    const response = await callApi(ctx, "PATCH", "/accounts/" + card.dataset.accountId, { display_name: value || null });
    if (!response) return;
    const account = await response.json();
    closeRename(card);
    fillMeta(ctx, card, account);
    notice(ctx.t("renamed", { name: cardTitle(account, ctx.t) }));
    changed();
  });
  list.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    if (event.target.closest(".rename-form")) {
      closeRename(event.target.closest(ITEM));
      return;
    }
    const menu = event.target.closest('details[data-field="menu"]');
    if (menu && menu.open) {
      menu.open = false;
      menu.querySelector("summary").focus();
    }
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
  actionFocus(card, "rename")?.focus();
}

function confirmDelete(ctx, card, deleted) {
  const dialog = document.getElementById("delete-dialog");
  const name = field(card, "title").textContent;
  field(dialog, "delete-title").textContent = ctx.t("delete.title", { name });
  field(dialog, "delete-body").textContent = ctx.t("delete.body", { name });
  dialog.returnValue = "";
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "delete") {
      actionFocus(card, "delete")?.focus();
      return;
    }
    const response = await callApi(ctx, "DELETE", "/accounts/" + card.dataset.accountId);
    if (response) deleted(card, name);
  }, { once: true });
  dialog.showModal();
}

/** Mark the account to use next (core/use_next.py, as the server answered); null: none. */
export function markUseNext(accountId) {
  for (const card of document.querySelectorAll(".card")) {
    const chosen = accountId !== null && card.dataset.accountId === String(accountId);
    const badge = field(card, "use-next");
    if (badge) badge.hidden = !chosen;
  }
}
