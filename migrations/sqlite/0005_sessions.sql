-- codexgate schema, version 5: server-side sign-in sessions, so that reading the database is
-- not enough to sign in.
--
-- Conventions as in 0001: *_at columns are REAL unix seconds (UTC, fractions allowed).

-- One row per signed-in browser. The session cookie carries a random 32-byte id; only its
-- SHA-256 is kept here, and a hash cannot be turned back into a cookie. Signing out deletes
-- the row, "sign out everywhere" and a new admin token delete them all.
CREATE TABLE sessions (
    id_sha256    TEXT PRIMARY KEY,  -- hex SHA-256 of the cookie's value, never the value
    created_at   REAL NOT NULL,     -- when the browser signed in
    expires_at   REAL NOT NULL,     -- when the session ends unless it is ended before
    last_used_at REAL NOT NULL      -- the last request it signed, written at most once a minute
) WITHOUT ROWID;
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Version 3 signed cookies with this key, kept in the database: a reader of the file could sign
-- its own cookie. Deleting it ends every session it signed.
DELETE FROM settings WHERE name = 'cookie_key';
