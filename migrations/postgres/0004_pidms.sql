-- PIDKey inventory (mirrors migrations/sqlite/0004_pidms.sql with native types), plus a
-- trigram index so that the case-insensitive substring search on `prd` uses an index.

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
    checked_at            TIMESTAMPTZ NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX pidms_keys_prd_remaining ON pidms_keys (prd, remaining DESC, keyname);

-- pg_trgm needs CREATE privilege on the database; without it the search still works, by a
-- scan, and the migration does not fail.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'pg_trgm unavailable: the prd substring search will scan';
END $$;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        EXECUTE 'CREATE INDEX pidms_keys_prd_trgm ON pidms_keys USING gin (lower(prd) gin_trgm_ops)';
    END IF;
END $$;

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
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ
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
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX pidms_batches_run ON pidms_batches (run_id, seq);

CREATE TABLE pidms_product_state (
    prd             TEXT PRIMARY KEY,
    low             BOOLEAN NOT NULL,
    total_remaining BIGINT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
