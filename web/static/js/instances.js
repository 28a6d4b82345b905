// The overview's Instances panel: the codexgate processes sharing the database, which are alive and
// which one leads. Heartbeats are not in the feed, so the page asks GET api/v1/instances again
// every 10 s (page data: instances_refresh_seconds) and when its tab is shown again; between
// answers the heartbeat ages tick.
// The same elements as macros.html's instance_item; the state of each comes from the server.

import { cloneTemplate, field } from "./page.js";

/** Keep the panel current; returns the function the page's one-second tick calls. */
export function startInstances(ctx) {
  const panel = document.getElementById("instances-panel");
  const list = document.getElementById("instance-list");
  if (!panel || !list) return () => {};
  // When each shown heartbeat came, on the page's clock (ages are the database's, so clocks
  // that differ between the database and this machine do not matter).
  const seenAt = new Map();
  const loadedAt = ctx.page.server_now;
  for (const entry of list.querySelectorAll(".instance")) {
    seenAt.set(entry, loadedAt - Number(entry.dataset.age));
  }

  function drawAge(entry, current) {
    const age = Math.max(0, current - seenAt.get(entry));
    field(entry, "instance-age").textContent = ctx.t("instances.heartbeat", { age: ctx.t.duration(age) });
  }

  function show(answer) {
    const current = ctx.now();
    seenAt.clear();
    const entries = answer.instances.map((item) => {
      const entry = cloneTemplate("instance-template");
      entry.className = "instance state-" + item.state;
      entry.dataset.instanceId = item.id;
      entry.dataset.age = String(item.age_seconds);
      field(entry, "instance-state").textContent = ctx.t("instances.state." + item.state);
      field(entry, "instance-host").textContent = item.hostname;
      field(entry, "instance-this").hidden = !item.this;
      field(entry, "instance-detail").textContent = ctx.t("instances.detail", { pid: item.pid, id: item.id, version: item.version });
      seenAt.set(entry, current - item.age_seconds);
      drawAge(entry, current);
      return entry;
    });
    list.replaceChildren(...entries);
    document.getElementById("instances-count").textContent = String(answer.instances.filter((item) => item.alive).length);
    const several = answer.instances.length > 1;
    panel.hidden = !several;
    const line = document.getElementById("instances-line");
    if (line) line.hidden = several;
  }

  let asking = false;
  async function ask() {
    if (asking) return;
    asking = true;
    try {
      const response = await fetch(ctx.api + "/instances", { credentials: "same-origin" });
      if (response.ok) show(await response.json());
    } catch {
      // Offline: the live indicator says so; the next turn asks again.
    } finally {
      asking = false;
    }
  }

  window.setInterval(ask, ctx.page.instances_refresh_seconds * 1000);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") ask();
  });

  return (current) => {
    if (panel.hidden) return;
    for (const entry of list.querySelectorAll(".instance")) drawAge(entry, current);
  };
}
