-- Sikka (mirrors migrations/sqlite/0006_sikka.sql with native types): practices with their credentials and request keys sealed under the master key (the
-- office id too, looked up by a keyed digest), the refresh lock that makes token refreshes
-- single-flight across the fleet, and writebacks with their submission lease and poll count.

CREATE TABLE sikka_practices (
    id                         TEXT PRIMARY KEY,
    -- HMAC-SHA256 of the office id under a key derived from the master key: office ids are
    -- short, so a plain hash could be reversed by trying them all
    office_digest              TEXT NOT NULL UNIQUE,
    office_id_sealed           TEXT NOT NULL,
    secret_key_sealed          TEXT NOT NULL,
    practice_id                TEXT,
    practice_name              TEXT,
    practice_management_system TEXT,
    domain                     TEXT,
    -- listed by authorized_practices at the last pull
    authorized                 BOOLEAN NOT NULL,
    -- none | active | reauthorization_required
    token_status               TEXT NOT NULL,
    request_key_sealed         TEXT,
    refresh_key_sealed         TEXT,
    -- bumped by every new key, so a refused key is refreshed only once
    key_version                BIGINT NOT NULL DEFAULT 0,
    key_expires_at             TIMESTAMPTZ,
    refreshed_at               TIMESTAMPTZ,
    refresh_count              BIGINT NOT NULL DEFAULT 0,
    token_error                TEXT,
    refresh_lock_owner         TEXT,
    refresh_lock_until         TIMESTAMPTZ,
    created_at                 TIMESTAMPTZ NOT NULL,
    updated_at                 TIMESTAMPTZ NOT NULL
);

CREATE TABLE sikka_writebacks (
    id              TEXT PRIMARY KEY,
    practice_ref    TEXT NOT NULL REFERENCES sikka_practices (id),
    operation       TEXT NOT NULL,
    target_id       TEXT,
    body            TEXT NOT NULL,
    -- queued | submitted | pending | completed | failed
    status          TEXT NOT NULL,
    sikka_id        TEXT,
    result          TEXT,
    error           TEXT,
    submit_attempts BIGINT NOT NULL DEFAULT 0,
    check_count     BIGINT NOT NULL DEFAULT 0,
    lease_until     TIMESTAMPTZ,
    next_check_at   TIMESTAMPTZ,
    deadline_at     TIMESTAMPTZ NOT NULL,
    created_by      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    submitted_at    TIMESTAMPTZ,
    completed_at    TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL
);
-- The sweep's and the gauge's view of unfinished writebacks.
CREATE INDEX sikka_writebacks_open ON sikka_writebacks (status, next_check_at);
CREATE INDEX sikka_writebacks_created ON sikka_writebacks (created_at, id);
CREATE INDEX sikka_writebacks_practice ON sikka_writebacks (practice_ref, created_at);
