// The accounts overview: the summary line, one page of cards kept live, sorting and the view
// switch, the account to use next (asked of the server), the recent alerts and the request
// sparklines. Adding accounts is on the Manage accounts view (manage.js).

import { sparklinePoints } from "./charts.js";
import { addAlert as addAlertTo, localizeAlerts, unlinkAlerts } from "./alerts.js";
import {
  applyUsageToCard, cardFacts, cardList, createCard, drawAllWindows, fetchAccount,
  fillMeta, findCard, markUseNext, setupCardActions,
} from "./cards.js";
import { startInstances } from "./instances.js";
import { callApi, notice, setCountdown, showError, storage } from "./page.js";

const SORTS = ["name", "left", "used", "reset"];
// "Most left" is the server's rule (core/use_next.py): after usage changes the page asks the
// server again which account to use next and, under that sort, in which order its cards go.
const LEFT = "left";
// After a burst of usage events, one question to the server; and once a minute regardless, as
// resets pass without any event.
const USE_NEXT_DEBOUNCE_MS = 1500;
const USE_NEXT_EVERY_SECONDS = 60;
// From this width the alerts and the activity are a side column, open; below it they fold.
const WIDE = "(min-width: 1200px)";
const VIEWS = ["used", "remaining"];

export function start(ctx) {
  const { page, t } = ctx;
  // The overview shows one page of accounts: a card is added only for an account created after
  // the page was built, and only on the last page while it has room. Other accounts' events
  // change the summary's counts at most.
  const accountsPage = page.accounts_page;
  const createdSince = new Set();
  const deletedSince = new Set();
  // The server counted every account when it built the page; each card's facts as they were
  // then are taken out again and its current ones put in, so the page's own changes show.
  const baseline = new Map();
  let sort = page.sort;

  const paged = () => accountsPage.pages > 1;

  function hasRoomFor(accountId) {
    if (accountId <= accountsPage.max_account_id && !createdSince.has(accountId)) return false;
    if (accountsPage.page < accountsPage.pages) return false;
    return cardList().querySelectorAll(".card").length < accountsPage.size;
  }

  function noteCreated(accountId) {
    if (accountId > accountsPage.max_account_id) createdSince.add(accountId);
  }

  function noteDeleted(accountId) {
    deletedSince.add(accountId);
    createdSince.delete(accountId);
  }

  function ensureCard(accountId) {
    let card = findCard(accountId);
    if (card || !hasRoomFor(accountId)) return card;
    card = createCard(ctx, { id: accountId, display_name: null, email: null, plan_type: null });
    fetchAccount(ctx, accountId).then((account) => { if (account && card.isConnected) fillMeta(ctx, card, account); }, () => {});
    return card;
  }

  // -- the summary strip and sorting ----------------------------------------------------------

  const nearLimit = (facts) => !facts.atLimit && facts.maxUsed !== null && facts.maxUsed >= page.thresholds.critical;

  function updateSummary(current) {
    const shown = [...cardList().querySelectorAll(".card")].map((card) => cardFacts(card, current, ctx.rules.main_limit, ctx.rules.full_percent));
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
    document.getElementById("kpi-accounts").textContent = String(Math.max(0, accountsPage.accounts + createdSince.size - removed));
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
    setCountdown(ctx, countdown, soonest.soonest);
    who.textContent = soonest.title || t("card.unnamed");
  }

  /** Move the cards into `order` (cards it leaves out keep their turn after it): DOM moves only,
   * so a card keeps its state (an open menu, a rename being typed) and the focus stays put. */
  function placeCards(order) {
    const list = cardList();
    const placed = new Set(order);
    const rest = [...list.querySelectorAll(".card")].filter((card) => !placed.has(card));
    const focused = document.activeElement;
    [...order, ...rest].forEach((card, index) => {
      const here = list.children[index] || null;
      if (here === card) return;
      // moveBefore keeps focus and state through the move where the browser has it.
      if (typeof list.moveBefore === "function") list.moveBefore(card, here);
      else list.insertBefore(card, here);
    });
    if (focused instanceof HTMLElement && focused !== document.activeElement) focused.focus({ preventScroll: true });
  }

  /** "Most left": the order the server answered for this page's accounts (their ids). */
  function placeByServer(ids) {
    const order = ids.map((id) => findCard(id)).filter((card) => card !== null);
    placeCards(order);
  }

  function sortCards() {
    if (sort === LEFT) return; // the server's order, asked again after changes (askUseNext)
    const list = cardList();
    const current = ctx.now();
    const facts = new Map([...list.querySelectorAll(".card")].map((card) => [card, cardFacts(card, current, ctx.rules.main_limit, ctx.rules.full_percent)]));
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
    placeCards(order.map(([card]) => card));
  }

  function afterChange() {
    updateSummary(ctx.now());
    sortCards();
  }

  function pageUrl(number, sortBy) {
    const url = new URL(location.href);
    url.searchParams.set("page", String(number));
    url.searchParams.set("sort", sortBy);
    url.searchParams.set("view", ctx.view);
    return url.pathname + url.search;
  }

  function rememberInUrl(name, value) {
    const url = new URL(location.href);
    url.searchParams.set(name, value);
    history.replaceState(null, "", url);
  }

  /** The view and sort controls; false when the page is being replaced by another. */
  function setupControls() {
    const form = document.getElementById("view-form");
    const params = new URL(location.href).searchParams;
    const savedView = storage.get("view");
    if (!params.has("view") && VIEWS.includes(savedView)) ctx.view = savedView;
    const savedSort = storage.get("sort");
    if (!params.has("sort") && SORTS.includes(savedSort)) {
      // Another page's order, or "most left" (the server's): the server builds the page.
      if ((paged() || savedSort === LEFT) && savedSort !== sort) {
        location.replace(pageUrl(1, savedSort));
        return false;
      }
      sort = savedSort;
    }
    for (const radio of form.querySelectorAll('input[name="view"]')) radio.checked = radio.value === ctx.view;
    document.getElementById("sort-select").value = sort;
    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("change", (event) => {
      const target = event.target;
      if (target.name === "view") {
        ctx.view = target.value;
        storage.set("view", ctx.view);
        rememberInUrl("view", ctx.view);
        for (const link of document.querySelectorAll("a[data-page-link], a[data-view-link]")) {
          const url = new URL(link.href);
          url.searchParams.set("view", ctx.view);
          link.href = url.pathname + url.search;
        }
        drawAllWindows(ctx);
      } else if (target.name === "sort") {
        sort = target.value;
        storage.set("sort", sort);
        if (paged() || sort === LEFT) {
          location.assign(pageUrl(1, sort));
          return;
        }
        rememberInUrl("sort", sort);
        sortCards();
      }
    });
    drawAllWindows(ctx);
    return true;
  }

  // -- the test alert ------------------------------------------------------------------------

  function setupTestAlert() {
    const button = document.getElementById("test-alert");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const response = await callApi(ctx, "POST", "/alerts/test");
        if (!response) return;
        const answer = await response.json();
        const hooks = answer.webhooks || [];
        if (hooks.length === 0) {
          notice(t("alerts.test_none"));
          return;
        }
        notice(t("alerts.test_sent", { ok: hooks.filter((hook) => hook.ok).length, total: hooks.length }));
        const failed = hooks.filter((hook) => !hook.ok);
        if (failed.length) {
          showError(ctx, failed.map((hook) => t("alerts.test_failed", { webhook: hook.name || hook.url, error: hook.error })).join("; "));
        }
      } finally {
        button.disabled = false;
      }
    });
  }

  // -- feed events ----------------------------------------------------------------------------

  function usage(payload) {
    scheduleUseNext(); // any account's usage may change which one is best
    const card = ensureCard(payload.account_id);
    if (!card) return;
    applyUsageToCard(ctx, card, payload);
    afterChange();
  }

  // -- the account to use next ----------------------------------------------------------------

  let useNextTimer = null;
  let useNextAskedAt = ctx.now();
  let useNextAsked = 0; // the newest question: an older answer arriving late is dropped

  function showUseNext(chosen) {
    const link = document.getElementById("use-next-link");
    const none = document.getElementById("use-next-none");
    if (chosen && chosen.account_id !== null) {
      link.href = ctx.base + "/accounts/" + encodeURIComponent(String(chosen.account_id));
      link.textContent = chosen.title || t("card.default_title", { id: chosen.account_id });
      link.hidden = false;
      none.hidden = true;
    } else {
      link.hidden = true;
      none.hidden = false;
    }
    markUseNext(chosen ? chosen.account_id : null);
  }

  async function askUseNext() {
    useNextTimer = null;
    useNextAskedAt = ctx.now();
    const asked = ++useNextAsked;
    let url = ctx.api + "/use-next";
    if (sort === LEFT) {
      // This page's accounts (at most a page of them), to be put in the "most left" order.
      const ids = [...cardList().querySelectorAll(".card")].map((card) => card.dataset.accountId);
      if (ids.length) url += "?accounts=" + encodeURIComponent(ids.slice(0, accountsPage.size).join(","));
    }
    let answer;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return;
      answer = await response.json();
    } catch {
      return; // offline: the feed's state says so; the next event asks again
    }
    if (asked !== useNextAsked) return;
    showUseNext(answer);
    if (sort === LEFT && Array.isArray(answer.order)) placeByServer(answer.order);
  }

  function scheduleUseNext() {
    if (useNextTimer !== null) window.clearTimeout(useNextTimer);
    useNextTimer = window.setTimeout(askUseNext, USE_NEXT_DEBOUNCE_MS);
  }

  let tickInstances = () => {};

  function tick(current) {
    updateSummary(current);
    tickInstances(current);
    if (useNextTimer === null && current - useNextAskedAt >= USE_NEXT_EVERY_SECONDS) scheduleUseNext();
  }

  /** Alerts and activity fold on narrow screens, to leave the first screen to the cards. */
  function setupPanels() {
    if (window.matchMedia(WIDE).matches) return;
    for (const panel of document.querySelectorAll("details[data-fold]")) panel.open = false;
  }

  function alert(item) {
    addAlert(item);
    document.getElementById("alerts-count").textContent = String(document.getElementById("alert-list").children.length);
  }

  function account(payload) {
    if (payload.kind === "deleted") {
      scheduleUseNext();
      noteDeleted(payload.id);
      unlinkAlerts(document.getElementById("alert-list"), payload.id);
      findCard(payload.id)?.remove();
      if (!cardList().querySelector(".card")) document.getElementById("no-accounts")?.removeAttribute("hidden");
    } else if (payload.account) {
      if (payload.kind === "created") noteCreated(payload.id);
      // A new name may change the mark's title, and under "most left" the order of equal rooms.
      const marked = findCard(payload.id)?.querySelector('[data-field="use-next"]:not([hidden])');
      if (payload.kind === "updated" && (marked || sort === LEFT)) scheduleUseNext();
      const card = findCard(payload.id) || (hasRoomFor(payload.id) ? createCard(ctx, payload.account) : null);
      if (card) fillMeta(ctx, card, payload.account);
    }
    afterChange();
  }

  function addAlert(item) {
    const list = document.getElementById("alert-list");
    if (!addAlertTo(ctx, list, item, page.recent_alerts)) return;
    document.getElementById("no-alerts").hidden = true;
  }

  function request(row) {
    const activity = page.activity;
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
    document.getElementById("spark-requests").setAttribute("points", sparklinePoints(activity.requests));
    document.getElementById("spark-tokens").setAttribute("points", sparklinePoints(activity.tokens));
  }

  // -- start ----------------------------------------------------------------------------------

  const current = ctx.now();
  for (const card of cardList().querySelectorAll(".card")) baseline.set(card.dataset.accountId, cardFacts(card, current, ctx.rules.main_limit, ctx.rules.full_percent));
  if (!setupControls()) return null;
  sortCards();
  setupPanels();
  setupCardActions(ctx, {
    changed: afterChange,
    deleted(card, name) {
      card.remove();
      notice(t("delete.done", { name }));
      if (!cardList().querySelector(".card")) document.getElementById("no-accounts")?.removeAttribute("hidden");
      afterChange();
    },
  });
  setupTestAlert();
  tickInstances = startInstances(ctx);
  localizeAlerts(ctx, document.getElementById("alert-list"));
  afterChange();
  return { usage, request, account, alert, tick };
}
