// codexgate dashboard: keeps the server-rendered page live from the admin feed (SSE), ticks its
// countdowns and manages accounts through the JSON API. The page names its controller.

import { tickFreshness } from "./cards.js";
import { Feed } from "./feed.js";
import { clearErrors, localizeTimes, readContext, sessionHolds, setLive, tickCountdown } from "./page.js";
import * as account from "./account.js";
import * as overview from "./overview.js";

const CONTROLLERS = { overview, account };

function main() {
  const ctx = readContext(document);
  if (!ctx) return;
  localizeTimes(ctx, document);
  const controller = CONTROLLERS[ctx.page.page]?.start(ctx);
  if (!controller) return;
  window.setInterval(() => {
    const current = ctx.now();
    for (const element of document.querySelectorAll(".countdown")) tickCountdown(ctx, element, current);
    for (const section of document.querySelectorAll("#cards .limit")) tickFreshness(ctx, section, current);
    controller.tick(current);
  }, 1000);
  new Feed({
    api: ctx.api,
    cursor: ctx.page.cursor,
    onEvent: (kind, payload) => controller[kind](payload),
    onState(state) {
      setLive(ctx, state);
      if (state === "live") clearErrors();
    },
    mayReconnect: () => sessionHolds(ctx),
  }).connect();
}

main();
