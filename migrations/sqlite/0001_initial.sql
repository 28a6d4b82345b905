-- codexgate schema, version 1: accounts, their usage history and the latest usage per account.
--
-- Conventions: every *_at column is REAL unix seconds (UTC, fractions allowed), except the
-- *_resets_at columns, which are INTEGER unix seconds as the upstream reports them. NULL in a
-- usage column means "not reported / unknown", never 0. Booleans are INTEGER 0/1 (NULL = unknown).
-- Example: SELECT datetime(captured_at, 'unixepoch') FROM usage_snapshots;

-- One row per ChatGPT seat the gateway has seen (or a person has named).
CREATE TABLE accounts (
    id                 INTEGER PRIMARY KEY,
    -- Stable identity: 'seat:<chatgpt_account_id>:<chatgpt_user_id>', or 'token:<sha256>' for a
    -- bearer token that is not a ChatGPT JWT. Token refreshes keep the same key.
    account_key        TEXT NOT NULL UNIQUE,
    chatgpt_account_id TEXT,     -- workspace/account id from the token claims or header
    chatgpt_user_id    TEXT,     -- user id from the token claims
    display_name       TEXT,     -- name given by a person; NULL until someone names the account
    email              TEXT,     -- newest email seen in the token claims
    plan_type          TEXT,     -- newest plan seen: the upstream's report, else the token claim
    token_fingerprint  TEXT,     -- sha256 hex of the last bearer token seen (never the token)
    first_seen_at      REAL NOT NULL,
    last_seen_at       REAL NOT NULL  -- capture time of the newest report for this account
);

-- Usage history: one row per account, limit family and distinct set of values. Writes are
-- throttled: a report whose values equal the newest row's (reset times within 5 s) only moves
-- that row's confirmed_at; a new row is written when something changed or when the heartbeat
-- interval passed since the row's captured_at. The newest row of each account and limit is
-- therefore always current as of its confirmed_at.
CREATE TABLE usage_snapshots (
    id                      INTEGER PRIMARY KEY,
    account_id              INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    captured_at             REAL NOT NULL,  -- when these values were first reported
    confirmed_at            REAL NOT NULL,  -- the last time the same values were reported
    -- Where the report came from: response headers, a codex.rate_limits stream event, a
    -- /wham/usage body, or a 429 usage_limit_reached error body.
    source                  TEXT NOT NULL
                            CHECK (source IN ('headers', 'event', 'usage_body', 'error')),
    http_status             INTEGER,        -- status of the upstream response that carried it
    limit_id                TEXT NOT NULL,  -- limit family: 'codex', 'codex_bengalfox', ...
    limit_name              TEXT,           -- human name of the limit family, when reported
    plan_type               TEXT,           -- plan at capture: the report's, else the token claim
    active_limit            TEXT,           -- x-codex-active-limit: the family now in force
    rate_limit_reached_type TEXT,           -- which limit was hit, on a usage_limit_reached 429

    -- Windows classified by their length (5h ~ 300 min, 7d ~ 10080, monthly ~ 43200), from the
    -- first reported window with that label. NULL = that window was not reported (unknown).
    five_hour_used_percent   REAL,     -- 0..100
    five_hour_window_minutes INTEGER,  -- window length as reported
    five_hour_resets_at      INTEGER,  -- unix seconds when the window resets
    seven_day_used_percent   REAL,
    seven_day_window_minutes INTEGER,
    seven_day_resets_at      INTEGER,
    monthly_used_percent     REAL,
    monthly_window_minutes   INTEGER,
    monthly_resets_at        INTEGER,

    -- The raw slots as the upstream sent them (primary/secondary are positions, not lengths).
    primary_window           TEXT,     -- label the slot was classified as: '5h', '7d', '90m', ...
    primary_classified_by    TEXT,     -- 'length' (from window_minutes) or 'slot' (no length sent)
    primary_used_percent     REAL,
    primary_window_minutes   INTEGER,
    primary_resets_at        INTEGER,
    secondary_window         TEXT,
    secondary_classified_by  TEXT,
    secondary_used_percent   REAL,
    secondary_window_minutes INTEGER,
    secondary_resets_at      INTEGER,

    over_secondary_limit_percent REAL,  -- x-codex-over-secondary-limit-percent, when reported
    credits_has_credits      INTEGER,   -- 0/1
    credits_unlimited        INTEGER,   -- 0/1
    credits_balance          TEXT       -- decimal string exactly as sent
);

-- History of one account and limit over time; also finds the newest row of each (latest_usage).
CREATE INDEX usage_snapshots_account_limit_time
    ON usage_snapshots (account_id, limit_id, captured_at);

-- Time-range scans across all accounts (retention pruning, "what happened since").
CREATE INDEX usage_snapshots_time ON usage_snapshots (captured_at);

-- The newest usage_snapshots row of each account and limit family, with its account and live
-- countdowns. "Newest" is the greatest (captured_at, id); codexgate never writes a row older
-- than the newest one of the same account and limit, so this is also the highest id.
-- age_seconds: seconds since the values were last confirmed; *_reset_in_seconds: seconds until
-- that window resets (negative once the reset time has passed; NULL when unknown).
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
    s.credits_balance
FROM account_limits AS al
JOIN usage_snapshots AS s
    ON s.id = (SELECT x.id FROM usage_snapshots AS x
               WHERE x.account_id = al.account_id AND x.limit_id = al.limit_id
               ORDER BY x.captured_at DESC, x.id DESC
               LIMIT 1)
JOIN accounts AS a ON a.id = s.account_id
CROSS JOIN clock;
