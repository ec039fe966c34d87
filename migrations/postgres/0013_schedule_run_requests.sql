-- A run asked for through the API (POST /schedules/{name}/run): the leader runs it and
-- clears this. Mirrors migrations/sqlite/0013_schedule_run_requests.sql.
ALTER TABLE schedule_state ADD COLUMN run_requested_at TIMESTAMPTZ;
