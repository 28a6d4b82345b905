-- codexgate schema, version 4: alerts (what fired, and what has fired for the current crossing)
-- and the webhooks added through the API.
--
-- Conventions as in 0001: *_at columns are REAL unix seconds, *_resets_at INTEGER unix seconds.

-- Every alert that fired, in the order it fired; the feed sends each once, its id in the event
-- id. An alert outlives its account (account_id becomes NULL, the name it had stays), so rows
-- are never deleted with an account and ids never come back.
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    at           REAL NOT NULL,
    kind         TEXT NOT NULL
                 CHECK (kind IN ('threshold', 'limit_hit', 'limit_reset', 'forecast', 'stale', 'test')),
    account_id   INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    account      TEXT,     -- the account's display name or email when it fired
    limit_id     TEXT,
    window       TEXT,     -- '5h', '7d', 'monthly', ...; NULL for the whole account
    used_percent REAL,
    threshold    REAL,     -- the crossed threshold (kind 'threshold')
    resets_at    INTEGER,
    exhausts_at  REAL,     -- the forecast's exhaustion time (kind 'forecast')
    message      TEXT NOT NULL
);
CREATE INDEX alerts_time ON alerts (at);

-- What has fired for the current crossing of each rule, so that a rule fires once per crossing
-- and not on every snapshot, also across restarts. `rule` is 'threshold:<percent>', 'limit_hit',
-- 'forecast' or 'stale'; `period` is the window's reset time when it fired (a new period, or the
-- value falling back below the threshold, re-arms the rule by deleting the row).
CREATE TABLE alert_state (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    limit_id   TEXT NOT NULL,
    window     TEXT NOT NULL,  -- '*' for rules about the whole limit family (limit hit, stale)
    rule       TEXT NOT NULL,
    period     INTEGER,
    fired_at   REAL NOT NULL,
    PRIMARY KEY (account_id, limit_id, window, rule)
) WITHOUT ROWID;

-- Webhooks added through the API (those of the config file are not stored here). The URL is a
-- secret (Slack and Discord URLs carry their token): no answer shows more than its origin.
CREATE TABLE webhooks (
    id         INTEGER PRIMARY KEY,
    url        TEXT NOT NULL UNIQUE,
    format     TEXT NOT NULL CHECK (format IN ('json', 'slack', 'discord')),
    name       TEXT,
    created_at REAL NOT NULL
);
