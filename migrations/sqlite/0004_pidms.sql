-- PIDKey inventory: every field PIDKey returns per key (stored as received), runs (a check
-- or a sync) fanned out as batches, and per-product low-stock state for edge-triggered
-- `pidms.low_inventory` events.

CREATE TABLE pidms_keys (
    keyname               TEXT PRIMARY KEY,
    keyname_with_dash     TEXT NOT NULL,
    prd                   TEXT,
    eid                   TEXT,
    is_key_type           TEXT,
    is_retail             BIGINT,
    remaining             BIGINT,
    blocked               BIGINT,
    errorcode             TEXT,
    sub                   TEXT,
    had_occurred          BIGINT,
    invalid               BIGINT,
    datetime_checked_done TEXT,
    checked_at            TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);
-- Serves the search's order (prd, remaining desc) and per-product sums.
CREATE INDEX pidms_keys_prd_remaining ON pidms_keys (prd, remaining DESC, keyname);

CREATE TABLE pidms_runs (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    status         TEXT NOT NULL,
    product_filter TEXT,
    keys_total     BIGINT NOT NULL,
    batches_total  BIGINT NOT NULL,
    batches_done   BIGINT NOT NULL DEFAULT 0,
    batches_failed BIGINT NOT NULL DEFAULT 0,
    keys_updated   BIGINT NOT NULL DEFAULT 0,
    created_by     TEXT,
    started_at     TEXT NOT NULL,
    finished_at    TEXT
);

CREATE TABLE pidms_batches (
    id           TEXT PRIMARY KEY,
    run_id       TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    keys         TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    keys_updated BIGINT NOT NULL DEFAULT 0,
    error        TEXT,
    updated_at   TEXT NOT NULL
);
CREATE INDEX pidms_batches_run ON pidms_batches (run_id, seq);

CREATE TABLE pidms_product_state (
    prd             TEXT PRIMARY KEY,
    low             BOOLEAN NOT NULL,
    total_remaining BIGINT NOT NULL,
    updated_at      TEXT NOT NULL
);
