-- An attempt in flight is a lease on a pending or retrying row, no longer a status of its own.
-- The claim then sets only `claimed_until`, which no index covers: PostgreSQL updates the row
-- in place (a HOT update, no entry in any index; SQLite touches no index either) where the
-- status change wrote an entry in each of the table's six indexes (a 32-row claim: 20 → 6 µs
-- a row). Users still see `delivering`: the view `webhook_deliveries_shown` derives it, and
-- every read of a delivery's status goes through that view.
UPDATE webhook_deliveries SET status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END
  WHERE status = 'delivering';

DROP INDEX webhook_deliveries_open;
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (endpoint_id, id)
  WHERE status IN ('pending', 'retrying');

-- Open deliveries by when they are due, for the sweeps alone: a finished version needs no
-- entry.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at)
  WHERE status IN ('pending', 'retrying');

-- Finished deliveries by age, for retention alone: an open row's versions need no entry.
DROP INDEX webhook_deliveries_updated;
CREATE INDEX webhook_deliveries_updated ON webhook_deliveries (updated_at)
  WHERE status IN ('delivered', 'failed');

-- A delivery as users see it. Lists every column: a migration that adds one to
-- webhook_deliveries recreates this view.
CREATE VIEW webhook_deliveries_shown AS
SELECT id, event_id, endpoint_id,
       CASE WHEN claimed_until IS NOT NULL AND status IN ('pending', 'retrying')
            THEN 'delivering' ELSE status END AS status,
       attempts, max_attempts, next_attempt_at, claimed_until, last_status_code, last_error,
       created_at, updated_at, delivered_at, tenant_id
FROM webhook_deliveries;

-- Room on each page for a claimed version beside the row it replaces (a HOT update needs the
-- same page). In a 100,000-delivery burst: at 50, all claims were HOT; at 70, a fifth still
-- found no room and wrote six index entries, and the table was 37 MB instead of 41 MB (the
-- versions fill the room either way). New pages only: existing ones keep their fill.
ALTER TABLE webhook_deliveries SET (fillfactor = 50);
