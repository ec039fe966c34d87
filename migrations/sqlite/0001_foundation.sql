-- Foundation: schedule bookkeeping, leader leases for the embedded mode, canary runs.
-- Times are RFC 3339 text written by the application (never SQLite's CURRENT_TIMESTAMP,
-- whose format would not compare with ours).

-- One row per schedule: the last cron tick handled, so that ticks missed while the
-- scheduler was down run once, not once per missed tick.
CREATE TABLE schedule_state (
    name            TEXT PRIMARY KEY,
    last_tick_at    TEXT NOT NULL,
    last_run_at     TEXT,
    last_success_at TEXT,
    last_error      TEXT,
    runs            BIGINT NOT NULL DEFAULT 0,
    failures        BIGINT NOT NULL DEFAULT 0
);

-- Named leases (the scheduler's leader lock when there is no Redis).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- Each canary job: enqueued by the `canary` schedule or POST /queues/{queue}/canary, and
-- completed by a worker. `completions` > 1 shows a job that ran twice (at-least-once).
CREATE TABLE canary_runs (
    id           TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    job_id       TEXT,
    enqueued_at  TEXT NOT NULL,
    completed_at TEXT,
    latency_ms   BIGINT,
    completions  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX canary_runs_queue_enqueued ON canary_runs (queue, enqueued_at);
