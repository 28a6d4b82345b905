-- codexgate schema, version 2: quota hits and spend controls on the usage rows, and a log of
-- every proxied request.
--
-- Conventions as in 0001: *_at columns are REAL unix seconds, except the *_resets_at columns
-- (INTEGER unix seconds as the upstream reports them); NULL means "not reported / unknown",
-- never 0; booleans are INTEGER 0/1. accounts.last_seen_at now also moves with requests.

-- A quota error and a workspace spend limit say something about the 'codex' limit family, so
-- they are stored on its rows (a report that has them but no 'codex' windows still writes a
-- 'codex' row, with NULL windows). They count as values: a row whose limit_hit_* or spend_*
-- differ from the newest row's is a change and starts a new history row (reset times within
-- the same 5 s tolerance as the windows'). Rows written before version 2 have NULL here.

-- The quota error: its type (e.g. 'usage_limit_reached') says the limit is hit, until the time.
ALTER TABLE usage_snapshots ADD COLUMN limit_hit_type TEXT;
ALTER TABLE usage_snapshots ADD COLUMN limit_hit_resets_at INTEGER;
-- The seat's spend limit set by its workspace (wham/usage spend_control), amounts as sent.
ALTER TABLE usage_snapshots ADD COLUMN spend_control_reached INTEGER;  -- 0/1: limit reached
ALTER TABLE usage_snapshots ADD COLUMN spend_limit TEXT;               -- decimal string
ALTER TABLE usage_snapshots ADD COLUMN spend_used TEXT;                -- decimal string
ALTER TABLE usage_snapshots ADD COLUMN spend_used_percent REAL;        -- 0..100
ALTER TABLE usage_snapshots ADD COLUMN spend_resets_at INTEGER;        -- next reset
ALTER TABLE usage_snapshots ADD COLUMN spend_source TEXT;  -- e.g. 'workspace_spend_controls'

-- One row per proxied HTTP request or WebSocket turn.
CREATE TABLE requests (
    id                  INTEGER PRIMARY KEY,
    started_at          REAL NOT NULL,  -- when the request (or the turn's response.create) arrived
    -- The seat whose credentials the request carried; NULL when it carried none. Deleting the
    -- account deletes its requests.
    account_id          INTEGER REFERENCES accounts (id) ON DELETE CASCADE,
    method              TEXT NOT NULL,  -- 'POST', 'GET', ...
    path                TEXT NOT NULL,  -- without the query string
    transport           TEXT NOT NULL CHECK (transport IN ('http', 'sse', 'websocket')),
    status              INTEGER,        -- HTTP status; a WebSocket turn: 200 or its error's status;
                                        -- NULL when no response came (upstream unreachable, ...)
    model               TEXT,           -- the model the request asked for
    upstream_request_id TEXT,           -- the upstream's id for the request, when it sent one
    response_id         TEXT,           -- 'resp_...' of the turn
    ttfb_ms             REAL,           -- milliseconds until the first response byte (or frame)
    duration_ms         REAL,           -- milliseconds until the response ended
    bytes_in            INTEGER NOT NULL DEFAULT 0,  -- body bytes from the client (as on the wire)
    bytes_out           INTEGER NOT NULL DEFAULT 0,  -- body bytes to the client (as on the wire)
    -- From response.completed's usage; NULL when the turn did not complete or it is no turn.
    input_tokens        INTEGER,
    cached_input_tokens INTEGER,        -- part of input_tokens
    output_tokens       INTEGER,
    reasoning_tokens    INTEGER,        -- part of output_tokens
    total_tokens        INTEGER,
    error_code          TEXT            -- e.g. response.failed's error code, or a quota error type
);

-- The request log across all accounts, newest first (started_at DESC, id DESC: every index ends
-- with the rowid id, so this needs no sort), and time-range pruning.
CREATE INDEX requests_time ON requests (started_at);

-- One account's requests over time; also serves the ON DELETE CASCADE from accounts.
CREATE INDEX requests_account_time ON requests (account_id, started_at);

-- latest_usage as in version 1 (same columns, same names), with the new columns and their
-- countdowns added at the end. A view cannot be altered: it is dropped and created again.
DROP VIEW latest_usage;

-- The newest usage_snapshots row of each account and limit family, with its account and live
-- countdowns. "Newest" is the greatest (captured_at, id); codexgate never writes a row older
-- than the newest one of the same account and limit, so this is also the highest id.
-- age_seconds: seconds since the values were last confirmed; *_reset_in_seconds: seconds until
-- that window resets, the hit limit comes back or the spend limit resets (negative once that
-- time has passed; NULL when unknown).
-- The recursive part walks the (account_id, limit_id, captured_at) index one key at a time, so
-- the view costs a few index probes per account instead of a scan of the whole history.
CREATE VIEW latest_usage AS
WITH RECURSIVE
    account_limits (account_id, limit_id) AS (
        SELECT a.id,
               (SELECT min(s.limit_id) FROM usage_snapshots AS s WHERE s.account_id = a.id)
        FROM accounts AS a
        UNION ALL
        SELECT al.account_id,
               (SELECT min(s.limit_id) FROM usage_snapshots AS s
                WHERE s.account_id = al.account_id AND s.limit_id > al.limit_id)
        FROM account_limits AS al
        WHERE al.limit_id IS NOT NULL
    ),
    -- julianday() rather than unixepoch('subsec'): works on every SQLite >= 3.37.
    clock (now) AS (SELECT (julianday('now') - 2440587.5) * 86400.0)
SELECT
    s.id,
    s.account_id,
    a.account_key,
    a.display_name,
    a.email,
    a.plan_type AS account_plan_type,
    s.limit_id,
    s.limit_name,
    s.captured_at,
    s.confirmed_at,
    clock.now - s.confirmed_at AS age_seconds,
    s.source,
    s.http_status,
    s.plan_type,
    s.active_limit,
    s.rate_limit_reached_type,
    s.five_hour_used_percent,
    s.five_hour_window_minutes,
    s.five_hour_resets_at,
    s.five_hour_resets_at - clock.now AS five_hour_reset_in_seconds,
    s.seven_day_used_percent,
    s.seven_day_window_minutes,
    s.seven_day_resets_at,
    s.seven_day_resets_at - clock.now AS seven_day_reset_in_seconds,
    s.monthly_used_percent,
    s.monthly_window_minutes,
    s.monthly_resets_at,
    s.monthly_resets_at - clock.now AS monthly_reset_in_seconds,
    s.primary_window,
    s.primary_classified_by,
    s.primary_used_percent,
    s.primary_window_minutes,
    s.primary_resets_at,
    s.secondary_window,
    s.secondary_classified_by,
    s.secondary_used_percent,
    s.secondary_window_minutes,
    s.secondary_resets_at,
    s.over_secondary_limit_percent,
    s.credits_has_credits,
    s.credits_unlimited,
    s.credits_balance,
    s.limit_hit_type,
    s.limit_hit_resets_at,
    s.limit_hit_resets_at - clock.now AS limit_hit_reset_in_seconds,
    s.spend_control_reached,
    s.spend_limit,
    s.spend_used,
    s.spend_used_percent,
    s.spend_resets_at,
    s.spend_resets_at - clock.now AS spend_reset_in_seconds,
    s.spend_source
FROM account_limits AS al
JOIN usage_snapshots AS s
    ON s.id = (SELECT x.id FROM usage_snapshots AS x
               WHERE x.account_id = al.account_id AND x.limit_id = al.limit_id
               ORDER BY x.captured_at DESC, x.id DESC
               LIMIT 1)
JOIN accounts AS a ON a.id = s.account_id
CROSS JOIN clock;
