-- Webhooks: endpoints (secrets sealed with the master key), events (the payload, stored
-- once), deliveries (one per endpoint and event; attempt count and schedule live here, so a
-- replayed queue message never resets them) and their attempts.

CREATE TABLE webhook_endpoints (
    id                        TEXT PRIMARY KEY,
    url                       TEXT NOT NULL,
    description               TEXT,
    -- space-separated patterns: exact types, `*`, or prefixes such as `pidms.*`
    event_types               TEXT NOT NULL,
    secret_sealed             TEXT NOT NULL,
    previous_secret_sealed    TEXT,
    previous_secret_until     TEXT,
    rate_limit_per_second     BIGINT,
    enabled                   BOOLEAN NOT NULL,
    disabled_reason           TEXT,
    disabled_at               TEXT,
    failure_count             BIGINT NOT NULL DEFAULT 0,
    last_success_at           TEXT,
    last_failure_at           TEXT,
    last_error                TEXT,
    environment               TEXT NOT NULL,
    created_by                TEXT,
    created_at                TEXT NOT NULL,
    updated_at                TEXT NOT NULL,
    deleted_at                TEXT
);

CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    source      TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);

-- status: pending → delivering → delivered | retrying → … | failed.
-- `claimed_until` is the lease of the attempt in flight; `next_attempt_at` when the next
-- one is due (the retry sweep re-enqueues rows due but not in the queue).
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    next_attempt_at  TEXT,
    claimed_until    TEXT,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    delivered_at     TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_updated ON webhook_deliveries (updated_at);

CREATE TABLE webhook_attempts (
    delivery_id    TEXT NOT NULL,
    n              BIGINT NOT NULL,
    at             TEXT NOT NULL,
    status_code    INTEGER,
    duration_ms    REAL NOT NULL,
    -- http_status, timeout, connect_error, blocked, redirect, endpoint_disabled, …
    outcome        TEXT NOT NULL,
    error          TEXT,
    response_body  TEXT,
    PRIMARY KEY (delivery_id, n)
);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);
