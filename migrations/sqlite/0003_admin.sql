-- codexgate schema, version 3: instance settings for the admin surface, and a log of changes to
-- accounts that the live feed replays.
--
-- Conventions as in 0001: *_at columns are REAL unix seconds (UTC, fractions allowed).

-- Instance-wide values the gateway keeps between starts, by name: the admin token's hash, the
-- key that signs session cookies, ... Never a client's bearer token. Values are text as the
-- code wrote them; a name is written once on first start and changed only on request.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per change to an account, written in the transaction that made the change: 'created'
-- (traffic first seeing a seat, or a person adding it), 'updated' (renamed, or added again),
-- 'deleted'. The feed sends each row once, its id as the event id, and replays the rows after
-- a reconnecting client's last id. No foreign key: a 'deleted' row outlives its account, and
-- account_id may name an id that a later account was given again.
CREATE TABLE account_events (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,  -- accounts.id at the time of the change
    kind       TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
    at         REAL NOT NULL      -- when the change was written
);
