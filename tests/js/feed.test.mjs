// web/static/js/feed.js: which event payloads the page takes, and resuming from the last id.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Feed, KINDS, RETRY_MS, feedUrl, parseEvent } from "../../web/static/js/feed.js";

// A history item as GET accounts/{id}/history lists it (api/schemas.py history_json).
const HISTORY_ITEM = {
  id: 7, limit_id: "codex", limit_name: null, source: "headers",
  captured_at: 1000.5, captured_at_iso: "1970-01-01T00:16:40.500Z",
  confirmed_at: 1000.5, confirmed_at_iso: "1970-01-01T00:16:40.500Z",
  http_status: 200, plan_type: "plus", active_limit: null, rate_limit_reached_type: null,
  windows: {
    "5h": { used_percent: 46, window_minutes: 300, resets_at: 9000, resets_at_iso: "1970-01-01T02:30:00Z" },
    "7d": null, monthly: null,
  },
  slots: { primary: null, secondary: null },
  over_secondary_limit_percent: null, limit_hit: null, credits: null, spend_control: null,
};
const USAGE = { account_id: 1, limit_id: "codex", row: HISTORY_ITEM, age_seconds: 0.2, forecasts: {} };
const REQUEST = {
  id: 3, started_at: 1000, started_at_iso: "1970-01-01T00:16:40Z", account_id: 1, method: "POST",
  path: "/backend-api/codex/responses", transport: "http", status: 200, model: "gpt-5", total_tokens: 12,
  ttfb_ms: 80.5, error_code: null,
};
const ALERT = {
  id: 4, kind: "threshold", at: 1000, at_iso: "1970-01-01T00:16:40Z", account_id: 1, account: "alice",
  limit_id: "codex", window: "5h", used_percent: 91, threshold: 90, resets_at: null, resets_at_iso: null,
  exhausts_at: null, exhausts_at_iso: null, message: "", delivered: true,
};
const ACCOUNT = { id: 1, kind: "created", account: { id: 1, display_name: null, email: "a@example.com", plan_type: "plus" } };

const json = (value) => JSON.stringify(value);

test("each kind's REST-shaped payload is taken as it is", () => {
  assert.deepEqual(parseEvent("usage", json(USAGE)), USAGE);
  assert.deepEqual(parseEvent("request", json(REQUEST)), REQUEST);
  assert.deepEqual(parseEvent("alert", json(ALERT)), ALERT);
  assert.deepEqual(parseEvent("account", json(ACCOUNT)), ACCOUNT);
  assert.deepEqual(parseEvent("account", json({ id: 1, kind: "deleted", account: null })), { id: 1, kind: "deleted", account: null });
  assert.deepEqual(parseEvent("request", json({ ...REQUEST, account_id: null })), { ...REQUEST, account_id: null });
});

test("a usage row in the store's column shape is refused: windows come by label only", () => {
  const { windows, ...columns } = HISTORY_ITEM;
  const stored = { ...columns, five_hour_used_percent: 46, primary_window: "5h", limit_hit_type: null };
  assert.equal(parseEvent("usage", json({ ...USAGE, row: stored })), null);
});

test("a request or an alert without its ISO time (the stored row) is refused", () => {
  const { started_at_iso, ...request } = REQUEST;
  assert.equal(parseEvent("request", json(request)), null);
  const { at_iso, ...alert } = ALERT;
  assert.equal(parseEvent("alert", json(alert)), null);
});

test("broken or mismatched data is refused, never thrown", () => {
  for (const kind of KINDS) {
    assert.equal(parseEvent(kind, "{not json"), null, kind);
    assert.equal(parseEvent(kind, "null"), null, kind);
    assert.equal(parseEvent(kind, "[]"), null, kind);
    assert.equal(parseEvent(kind, "{}"), null, kind);
  }
  assert.equal(parseEvent("ping", json(USAGE)), null);
  assert.equal(parseEvent("usage", json({ ...USAGE, limit_id: "other" })), null);
  assert.equal(parseEvent("usage", json({ ...USAGE, account_id: "1" })), null);
  assert.equal(parseEvent("usage", json({ ...USAGE, row: { ...HISTORY_ITEM, windows: { "5h": 46 } } })), null);
  assert.equal(parseEvent("account", json({ ...ACCOUNT, account: { ...ACCOUNT.account, id: 2 } })), null);
});

test("the feed URL asks to start after a position", () => {
  assert.equal(feedUrl("/codexgate/api/v1", "1.2.3.4"), "/codexgate/api/v1/events?last_event_id=1.2.3.4");
});

// Just enough of an EventSource (Node has none) to drive the connection's logic.
class FakeSource {
  static CLOSED = 2;
  static opened = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = new Map();
    this.closed = false;
    FakeSource.opened.push(this);
  }
  addEventListener(name, listener) { this.listeners.set(name, listener); }
  close() { this.closed = true; this.readyState = FakeSource.CLOSED; }
  emit(name, event = {}) { this.listeners.get(name)(event); }
}

test("a refused feed reconnects from the last event id it saw, or gives up when told", async () => {
  FakeSource.opened = [];
  const states = [];
  const events = [];
  const timers = [];
  let allowed = true;
  const feed = new Feed({
    api: "/p/api/v1",
    cursor: "0.0.0.0",
    onEvent: (kind, payload) => events.push([kind, payload.id ?? payload.account_id]),
    onState: (state) => states.push(state),
    mayReconnect: async () => allowed,
    EventSourceClass: FakeSource,
    setTimer: (callback, ms) => timers.push([callback, ms]),
  });
  feed.connect();
  const first = FakeSource.opened[0];
  assert.equal(first.url, "/p/api/v1/events?last_event_id=0.0.0.0");
  first.emit("open");
  first.emit("usage", { data: json(USAGE), lastEventId: "1.0.0.0" });
  first.emit("request", { data: "{broken", lastEventId: "1.1.0.0" });
  assert.deepEqual(events, [["usage", 1]]);
  // The browser retries by itself while not CLOSED: nothing to do but say so.
  first.emit("error");
  assert.equal(timers.length, 0);
  first.readyState = FakeSource.CLOSED;
  first.emit("error");
  assert.equal(first.closed, true);
  assert.equal(timers.length, 1);
  assert.equal(timers[0][1], RETRY_MS);
  await timers[0][0]();
  const second = FakeSource.opened[1];
  assert.equal(second.url, "/p/api/v1/events?last_event_id=1.1.0.0");
  assert.deepEqual(states, ["connecting", "live", "reconnecting", "reconnecting", "reconnecting"]);
  allowed = false;
  second.readyState = FakeSource.CLOSED;
  second.emit("error");
  await timers[1][0]();
  assert.equal(FakeSource.opened.length, 2);
  assert.equal(states.at(-1), "static");
});
