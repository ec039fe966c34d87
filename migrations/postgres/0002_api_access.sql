-- API access: hashed keys with scopes, per-request usage records, idempotency keys.
-- Mirrors migrations/sqlite/0002_api_access.sql.

CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    key_hash              TEXT NOT NULL UNIQUE,
    prefix                TEXT NOT NULL,
    scopes                TEXT NOT NULL,
    environment           TEXT NOT NULL,
    rate_limit_per_minute BIGINT,
    expires_at            TIMESTAMPTZ,
    revoked_at            TIMESTAMPTZ,
    deleted_at            TIMESTAMPTZ,
    created_by            TEXT,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    last_used_at          TIMESTAMPTZ,
    usage_count           BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE api_usage (
    id          BIGSERIAL PRIMARY KEY,
    key_id      TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    method      TEXT NOT NULL,
    route       TEXT NOT NULL,
    status      INTEGER NOT NULL,
    latency_ms  DOUBLE PRECISION NOT NULL,
    client_addr TEXT,
    user_agent  TEXT,
    error_kind  TEXT
);
CREATE INDEX api_usage_key_at ON api_usage (key_id, at);
CREATE INDEX api_usage_at ON api_usage (at);

CREATE TABLE idempotency_keys (
    api_key_id            TEXT NOT NULL,
    idem_key              TEXT NOT NULL,
    request_hash          TEXT NOT NULL,
    state                 TEXT NOT NULL,
    response_status       INTEGER,
    response_content_type TEXT,
    response_body         TEXT,
    created_at            TIMESTAMPTZ NOT NULL,
    expires_at            TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (api_key_id, idem_key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
