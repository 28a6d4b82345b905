// What both pages share: the data the server embedded for the script, the clock, the strings,
// messages in the page, countdowns, local times and calls to the JSON API. Every value goes
// into the page with textContent or an attribute, never as markup.

import { clockText, iso, translator } from "./text.js";

/** The page's context from its embedded data (#page-data), or null on a page without one. */
export function readContext(document) {
  const element = document.getElementById("page-data");
  if (!element) return null;
  const page = JSON.parse(element.textContent);
  const base = "/" + page.prefix;
  // The server's clock, so countdowns agree with it even when this machine's clock is off.
  const skewMs = page.server_now * 1000 - Date.now();
  return {
    page,
    rules: page.rules,
    t: translator(page.messages),
    base,
    api: base + "/api/v1",
    now: () => (Date.now() + skewMs) / 1000,
    view: page.view,
  };
}

export const storage = {
  get(key) { try { return window.localStorage.getItem("codexgate." + key); } catch { return null; } },
  set(key, value) { try { window.localStorage.setItem("codexgate." + key, value); } catch { /* private mode */ } },
};

export function field(root, name) {
  return root.querySelector('[data-field="' + name + '"]');
}

export function cloneTemplate(id) {
  return document.getElementById(id).content.firstElementChild.cloneNode(true);
}

/** A window's name: the translated one of a fixed label, else the label itself. */
export function windowName(ctx, label) {
  return ctx.rules.windows.includes(label) ? ctx.t("window." + label) : label;
}

// -- messages in the page ---------------------------------------------------------------------

export function notice(text) {
  const box = document.getElementById("notices");
  if (!box) return;
  const line = document.createElement("p");
  line.textContent = text;
  box.replaceChildren(line);
}

export function showError(ctx, text, withSignIn) {
  const box = document.getElementById("errors");
  if (!box) return;
  const line = document.createElement("p");
  line.textContent = text + " ";
  if (withSignIn) {
    const link = document.createElement("a");
    link.href = ctx.base + "/login?next=" + encodeURIComponent(location.pathname + location.search);
    link.textContent = ctx.t("title.sign_in");
    line.append(link);
  }
  box.replaceChildren(line);
}

export function clearErrors() {
  document.getElementById("errors")?.replaceChildren();
}

export function setLive(ctx, state) {
  const status = document.getElementById("live-status");
  if (!status) return;
  status.dataset.state = state;
  field(status, "live-text").textContent = ctx.t("live." + state);
}

// -- times ------------------------------------------------------------------------------------

const TIME_FORMATS = {
  time: { hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
  date: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
  datetime: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
};

export function localTime(ctx, at, format) {
  try {
    return new Intl.DateTimeFormat(ctx.page.lang, TIME_FORMATS[format] || TIME_FORMATS.datetime).format(new Date(at * 1000));
  } catch {
    return iso(at) ?? "";
  }
}

export function localizeTimes(ctx, root) {
  for (const element of root.querySelectorAll("[data-at]")) {
    const at = Number(element.dataset.at);
    if (element.dataset.at !== "" && Number.isFinite(at)) element.textContent = localTime(ctx, at, element.dataset.format);
  }
}

export function setCountdown(ctx, element, at) {
  element.dataset.resetAt = at === null || at === undefined ? "" : String(at);
  tickCountdown(ctx, element, ctx.now());
}

/** A moment as the reader's clock shows it ("14:05", "Tue 09:32"), in the page's language. */
export function clock(ctx, at, current) {
  return clockText(at, current, ctx.page.lang, ctx.rules.clock);
}

/** A countdown's text: its running message with the moment's clock time and the time left, its
 * done message once the moment has passed, its unknown message without one. */
export function tickCountdown(ctx, element, current) {
  if (element.hidden) return;
  if (element.dataset.resetAt === "") {
    element.textContent = ctx.t(element.dataset.unknown || "window.reset_unknown");
    return;
  }
  const at = Number(element.dataset.resetAt);
  const time = clock(ctx, at, current);
  element.textContent = at > current
    ? ctx.t(element.dataset.running, { duration: ctx.t.duration(at - current), time })
    : ctx.t(element.dataset.done, { time });
}

// -- the JSON API -----------------------------------------------------------------------------

/** Call the API; on failure the page says why and the answer is null. */
export async function callApi(ctx, method, path, body) {
  let response;
  try {
    response = await fetch(ctx.api + path, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    showError(ctx, ctx.t("error.network"));
    return null;
  }
  if (response.status === 401) {
    showError(ctx, ctx.t("error.session"), true);
    return null;
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const answer = await response.json();
      if (answer && answer.error && answer.error.message) message = answer.error.message;
    } catch { /* not JSON */ }
    showError(ctx, ctx.t("error.api", { message }));
    return null;
  }
  clearErrors();
  return response;
}

/** Whether the session still holds (the feed was refused): else the page says so. */
export async function sessionHolds(ctx) {
  try {
    const response = await fetch(ctx.api + "/accounts", { credentials: "same-origin", method: "HEAD" });
    if (response.status === 401) {
      showError(ctx, ctx.t("error.session"), true);
      return false;
    }
  } catch {
    // Still unreachable: keep trying.
  }
  return true;
}
