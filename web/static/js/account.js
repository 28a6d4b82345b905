// One account's page: its card kept live, its charts' time axes in the reader's time zone with a
// moving "now" marker, and its newest requests added to the table.

import { applyUsageToCard, cardList, drawAllWindows, fillMeta, findCard, setupCardActions } from "./cards.js";
import { markerAnchor, tickLines, timeTicks, utcOffsetAt, xAt } from "./charts.js";
import { localTime } from "./page.js";

const SVG = "http://www.w3.org/2000/svg";

/** Each chart's ticks again on whole steps of local time, written in the page's language. */
function layOutAxes(ctx) {
  const width = ctx.page.chart_width;
  const charts = document.querySelectorAll(".chart svg[data-start]");
  for (const svg of charts) {
    const start = Number(svg.dataset.start);
    const end = Number(svg.dataset.end);
    const group = svg.querySelector(".ticks");
    const y = group.firstElementChild?.getAttribute("y");
    if (!(end > start) || y === null || y === undefined) continue;
    // One offset per chart: a daylight-saving change inside a month's range moves later ticks by
    // an hour rather than spacing them unevenly.
    const ticks = timeTicks(start, end, width, utcOffsetAt((start + end) / 2));
    group.replaceChildren(
      ...ticks.map((tick) => {
        const text = document.createElementNS(SVG, "text");
        text.setAttribute("x", tick.x);
        text.setAttribute("y", y);
        text.setAttribute("text-anchor", "middle");
        text.dataset.kind = tick.kind;
        tickLines(tick.at, tick.kind, ctx.page.lang).forEach((line, index) => {
          const span = document.createElementNS(SVG, "tspan");
          span.setAttribute("x", tick.x);
          if (index) span.setAttribute("dy", "1.2em");
          span.textContent = line;
          text.append(span);
        });
        return text;
      }),
    );
  }
  const zone = document.getElementById("chart-zone");
  if (zone && charts.length) {
    const name = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    zone.textContent = ctx.t("history.times_local", { zone: name });
  }
}

/** Move each "now" marker to the current time (held at the right edge of a range that ended at
 * the page's load); hide it once a window that was still running has reset. */
function moveNowMarkers(ctx, current) {
  const width = ctx.page.chart_width;
  for (const marker of document.querySelectorAll('.chart [data-marker="now"]')) {
    const svg = marker.closest("svg");
    const start = Number(svg.dataset.start);
    const end = Number(svg.dataset.end);
    marker.toggleAttribute("hidden", "endsLater" in svg.dataset && current > end);
    const x = xAt(current, start, end, width);
    for (const line of marker.querySelectorAll("line")) {
      line.setAttribute("x1", x);
      line.setAttribute("x2", x);
    }
    const label = marker.querySelector("text");
    label.setAttribute("x", x);
    label.setAttribute("text-anchor", markerAnchor(x, width));
  }
}

export function start(ctx) {
  const { page, t } = ctx;
  const goHome = () => location.assign(ctx.base + "/");

  function cell(text, className, labelKey) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    if (labelKey) td.dataset.label = t(labelKey); // shown before the value on a phone
    return td;
  }

  function request(row) {
    const body = document.getElementById("requests-body");
    if (!page.live_requests || row.account_id !== page.account_id) return;
    if (body.querySelector('[data-request-id="' + CSS.escape(String(row.id)) + '"]')) return;
    const tr = document.createElement("tr");
    tr.dataset.requestId = String(row.id);
    tr.className = "fresh-row";
    const when = document.createElement("time");
    when.dateTime = row.started_at_iso ?? "";
    when.textContent = localTime(ctx, row.started_at, "datetime");
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

  function usage(payload) {
    if (payload.account_id !== page.account_id) return;
    const card = findCard(page.account_id);
    if (card) applyUsageToCard(ctx, card, payload);
  }

  function account(payload) {
    if (payload.id !== page.account_id) return;
    if (payload.kind === "deleted") {
      goHome();
      return;
    }
    const card = findCard(page.account_id);
    if (card && payload.account) {
      fillMeta(ctx, card, payload.account);
      // The page's heading follows the card's name, written by the card's one rule.
      const title = card.querySelector('[data-field="title"]');
      if (title) document.getElementById("account-title").textContent = title.textContent;
    }
  }

  drawAllWindows(ctx);
  layOutAxes(ctx);
  moveNowMarkers(ctx, ctx.now());
  setupCardActions(ctx, {
    changed() {
      const card = findCard(page.account_id);
      const title = card?.querySelector('[data-field="title"]');
      if (title) document.getElementById("account-title").textContent = title.textContent;
    },
    deleted: goHome,
  });
  return { usage, request, account, alert() {}, tick: (current) => moveNowMarkers(ctx, current) };
}
