-- Foundation: schedule bookkeeping, leader leases (unused when Redis holds the lock),
-- canary runs. Mirrors migrations/sqlite/0001_foundation.sql with native types.

-- One row per schedule: the last cron tick handled, so that ticks missed while the
-- scheduler was down run once, not once per missed tick.
CREATE TABLE schedule_state (
    name            TEXT PRIMARY KEY,
    last_tick_at    TIMESTAMPTZ NOT NULL,
    last_run_at     TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ,
    last_error      TEXT,
    runs            BIGINT NOT NULL DEFAULT 0,
    failures        BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- `completions` > 1 shows a job that ran twice (at-least-once delivery).
CREATE TABLE canary_runs (
    id           TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    job_id       TEXT,
    enqueued_at  TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    latency_ms   BIGINT,
    completions  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX canary_runs_queue_enqueued ON canary_runs (queue, enqueued_at DESC);
