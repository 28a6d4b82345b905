// codexgate dashboard: keeps the server-rendered page live from the admin feed (SSE), ticks the
// countdowns, and manages accounts through the JSON API. Every value goes into the page with
// textContent or an attribute, never as markup. The rules for windows and levels are the same as
// codexgate/views.py's.
"use strict";

(() => {
  const dataElement = document.getElementById("page-data");
  if (!dataElement) return;
  const page = JSON.parse(dataElement.textContent);
  const messages = page.messages;
  const base = "/" + page.prefix;
  const api = base + "/api/v1";
  // The server's clock, so countdowns agree with it even when this machine's clock is off.
  const skewMs = page.server_now * 1000 - Date.now();
  const now = () => (Date.now() + skewMs) / 1000;

  const FIXED = ["5h", "7d", "monthly"];
  const ALWAYS_SHOWN = ["5h", "7d"];
  const MAIN_LIMIT = "codex";
  const SOURCES = ["headers", "event", "usage_body", "error"];
  const storage = {
    get(key) { try { return window.localStorage.getItem("codexgate." + key); } catch { return null; } },
    set(key, value) { try { window.localStorage.setItem("codexgate." + key, value); } catch { /* private mode */ } },
  };

  // -- text -----------------------------------------------------------------------------------

  function t(key, fields) {
    let text = Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : key;
    if (fields) {
      for (const [name, value] of Object.entries(fields)) text = text.split("{" + name + "}").join(String(value));
    }
    return text;
  }

  function duration(seconds) {
    let rest = Math.max(0, Math.floor(seconds));
    const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]].map(([unit, size]) => {
      const n = Math.floor(rest / size);
      rest -= n * size;
      return [unit, n];
    });
    let first = units.findIndex(([, n]) => n > 0);
    if (first < 0) first = units.length - 1;
    const shown = [units[first]];
    if (first < units.length - 1 && units[first + 1][1] > 0) shown.push(units[first + 1]);
    return shown.map(([unit, n]) => t("duration." + unit, { n })).join(t("duration.join"));
  }

  function percentText(value) {
    const rounded = Math.round(value * 10) / 10;
    return Number.isInteger(rounded) ? rounded.toFixed(0) : rounded.toFixed(1);
  }

  function level(used) {
    if (used === null || !Number.isFinite(used)) return "unknown";
    if (used >= 100) return "full";
    if (used >= page.thresholds.critical) return "critical";
    if (used >= page.thresholds.warn) return "warn";
    return "ok";
  }

  const timeFormats = {
    time: { hour: "2-digit", minute: "2-digit" },
    date: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" },
    datetime: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" },
  };
  function localTime(at, format) {
    try {
      return new Intl.DateTimeFormat(page.lang, timeFormats[format] || timeFormats.datetime).format(new Date(at * 1000));
    } catch {
      return new Date(at * 1000).toISOString();
    }
  }
  function localizeTimes(root) {
    for (const element of root.querySelectorAll("[data-at]")) {
      const at = Number(element.dataset.at);
      if (element.dataset.at !== "" && Number.isFinite(at)) element.textContent = localTime(at, element.dataset.format);
    }
  }

  function field(root, name) {
    return root.querySelector('[data-field="' + name + '"]');
  }

  // -- messages in the page -------------------------------------------------------------------

  function notice(text) {
    const box = document.getElementById("notices");
    if (!box) return;
    const line = document.createElement("p");
    line.textContent = text;
    box.replaceChildren(line);
  }

  function showError(text, withSignIn) {
    const box = document.getElementById("errors");
    if (!box) return;
    const line = document.createElement("p");
    line.textContent = text + " ";
    if (withSignIn) {
      const link = document.createElement("a");
      link.href = base + "/login?next=" + encodeURIComponent(location.pathname + location.search);
      link.textContent = t("title.sign_in");
      line.append(link);
    }
    box.replaceChildren(line);
  }

  function clearErrors() {
    const box = document.getElementById("errors");
    if (box) box.replaceChildren();
  }

  // -- windows, limits and cards --------------------------------------------------------------

  let view = page.view;

  function setCountdown(element, at) {
    element.dataset.resetAt = at === null || at === undefined ? "" : String(at);
    tickCountdown(element, now());
  }

  function tickCountdown(element, current) {
    if (element.hidden) return;
    if (element.dataset.resetAt === "") {
      element.textContent = t("window.reset_unknown");
      return;
    }
    const at = Number(element.dataset.resetAt);
    element.textContent = at > current
      ? t(element.dataset.running, { duration: duration(at - current) })
      : t(element.dataset.done);
  }

  function drawWindow(item) {
    const raw = item.dataset.used;
    const used = raw === "" ? null : Number(raw);
    const pct = field(item, "pct");
    const fill = item.querySelector(".fill");
    if (used === null) {
      pct.textContent = t("window.unknown");
      fill.setAttribute("width", "0");
      return;
    }
    const left = Math.min(100, Math.max(0, 100 - used));
    const shown = view === "remaining" ? left : Math.min(100, Math.max(0, used));
    pct.textContent = view === "remaining"
      ? t("window.left", { percent: percentText(left) })
      : t("window.used", { percent: percentText(used) });
    fill.setAttribute("width", String(Math.round(shown * 100) / 100));
  }

  function fillForecast(item, forecast) {
    const box = field(item, "forecast");
    if (!box) return;
    if (!forecast) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const runsOut = forecast.status === "runs_out" && forecast.exhausts_at !== null;
    box.classList.toggle("forecast-runs-out", runsOut);
    const countdown = field(box, "forecast-countdown");
    countdown.hidden = !runsOut;
    setCountdown(countdown, runsOut ? forecast.exhausts_at : null);
    const parts = [];
    if (runsOut && forecast.runs_out_before_reset_seconds) {
      parts.push(t("forecast.before_reset", { duration: duration(forecast.runs_out_before_reset_seconds) }));
    } else if (forecast.status === "lasts") {
      parts.push(t("forecast.lasts"));
    } else if (forecast.status === "idle") {
      parts.push(t("forecast.idle"));
    } else if (forecast.status === "insufficient_data") {
      parts.push(t("forecast.insufficient"));
    }
    if (forecast.rate_per_hour !== null && (forecast.status === "runs_out" || forecast.status === "lasts")) {
      parts.push(t("forecast.separator") + t("forecast.pace", { rate: percentText(forecast.rate_per_hour) }));
      if (forecast.sustainable_rate_per_hour !== null) {
        parts.push(t("forecast.separator") + t("forecast.sustainable", { rate: percentText(forecast.sustainable_rate_per_hour) }));
      }
    }
    field(box, "forecast-text").textContent = parts.join("");
  }

  function setWindow(item, used, resetsAt) {
    const value = used === null || used === undefined || !Number.isFinite(Number(used)) ? null : Number(used);
    const lvl = level(value);
    item.dataset.used = value === null ? "" : String(value);
    item.className = "window level-" + lvl;
    field(item, "level").textContent = t("level." + lvl);
    drawWindow(item);
    setCountdown(item.querySelector(".countdown"), resetsAt);
  }

  function cloneTemplate(id) {
    const template = document.getElementById(id);
    return template.content.firstElementChild.cloneNode(true);
  }

  function windowsOf(row) {
    const result = [
      { key: "5h", used: row.five_hour_used_percent, resetsAt: row.five_hour_resets_at },
      { key: "7d", used: row.seven_day_used_percent, resetsAt: row.seven_day_resets_at },
      { key: "monthly", used: row.monthly_used_percent, resetsAt: row.monthly_resets_at },
    ];
    const slots = [
      [row.primary_window, row.primary_used_percent, row.primary_resets_at],
      [row.secondary_window, row.secondary_used_percent, row.secondary_resets_at],
    ];
    for (const [label, used, resetsAt] of slots) {
      if (label && !FIXED.includes(label) && (used !== null || resetsAt)) result.push({ key: label, used, resetsAt });
    }
    return result;
  }

  function fillLimit(section, row, forecasts) {
    const limitName = field(section, "limit-name");
    if (row.limit_id === MAIN_LIMIT) {
      limitName.hidden = true;
    } else {
      limitName.textContent = t("limit.extra", { name: row.limit_name || row.limit_id });
      limitName.hidden = false;
    }
    const list = section.querySelector(".windows");
    const seen = new Set();
    for (const w of windowsOf(row)) {
      seen.add(w.key);
      let item = list.querySelector('[data-window="' + CSS.escape(w.key) + '"]');
      if (!item) {
        item = cloneTemplate("window-template");
        item.dataset.window = w.key;
        field(item, "window-name").textContent = w.key;
        list.append(item);
      }
      setWindow(item, w.used, w.resetsAt);
      fillForecast(item, w.used === null ? null : (forecasts || {})[w.key] || null);
      item.hidden = !(ALWAYS_SHOWN.includes(w.key) || w.used !== null || w.resetsAt !== null);
    }
    for (const item of list.querySelectorAll(".window")) {
      if (!seen.has(item.dataset.window)) {
        if (FIXED.includes(item.dataset.window)) {
          setWindow(item, null, null);
          fillForecast(item, null);
          item.hidden = !ALWAYS_SHOWN.includes(item.dataset.window);
        } else {
          item.remove();
        }
      }
    }
    const hit = field(section, "limit-hit");
    const hitActive = row.limit_hit_type !== null
      && (row.limit_hit_resets_at === null || row.limit_hit_resets_at > now());
    hit.hidden = !hitActive;
    section.dataset.hitUntil = hitActive ? (row.limit_hit_resets_at === null ? "unknown" : String(row.limit_hit_resets_at)) : "";
    setCountdown(hit.querySelector(".countdown"), hitActive ? row.limit_hit_resets_at : null);
    const fresh = field(section, "fresh");
    fresh.hidden = false;
    fresh.dataset.confirmedAt = String(row.confirmed_at);
    const source = SOURCES.includes(row.source) ? t("source." + row.source) : row.source;
    field(section, "source").textContent = t("fresh.via", { source });
    tickFreshness(section, now());
  }

  function tickFreshness(section, current) {
    const fresh = field(section, "fresh");
    if (!fresh || fresh.dataset.confirmedAt === "") return;
    const age = Math.max(0, current - Number(fresh.dataset.confirmedAt));
    field(section, "age").textContent = age < 5 ? t("fresh.just_now") : t("fresh.updated", { age: duration(age) });
    const stale = age > page.stale_after;
    section.classList.toggle("stale", stale);
    field(section, "stale").hidden = !stale;
  }

  function cards() {
    return document.getElementById("cards");
  }

  function findCard(accountId) {
    return cards()?.querySelector('.card[data-account-id="' + CSS.escape(String(accountId)) + '"]') || null;
  }

  function cardTitle(account) {
    return account.display_name || account.email || null;
  }

  function fillMeta(card, account) {
    const title = cardTitle(account);
    card.dataset.title = title || "";
    card.dataset.displayName = account.display_name || "";
    const titleElement = field(card, "title");
    titleElement.textContent = title || t("card.unnamed");
    titleElement.classList.toggle("unnamed", !title);
    const email = field(card, "email");
    email.textContent = account.email || "";
    email.hidden = !(account.display_name && account.email); // else the title already is the email
    field(card, "plan").textContent = account.plan_type || t("window.unknown");
    const input = card.querySelector('input[name="display_name"]');
    if (input && field(card, "rename-form").hidden) input.value = account.display_name || "";
  }

  function createCard(account) {
    const card = cloneTemplate("card-template");
    card.dataset.accountId = String(account.id);
    field(card, "title").id = "card-title-" + account.id;
    for (const button of card.querySelectorAll("button[aria-describedby]")) {
      button.setAttribute("aria-describedby", "card-title-" + account.id);
    }
    for (const name of ["title-link", "history-link"]) {
      const link = field(card, name);
      if (link) link.href = base + "/accounts/" + encodeURIComponent(String(account.id));
    }
    fillMeta(card, account);
    cards().append(card);
    document.getElementById("no-accounts")?.setAttribute("hidden", "");
    return card;
  }

  async function fetchAccount(accountId) {
    const response = await fetch(api + "/accounts/" + encodeURIComponent(String(accountId)), { credentials: "same-origin" });
    return response.ok ? response.json() : null;
  }

  // The overview shows one page of accounts: a card is added only for an account created after
  // the page was built, and only on the last page while it has room. Other accounts' events
  // change the summary's counts at most.
  const accountsPage = page.accounts_page || null;
  const createdSince = new Set();
  const deletedSince = new Set();

  function hasRoomFor(accountId) {
    if (page.page !== "overview" || !accountsPage) return false;
    if (accountId <= accountsPage.max_account_id && !createdSince.has(accountId)) return false;
    if (accountsPage.page < accountsPage.pages) return false;
    return cards().querySelectorAll(".card").length < accountsPage.size;
  }

  function ensureCard(accountId) {
    let card = findCard(accountId);
    if (card || !hasRoomFor(accountId)) return card;
    card = createCard({ id: accountId, display_name: null, email: null, plan_type: null });
    fetchAccount(accountId).then((account) => { if (account && card.isConnected) fillMeta(card, account); }, () => {});
    return card;
  }

  function applyUsage(payload) {
    if (page.page === "account" && payload.account_id !== page.account_id) return;
    const card = ensureCard(payload.account_id);
    if (!card) return;
    const row = payload.row;
    const limits = field(card, "limits");
    let section = limits.querySelector('.limit[data-limit-id="' + CSS.escape(row.limit_id) + '"]');
    if (!section) {
      section = cloneTemplate("limit-template");
      section.dataset.limitId = row.limit_id;
      limits.append(section);
    }
    fillLimit(section, row, payload.forecasts);
    field(card, "no-data").hidden = true;
    afterChange();
  }

  function applyAccount(payload) {
    if (page.page === "account" && payload.id !== page.account_id) return;
    if (payload.kind === "deleted") {
      noteDeleted(payload.id);
      findCard(payload.id)?.remove();
      if (page.page === "account") {
        location.assign(base + "/");
        return;
      }
      const list = cards();
      if (list && !list.querySelector(".card")) document.getElementById("no-accounts")?.removeAttribute("hidden");
    } else if (payload.account) {
      if (payload.kind === "created") noteCreated(payload.id);
      const card = findCard(payload.id) || (hasRoomFor(payload.id) ? createCard(payload.account) : null);
      if (card) fillMeta(card, payload.account);
    }
    afterChange();
  }

  function alertText(alert) {
    const who = alert.account || t("card.unnamed");
    const windowName = alert.window ? (FIXED.includes(alert.window) ? t("window." + alert.window) : alert.window) : "";
    const fields = { account: who, window: windowName };
    if (alert.used_percent !== null) fields.percent = percentText(alert.used_percent);
    if (alert.threshold !== null) fields.threshold = percentText(alert.threshold);
    const keys = {
      threshold: "alert.threshold",
      forecast: "alert.forecast",
      limit_hit: "alert.limit_hit",
      limit_reset: "alert.limit_reset",
      stale: "alert.stale",
    };
    return t(keys[alert.kind] || "alert.test", fields);
  }

  function applyAlert(alert) {
    const list = document.getElementById("alert-list");
    if (!list || list.querySelector('[data-alert-id="' + CSS.escape(String(alert.id)) + '"]')) return;
    const item = cloneTemplate("alert-template");
    item.dataset.alertId = String(alert.id);
    item.className = "alert alert-" + alert.kind;
    const when = field(item, "alert-time");
    when.dateTime = new Date(alert.at * 1000).toISOString();
    when.dataset.at = String(alert.at);
    when.textContent = localTime(alert.at, "datetime");
    field(item, "alert-text").textContent = alertText(alert);
    list.prepend(item);
    while (list.children.length > 8) list.lastElementChild.remove();
    document.getElementById("no-alerts").hidden = true;
  }

  // -- the summary strip and sorting ----------------------------------------------------------

  function cardFacts(card, current) {
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

  function noteCreated(accountId) {
    if (accountsPage && accountId > accountsPage.max_account_id) createdSince.add(accountId);
  }

  function noteDeleted(accountId) {
    deletedSince.add(accountId);
    createdSince.delete(accountId);
  }

  // The server counted every account when it built the page; each card's facts as they were
  // then are taken out again and its current ones put in, so the page's own changes show.
  const baseline = new Map();

  function takeBaseline(current) {
    for (const card of cards()?.querySelectorAll(".card") || []) baseline.set(card.dataset.accountId, cardFacts(card, current));
  }

  function nearLimit(facts) {
    return !facts.atLimit && facts.maxUsed !== null && facts.maxUsed >= page.thresholds.critical;
  }

  function updateSummary(current) {
    const total = document.getElementById("kpi-accounts");
    if (!total || !accountsPage) return;
    const shown = [...cards().querySelectorAll(".card")].map((card) => cardFacts(card, current));
    let near = accountsPage.near_limit;
    let at = accountsPage.at_limit;
    for (const facts of shown) {
      near += nearLimit(facts) ? 1 : 0;
      at += facts.atLimit ? 1 : 0;
    }
    for (const facts of baseline.values()) {
      near -= nearLimit(facts) ? 1 : 0;
      at -= facts.atLimit ? 1 : 0;
    }
    const removed = [...deletedSince].filter((id) => id <= accountsPage.max_account_id).length;
    total.textContent = String(Math.max(0, accountsPage.accounts + createdSince.size - removed));
    document.getElementById("kpi-at").textContent = String(Math.max(0, at));
    document.getElementById("kpi-near").textContent = String(Math.max(0, near));
    // The soonest of this page's cards, and of the server's list for the other accounts.
    let soonest = null;
    for (const facts of shown) {
      if (facts.soonest !== null && (soonest === null || facts.soonest < soonest.soonest)) soonest = facts;
    }
    // With one page, its cards are every account; else the server's list covers the others.
    const onPage = new Set(shown.map((facts) => facts.id));
    const listed = paged()
      ? accountsPage.resets.find(([resetAt, id]) => resetAt > current && !onPage.has(id) && !deletedSince.has(id))
      : undefined;
    if (listed && (soonest === null || listed[0] < soonest.soonest)) soonest = { soonest: listed[0], title: listed[2] || "" };
    const unknown = paged() && !listed && !accountsPage.resets_complete;
    const slot = document.getElementById("kpi-soonest");
    const who = document.getElementById("kpi-soonest-account");
    if (soonest === null || unknown) {
      // Every reset the server listed has passed: the next one may be on a page not shown here.
      slot.textContent = t(unknown ? "summary.reload" : "summary.none");
      who.textContent = "";
      return;
    }
    let countdown = slot.querySelector(".countdown");
    if (!countdown) {
      countdown = document.createElement("span");
      countdown.className = "countdown";
      countdown.dataset.running = "window.resets_in";
      countdown.dataset.done = "window.resetting";
      slot.replaceChildren(countdown);
    }
    setCountdown(countdown, soonest.soonest);
    who.textContent = soonest.title || t("card.unnamed");
  }

  let sort = page.sort;

  function sortCards() {
    const list = cards();
    if (!list || page.page !== "overview") return;
    const current = now();
    const facts = new Map([...list.querySelectorAll(".card")].map((card) => [card, cardFacts(card, current)]));
    const byName = (a, b) => {
      if (!a.title !== !b.title) return a.title ? -1 : 1;
      return a.title.localeCompare(b.title, page.lang, { sensitivity: "base" }) || a.id - b.id;
    };
    const unknownLast = (x, y) => (x === null) - (y === null);
    const order = [...facts.entries()].sort(([, a], [, b]) => {
      if (sort === "used") return unknownLast(a.maxUsed, b.maxUsed) || (b.maxUsed ?? 0) - (a.maxUsed ?? 0) || byName(a, b);
      if (sort === "reset") return unknownLast(a.soonest, b.soonest) || (a.soonest ?? 0) - (b.soonest ?? 0) || byName(a, b);
      return byName(a, b);
    });
    const focused = document.activeElement;
    order.forEach(([card], index) => {
      if (list.children[index] !== card) list.insertBefore(card, list.children[index] || null);
    });
    if (focused instanceof HTMLElement && focused !== document.activeElement) focused.focus();
  }

  function afterChange() {
    updateSummary(now());
    sortCards();
  }

  function paged() {
    return Boolean(accountsPage && accountsPage.pages > 1);
  }

  function pageUrl(number, sortBy) {
    const url = new URL(location.href);
    url.searchParams.set("page", String(number));
    url.searchParams.set("sort", sortBy);
    url.searchParams.set("view", view);
    return url.pathname + url.search;
  }

  function rememberInUrl(name, value) {
    const url = new URL(location.href);
    url.searchParams.set(name, value);
    history.replaceState(null, "", url);
  }

  function setupControls() {
    const form = document.getElementById("view-form");
    if (!form) return;
    const params = new URL(location.href).searchParams;
    const savedView = storage.get("view");
    if (!params.has("view") && (savedView === "used" || savedView === "remaining")) view = savedView;
    const savedSort = storage.get("sort");
    if (!params.has("sort") && ["name", "used", "reset"].includes(savedSort)) {
      if (paged() && savedSort !== sort) {
        location.replace(pageUrl(1, savedSort));
        return;
      }
      sort = savedSort;
    }
    for (const radio of form.querySelectorAll('input[name="view"]')) radio.checked = radio.value === view;
    const select = document.getElementById("sort-select");
    select.value = sort;
    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("change", (event) => {
      const target = event.target;
      if (target.name === "view") {
        view = target.value;
        storage.set("view", view);
        rememberInUrl("view", view);
        for (const link of document.querySelectorAll("a[data-page-link], a[data-view-link]")) {
          const url = new URL(link.href);
          url.searchParams.set("view", view);
          link.href = url.pathname + url.search;
        }
        for (const item of document.querySelectorAll("#cards .window")) drawWindow(item);
      } else if (target.name === "sort") {
        sort = target.value;
        storage.set("sort", sort);
        if (paged()) {
          location.assign(pageUrl(1, sort));
          return;
        }
        rememberInUrl("sort", sort);
        sortCards();
      }
    });
    for (const item of document.querySelectorAll("#cards .window")) drawWindow(item);
    sortCards();
  }

  // -- requests: the summary's sparklines and the account's table ------------------------------

  function sparklinePoints(values, width, height) {
    const cleaned = values.map((v) => (v > 0 && Number.isFinite(v) ? v : 0));
    if (cleaned.length === 0) return "";
    const maximum = Math.max(...cleaned);
    const ys = cleaned.map((v) => height - 1 - (maximum ? (v / maximum) * (height - 2) : 0));
    const num = (x) => String(Math.round(x * 10) / 10);
    if (ys.length === 1) return "0," + num(ys[0]) + " " + num(width) + "," + num(ys[0]);
    const step = width / (ys.length - 1);
    return ys.map((y, i) => num(i * step) + "," + num(y)).join(" ");
  }

  function addToActivity(row) {
    const activity = page.activity;
    if (!activity) return;
    let index = Math.floor((row.started_at - activity.since) / activity.bucket);
    while (index >= activity.requests.length) {
      activity.requests.shift();
      activity.tokens.shift();
      activity.requests.push(0);
      activity.tokens.push(0);
      activity.since += activity.bucket;
      index -= 1;
    }
    if (index < 0) return;
    activity.requests[index] += 1;
    activity.tokens[index] += row.total_tokens || 0;
    const sum = (values) => values.reduce((a, b) => a + b, 0);
    document.getElementById("kpi-requests").textContent = String(sum(activity.requests));
    document.getElementById("kpi-tokens").textContent = String(sum(activity.tokens));
    document.getElementById("spark-requests").setAttribute("points", sparklinePoints(activity.requests, 100, 24));
    document.getElementById("spark-tokens").setAttribute("points", sparklinePoints(activity.tokens, 100, 24));
  }

  function cell(text, className, labelKey) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    if (labelKey) td.dataset.label = t(labelKey); // shown before the value on a phone
    return td;
  }

  function addRequestRow(row) {
    const body = document.getElementById("requests-body");
    if (!body || !page.live_requests || row.account_id !== page.account_id) return;
    if (body.querySelector('[data-request-id="' + CSS.escape(String(row.id)) + '"]')) return;
    const tr = document.createElement("tr");
    tr.dataset.requestId = String(row.id);
    tr.className = "fresh-row";
    const when = document.createElement("time");
    when.dateTime = new Date(row.started_at * 1000).toISOString();
    when.textContent = localTime(row.started_at, "datetime");
    const timeCell = document.createElement("td");
    timeCell.append(when);
    const status = row.status === null ? "—" : String(row.status);
    tr.append(
      timeCell,
      cell(row.model || "—", "", "requests.model"),
      cell(
        row.error_code ? status + " · " + row.error_code : status,
        "status-" + (row.status ? Math.floor(row.status / 100) : 0),
        "requests.status",
      ),
      cell(row.total_tokens === null ? "—" : String(row.total_tokens), "num", "requests.tokens"),
      cell(row.ttfb_ms === null ? "—" : t("requests.ms", { n: Math.round(row.ttfb_ms) }), "num", "requests.ttfb"),
      cell(row.transport, "col-transport", "requests.transport"),
    );
    body.prepend(tr);
    while (body.children.length > page.requests_page) body.lastElementChild.remove();
    document.getElementById("requests-table").hidden = false;
    document.getElementById("no-requests").hidden = true;
  }

  function applyRequest(row) {
    if (page.page === "overview") addToActivity(row);
    else addRequestRow(row);
  }

  // -- the live feed --------------------------------------------------------------------------

  function setLive(state) {
    const status = document.getElementById("live-status");
    if (!status) return;
    status.dataset.state = state;
    field(status, "live-text").textContent = t("live." + state);
  }

  let lastEventId = page.cursor;
  let source = null;

  function handle(kind, apply) {
    return (event) => {
      lastEventId = event.lastEventId || lastEventId;
      let payload;
      try {
        payload = JSON.parse(event.data);
      } catch {
        return;
      }
      apply(payload);
    };
  }

  function connect() {
    setLive(source ? "reconnecting" : "connecting");
    // The first connection starts from the position the page was built at; the browser sends
    // Last-Event-ID itself when it reconnects, and that wins over the query.
    source = new EventSource(api + "/events?last_event_id=" + encodeURIComponent(lastEventId));
    source.addEventListener("open", () => {
      setLive("live");
      clearErrors();
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (the session ended, the server is restarting): try again with our position.
        setLive("reconnecting");
        source.close();
        window.setTimeout(checkSessionAndReconnect, 3000);
      } else {
        setLive("reconnecting");
      }
    });
    source.addEventListener("usage", handle("usage", applyUsage));
    source.addEventListener("request", handle("request", applyRequest));
    source.addEventListener("account", handle("account", applyAccount));
    source.addEventListener("alert", handle("alert", applyAlert));
  }

  async function checkSessionAndReconnect() {
    try {
      const response = await fetch(api + "/accounts?limit=1", { credentials: "same-origin", method: "HEAD" });
      if (response.status === 401) {
        setLive("static");
        showError(t("error.session"), true);
        return;
      }
    } catch {
      // Still unreachable: keep trying.
    }
    connect();
  }

  // -- managing accounts ----------------------------------------------------------------------

  async function callApi(method, path, body) {
    let response;
    try {
      response = await fetch(api + path, {
        method,
        credentials: "same-origin",
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      showError(t("error.network"));
      return null;
    }
    if (response.status === 401) {
      showError(t("error.session"), true);
      return null;
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        const answer = await response.json();
        if (answer && answer.error && answer.error.message) message = answer.error.message;
      } catch { /* not JSON */ }
      showError(t("error.api", { message }));
      return null;
    }
    clearErrors();
    return response;
  }

  function setupAddForm() {
    const form = document.getElementById("add-form");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = form.elements.name.value.trim();
      const token = form.elements.token.value;
      const body = { token };
      if (name) body.name = name;
      const button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      try {
        const response = await callApi("POST", "/accounts", body);
        if (!response) return;
        const account = await response.json();
        form.elements.token.value = "";
        form.elements.name.value = "";
        if (response.status === 201) noteCreated(account.id);
        const card = findCard(account.id) || (hasRoomFor(account.id) ? createCard(account) : null);
        if (card) fillMeta(card, account);
        const label = cardTitle(account) || t("card.unnamed");
        notice(response.status === 201 ? t("add.done", { name: label }) : t("add.exists", { name: label }));
        afterChange();
      } finally {
        button.disabled = false;
      }
    });
  }

  function setupTestAlert() {
    const button = document.getElementById("test-alert");
    if (!button) return;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const response = await callApi("POST", "/alerts/test");
        if (!response) return;
        const answer = await response.json();
        const hooks = answer.webhooks || [];
        if (hooks.length === 0) {
          notice(t("alerts.test_none"));
          return;
        }
        const ok = hooks.filter((hook) => hook.ok).length;
        notice(t("alerts.test_sent", { ok, total: hooks.length }));
        const failed = hooks.filter((hook) => !hook.ok);
        if (failed.length) {
          showError(failed.map((hook) => t("alerts.test_failed", { webhook: hook.name || hook.url, error: hook.error })).join("; "));
        }
      } finally {
        button.disabled = false;
      }
    });
  }

  function setupCardActions() {
    const list = cards();
    if (!list) return;
    list.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const card = button.closest(".card");
      const action = button.dataset.action;
      if (action === "rename") openRename(card);
      else if (action === "cancel") closeRename(card);
      else if (action === "delete") confirmDelete(card);
    });
    list.addEventListener("submit", async (event) => {
      const form = event.target.closest(".rename-form");
      if (!form) return;
      event.preventDefault();
      const card = form.closest(".card");
      const value = form.elements.display_name.value.trim();
      const response = await callApi("PATCH", "/accounts/" + card.dataset.accountId, { display_name: value || null });
      if (!response) return;
      const account = await response.json();
      closeRename(card);
      fillMeta(card, account);
      notice(t("renamed", { name: cardTitle(account) || t("card.unnamed") }));
      afterChange();
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

  function confirmDelete(card) {
    const dialog = document.getElementById("delete-dialog");
    const name = card.dataset.title || t("card.unnamed");
    field(dialog, "delete-title").textContent = t("delete.title", { name });
    field(dialog, "delete-body").textContent = t("delete.body", { name });
    dialog.returnValue = "";
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "delete") {
        card.querySelector('button[data-action="delete"]')?.focus();
        return;
      }
      const response = await callApi("DELETE", "/accounts/" + card.dataset.accountId);
      if (!response) return;
      if (page.page === "account") {
        location.assign(base + "/");
        return;
      }
      card.remove();
      notice(t("delete.done", { name }));
      if (!cards().querySelector(".card")) document.getElementById("no-accounts")?.removeAttribute("hidden");
      afterChange();
    }, { once: true });
    dialog.showModal();
  }

  // -- start ----------------------------------------------------------------------------------

  localizeTimes(document);
  if (!page.page) return;
  takeBaseline(now());
  setupControls();
  setupAddForm();
  setupCardActions();
  setupTestAlert();
  afterChange();
  window.setInterval(() => {
    const current = now();
    for (const element of document.querySelectorAll(".countdown")) tickCountdown(element, current);
    for (const section of document.querySelectorAll("#cards .limit")) tickFreshness(section, current);
    updateSummary(current);
  }, 1000);
  connect();
})();
