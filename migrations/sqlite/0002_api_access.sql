-- API access: hashed keys with scopes, per-request usage records, idempotency keys.

-- Keys are stored as a SHA-256 digest (never the raw key); `prefix` is the display part.
-- `scopes` is space-separated; status is derived: revoked_at, then expires_at.
CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    key_hash              TEXT NOT NULL UNIQUE,
    prefix                TEXT NOT NULL,
    scopes                TEXT NOT NULL,
    environment           TEXT NOT NULL,
    rate_limit_per_minute BIGINT,
    expires_at            TEXT,
    revoked_at            TEXT,
    deleted_at            TEXT,
    created_by            TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    last_used_at          TEXT,
    usage_count           BIGINT NOT NULL DEFAULT 0
);

-- One row per authenticated request, written in batches off the request path.
CREATE TABLE api_usage (
    id          INTEGER PRIMARY KEY,
    key_id      TEXT NOT NULL,
    at          TEXT NOT NULL,
    method      TEXT NOT NULL,
    route       TEXT NOT NULL,
    status      INTEGER NOT NULL,
    latency_ms  REAL NOT NULL,
    client_addr TEXT,
    user_agent  TEXT,
    error_kind  TEXT
);
CREATE INDEX api_usage_key_at ON api_usage (key_id, at);
CREATE INDEX api_usage_at ON api_usage (at);

-- The first response to a POST with an Idempotency-Key, per API key, for 24 h.
CREATE TABLE idempotency_keys (
    api_key_id            TEXT NOT NULL,
    idem_key              TEXT NOT NULL,
    request_hash          TEXT NOT NULL,
    state                 TEXT NOT NULL,
    response_status       INTEGER,
    response_content_type TEXT,
    response_body         TEXT,
    created_at            TEXT NOT NULL,
    expires_at            TEXT NOT NULL,
    PRIMARY KEY (api_key_id, idem_key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
