// The Manage accounts view: the add-account form and the list of accounts to rename or delete,
// kept current from the feed's account events.

import { cardTitle, fillMeta, setupCardActions } from "./cards.js";
import { callApi, cloneTemplate, field, localizeTimes, notice } from "./page.js";

export function start(ctx) {
  const { page, t } = ctx;
  const list = document.getElementById("manage-list");

  const findRow = (accountId) => list.querySelector('[data-account-id="' + CSS.escape(String(accountId)) + '"]');

  function showEmpty() {
    document.getElementById("no-accounts").hidden = list.querySelector("[data-account-id]") !== null;
  }

  /** A row for an account this page has not listed: only on the last page (the list is by id). */
  function addRow(account) {
    const found = findRow(account.id);
    if (found || !page.last_page) return found;
    const row = cloneTemplate("manage-row-template");
    row.dataset.accountId = String(account.id);
    field(row, "title").id = "card-title-" + account.id;
    for (const described of row.querySelectorAll("[aria-describedby]")) {
      described.setAttribute("aria-describedby", "card-title-" + account.id);
    }
    field(row, "title-link").href = ctx.base + "/accounts/" + encodeURIComponent(String(account.id));
    fillMeta(ctx, row, account);
    list.append(row);
    localizeTimes(ctx, row);
    showEmpty();
    return row;
  }

  function setupAddForm() {
    const form = document.getElementById("add-form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = form.elements.name.value.trim();
      const body = { token: form.elements.token.value };
      if (name) body.name = name;
      const button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      try {
        const response = await callApi(ctx, "POST", "/accounts", body);
        if (!response) return;
        const account = await response.json();
        form.elements.token.value = "";
        form.elements.name.value = "";
        const row = findRow(account.id) || addRow(account);
        if (row) fillMeta(ctx, row, account);
        const label = cardTitle(account, t);
        notice(response.status === 201 ? t("add.done", { name: label }) : t("add.exists", { name: label }));
      } finally {
        button.disabled = false;
      }
    });
  }

  function account(payload) {
    if (payload.kind === "deleted") {
      findRow(payload.id)?.remove();
      showEmpty();
    } else if (payload.account) {
      const row = findRow(payload.id) || (payload.kind === "created" ? addRow(payload.account) : null);
      if (row) fillMeta(ctx, row, payload.account);
    }
  }

  setupAddForm();
  setupCardActions(ctx, {
    list,
    changed() {},
    deleted(row, name) {
      row.remove();
      notice(t("delete.done", { name }));
      showEmpty();
    },
  });
  const ignore = () => {};
  return { usage: ignore, request: ignore, alert: ignore, account, tick: ignore };
}
