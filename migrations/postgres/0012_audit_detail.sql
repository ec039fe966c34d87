-- A security event's summary in words (how many failed authentications, why a key was
-- suspended). Never a secret, a key or a payload. Mirrors migrations/sqlite/0012_audit_detail.sql.
ALTER TABLE audit_log ADD COLUMN detail TEXT NOT NULL DEFAULT '';
