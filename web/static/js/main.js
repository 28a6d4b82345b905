// codexgate dashboard: keeps the server-rendered page live from the admin feed (SSE), ticks its
// countdowns and manages accounts through the JSON API. The page names its controller.

import { tickCards } from "./cards.js";
import { Feed } from "./feed.js";
import { clearErrors, localizeTimes, readContext, sessionHolds, setLive, tickCountdown } from "./page.js";
import * as account from "./account.js";
import * as overview from "./overview.js";
import * as manage from "./manage.js";

const CONTROLLERS = { overview, account, manage };

function main() {
  const ctx = readContext(document);
  if (!ctx) return;
  localizeTimes(ctx, document);
  const controller = CONTROLLERS[ctx.page.page]?.start(ctx);
  if (!controller) return;
  const tick = (current) => {
    for (const element of document.querySelectorAll(".countdown")) tickCountdown(ctx, element, current);
    tickCards(ctx, current);
  };
  tick(ctx.now()); // the server wrote UTC clock times: the reader's own at once
  window.setInterval(() => {
    const current = ctx.now();
    tick(current);
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
