-- The audit log: one entry per change, written in the change's transaction, and per
-- security event. Field names only, never values. Mirrors migrations/sqlite/0010_audit_log.sql.
CREATE TABLE audit_log (
    id            TEXT PRIMARY KEY,
    at            TIMESTAMPTZ NOT NULL,
    tenant_id     TEXT NOT NULL DEFAULT '',
    actor_key_id  TEXT,
    actor_prefix  TEXT,
    action        TEXT NOT NULL,
    target_type   TEXT NOT NULL,
    target_id     TEXT,
    client_addr   TEXT,
    user_agent    TEXT,
    request_id    TEXT,
    -- success | refused | suspended
    outcome       TEXT NOT NULL,
    -- the names of the fields a change set, space-separated
    changed       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
CREATE INDEX audit_log_at ON audit_log (at);
