-- codexgate schema, version 8, as migrations/sqlite/0008_limit_fields.sql: every rate-limit
-- field under the limit it belongs to.
--
-- A quota error, and the fields that speak for the whole seat, now go on the row of the limit
-- the upstream names in x-codex-active-limit (e.g. 'codex_other', one model's limit), and on the
-- 'codex' row when it names none (wham/usage bodies). Other rows have them NULL. The new columns
-- are values like the others (a change starts a new history row); rows written before version 8
-- have NULL in them: not reported.

-- Which of the workspace's spend limits is reached: 'individual', 'group_default',
-- 'workspace_default', 'role_budget', 'group_shared', 'workspace_shared'.
ALTER TABLE usage_snapshots ADD COLUMN spend_reached_limit_type text;
-- Every spend limit wham/usage named, the individual one included: a JSON list of objects
-- {"kind", "limit", "used", "remaining" (decimal strings as sent), "used_percent",
-- "remaining_percent", "resets_at" (unix seconds), "group_id", "group_name"}.
ALTER TABLE usage_snapshots ADD COLUMN spend_limits text;
-- Rate-limit reset credits the seat may still spend (rate_limit_reset_credits.available_count).
ALTER TABLE usage_snapshots ADD COLUMN reset_credits bigint;
-- The promotion text the upstream sent (x-codex-promo-message, or a usage body's promo).
ALTER TABLE usage_snapshots ADD COLUMN promo_message text;

-- latest_usage as 0001_initial.sql made it (same columns, same names), with the new columns
-- added at the end. A view cannot be altered: it is dropped and created again.
DROP VIEW latest_usage;

CREATE VIEW latest_usage AS
WITH RECURSIVE account_limits (account_id, limit_id) AS (
    SELECT a.id, (SELECT min(s.limit_id) FROM usage_snapshots AS s WHERE s.account_id = a.id)
    FROM accounts AS a
    UNION ALL
    SELECT al.account_id,
           (SELECT min(s.limit_id) FROM usage_snapshots AS s
            WHERE s.account_id = al.account_id AND s.limit_id > al.limit_id)
    FROM account_limits AS al
    WHERE al.limit_id IS NOT NULL
)
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
    s.spend_source,
    s.spend_reached_limit_type,
    s.spend_limits,
    s.reset_credits,
    s.promo_message
FROM account_limits AS al
CROSS JOIN LATERAL (
    SELECT * FROM usage_snapshots AS x
    WHERE x.account_id = al.account_id AND x.limit_id = al.limit_id
    ORDER BY x.captured_at DESC, x.id DESC
    LIMIT 1
) AS s
JOIN accounts AS a ON a.id = s.account_id
CROSS JOIN (SELECT extract(epoch FROM clock_timestamp())::double precision AS now) AS clock;
