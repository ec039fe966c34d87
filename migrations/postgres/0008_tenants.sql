-- Tenants: each customer's keys, endpoints, events, deliveries, usage and Sikka practices
-- belong to one. Platform-level rows (everything from before tenants, Switchyard's own
-- events) carry the empty string rather than NULL, so one `tenant_id = $n` reads the same
-- on both backends. Mirrors migrations/sqlite/0008_tenants.sql.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- a JSON object, the caller's own
    metadata    TEXT NOT NULL,
    -- active | deleted
    status      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ
);

ALTER TABLE api_keys ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

ALTER TABLE webhook_endpoints ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

ALTER TABLE webhook_events ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_deliveries ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';

ALTER TABLE api_usage ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';

ALTER TABLE sikka_practices ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
