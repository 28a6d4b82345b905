-- Several codexgate instances on one database: what migrations/sqlite/0007_instances.sql adds,
-- numbered alike so that both backends report schema version 7. Each instance says it is alive
-- in `instances`; the one that holds the lease in `leases` does the singleton work (alert
-- evaluation, webhook delivery, retention); `alert_outbox` holds the alerts fired but not yet
-- delivered, so that the next holder delivers what a dead one could not. Times are the
-- database's clock (unix seconds), so instances whose clocks differ agree on the lease.

CREATE TABLE instances (
    id         text PRIMARY KEY,
    hostname   text NOT NULL,
    pid        integer NOT NULL,
    version    text NOT NULL,
    started_at double precision NOT NULL,
    seen_at    double precision NOT NULL,
    role       text NOT NULL CHECK (role IN ('leader', 'standby', 'stopped'))
);

CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at double precision NOT NULL,
    cursor     bigint NOT NULL DEFAULT 0
);

CREATE TABLE alert_outbox (
    alert_id bigint PRIMARY KEY REFERENCES alerts (id) ON DELETE CASCADE
);
