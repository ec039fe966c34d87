-- A key suspended for misbehaving (refused scopes, or kept over its limit) until an operator
-- lifts it with PATCH {"active": true}. Mirrors migrations/sqlite/0011_key_suspension.sql.
ALTER TABLE api_keys ADD COLUMN suspended_at TIMESTAMPTZ;
ALTER TABLE api_keys ADD COLUMN suspended_reason TEXT;
