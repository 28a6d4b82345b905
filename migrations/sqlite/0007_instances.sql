-- codexgate schema, version 7: several codexgate processes on one database (a rolling restart
-- on one machine; on PostgreSQL, instances on many). Each says it is alive in `instances`; the
-- one that holds the lease in `leases` does the singleton work (alert evaluation, webhook
-- delivery, retention); `alert_outbox` holds the alerts fired but not yet delivered, so that
-- the next holder delivers what a dead one could not.
--
-- Conventions as in 0001: *_at columns are REAL unix seconds (UTC, fractions allowed).

CREATE TABLE instances (
    id         TEXT PRIMARY KEY,   -- random, new at each start
    hostname   TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    version    TEXT NOT NULL,
    started_at REAL NOT NULL,
    seen_at    REAL NOT NULL,      -- the last heartbeat
    role       TEXT NOT NULL CHECK (role IN ('leader', 'standby', 'stopped'))
);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,   -- 'singleton'
    holder     TEXT NOT NULL,      -- instances.id of the holder
    expires_at REAL NOT NULL,
    cursor     INTEGER NOT NULL DEFAULT 0  -- the newest usage row id the holder evaluated
);

CREATE TABLE alert_outbox (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts (id) ON DELETE CASCADE
);
