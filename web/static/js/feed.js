// The admin live feed (SSE at <prefix>/api/v1/events): parsing its events, and one connection
// that resumes from the last event id it saw. Each event's data is a REST item (api/rest.py,
// api/alerts.py): `usage` {account_id, limit_id, row: a history item, age_seconds, forecasts},
// `request` a request item, `alert` an alert item, `account` {id, kind, account}.

export const KINDS = ["usage", "request", "account", "alert"];
// Between a refused connection (session ended, server restarting) and the next attempt.
export const RETRY_MS = 3000;

const isObject = (value) => typeof value === "object" && value !== null && !Array.isArray(value);
const isId = (value) => Number.isSafeInteger(value) && value > 0;
const isTime = (value) => typeof value === "number" && Number.isFinite(value);
const isIsoOrNull = (value) => value === null || typeof value === "string";

function isHistoryItem(row) {
  return isObject(row)
    && typeof row.limit_id === "string"
    && typeof row.source === "string"
    && isTime(row.confirmed_at)
    && isObject(row.windows)
    && Object.values(row.windows).every((found) => found === null || isObject(found))
    && (row.limit_hit === null || isObject(row.limit_hit));
}

const VALID = {
  usage: (data) => isId(data.account_id)
    && typeof data.limit_id === "string"
    && isHistoryItem(data.row)
    && data.row.limit_id === data.limit_id
    && isTime(data.age_seconds)
    && isObject(data.forecasts),
  request: (data) => isId(data.id)
    && isTime(data.started_at)
    && isIsoOrNull(data.started_at_iso)
    && (data.account_id === null || isId(data.account_id)),
  alert: (data) => isId(data.id)
    && isTime(data.at)
    && isIsoOrNull(data.at_iso)
    && typeof data.kind === "string",
  account: (data) => isId(data.id)
    && typeof data.kind === "string"
    && (data.account === null || (isObject(data.account) && data.account.id === data.id)),
};

/** An event's payload when it has the shape its kind promises, else null. */
export function parseEvent(kind, text) {
  const valid = VALID[kind];
  if (!valid) return null;
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    return null;
  }
  return isObject(data) && valid(data) ? data : null;
}

/** The feed's URL, asking to start after `cursor` (the page's position or the last event's). */
export function feedUrl(api, cursor) {
  return api + "/events?last_event_id=" + encodeURIComponent(cursor);
}

/** One live-feed connection: hands each valid event to `onEvent(kind, payload)`, reports its
 * state ("connecting", "live", "reconnecting", "static") to `onState`, and after a refusal asks
 * `mayReconnect()` before trying again from the last event id it saw. */
export class Feed {
  constructor({ api, cursor, onEvent, onState, mayReconnect, EventSourceClass = globalThis.EventSource, setTimer = globalThis.setTimeout }) {
    this.api = api;
    this.cursor = cursor;
    this.onEvent = onEvent;
    this.onState = onState;
    this.mayReconnect = mayReconnect;
    this.EventSourceClass = EventSourceClass;
    this.setTimer = setTimer;
    this.source = null;
  }

  connect() {
    this.onState(this.source ? "reconnecting" : "connecting");
    // The first connection starts from the position the page was built at; the browser sends
    // Last-Event-ID itself when it reconnects on its own, and that wins over the query.
    const source = new this.EventSourceClass(feedUrl(this.api, this.cursor));
    this.source = source;
    source.addEventListener("open", () => this.onState("live"));
    source.addEventListener("error", () => {
      this.onState("reconnecting");
      if (source.readyState === this.EventSourceClass.CLOSED) {
        // Refused: the browser gives up, so try again ourselves with our position.
        source.close();
        this.setTimer(() => this.retry(), RETRY_MS);
      }
    });
    for (const kind of KINDS) {
      source.addEventListener(kind, (event) => this.receive(kind, event));
    }
  }

  receive(kind, event) {
    if (event.lastEventId) this.cursor = event.lastEventId;
    const payload = parseEvent(kind, event.data);
    if (payload !== null) this.onEvent(kind, payload);
  }

  async retry() {
    if (await this.mayReconnect()) this.connect();
    else this.onState("static");
  }
}
