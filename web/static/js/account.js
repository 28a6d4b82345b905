// One account's page: its card kept live, and its newest requests added to the table.

import { applyUsageToCard, cardList, drawAllWindows, fillMeta, findCard, setupCardActions } from "./cards.js";
import { localTime } from "./page.js";

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
    if (card && payload.account) fillMeta(ctx, card, payload.account);
  }

  drawAllWindows(ctx);
  setupCardActions(ctx, { changed() {}, deleted: goHome });
  return { usage, request, account, alert() {}, tick() {} };
}
