-- Per-key quotas over UTC calendar windows, beside the per-minute rate (NULL: the server's
-- default, SWITCHYARD_RATE_LIMIT_PER_{HOUR,DAY,MONTH}). Mirrors migrations/postgres/0009_key_quotas.sql.
ALTER TABLE api_keys ADD COLUMN rate_limit_per_hour BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_limit_per_day BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_limit_per_month BIGINT;
