-- A batch of attempt records in one call, so one round trip in autocommit: the attempt rows,
-- the deliveries' new states and the health of the endpoints whose health changes, those
-- endpoint rows locked in id order first (every recorder calls this one function, so two
-- workers recording for the same endpoints wait for each other instead of deadlocking).
-- The planner settings are the function's own (what `begin_by_key`'s `SET LOCAL`s were
-- for the record's transaction: BEGIN with them, the statements, COMMIT were three round
-- trips): keyed lookups in nested loops only, and generic plans made once per connection,
-- since a burst fills `webhook_deliveries` far faster than its statistics follow.
-- Mirrors no SQLite migration: SQLite records through the statements in
-- `shared/src/webhooks/store/deliveries.rs` (0016 there is empty).
CREATE FUNCTION switchyard_record_attempts(
  p_ids text[], p_ns int8[], p_ats timestamptz[], p_codes int4[], p_durations float8[],
  p_outcomes text[], p_errors text[], p_bodies text[], p_statuses text[],
  p_next_ats timestamptz[],
  p_endpoints text[], p_quiet_after timestamptz[], p_reset bool[], p_failures int8[],
  p_ok_at timestamptz[], p_failed_at timestamptz[], p_endpoint_errors text[], p_gone bool[])
RETURNS void
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  WITH v AS (
    SELECT * FROM UNNEST(p_ids, p_ns, p_ats, p_codes, p_durations, p_outcomes, p_errors,
      p_bodies, p_statuses, p_next_ats)
      AS v(id, n, at, code, duration_ms, outcome, err, body, status, next_at)
  ), attempts AS (
    INSERT INTO webhook_attempts (delivery_id, n, at, status_code, duration_ms, outcome, error,
      response_body)
    SELECT id, n, at, code, duration_ms, outcome, err, body FROM v
    ON CONFLICT (delivery_id, n) DO NOTHING
  ), states AS (
    UPDATE webhook_deliveries SET attempts = v.n, status = v.status,
      next_attempt_at = v.next_at, claimed_until = NULL, last_status_code = v.code,
      last_error = v.err, updated_at = v.at,
      delivered_at = CASE WHEN v.status = 'delivered' THEN v.at
                          ELSE webhook_deliveries.delivered_at END
    FROM v WHERE webhook_deliveries.id = v.id AND webhook_deliveries.attempts = v.n - 1
  ), h AS (
    SELECT * FROM UNNEST(p_endpoints, p_quiet_after, p_reset, p_failures, p_ok_at, p_failed_at,
      p_endpoint_errors, p_gone)
      AS h(id, quiet_after, reset, failures, ok_at, failed_at, err, gone)
  ), changing AS MATERIALIZED (
    -- A batch of nothing but successes for an endpoint with no failures and a recent
    -- success (`quiet_after`) leaves its row alone: neither locked nor written.
    SELECT e.id FROM webhook_endpoints e JOIN h ON e.id = h.id
    WHERE h.quiet_after IS NULL OR e.failure_count <> 0 OR e.last_success_at IS NULL
      OR e.last_success_at < h.quiet_after
    ORDER BY e.id FOR UPDATE OF e
  )
  UPDATE webhook_endpoints SET
    failure_count = CASE WHEN h.reset THEN h.failures
                         ELSE webhook_endpoints.failure_count + h.failures END,
    last_success_at = COALESCE(h.ok_at, webhook_endpoints.last_success_at),
    last_failure_at = COALESCE(h.failed_at, webhook_endpoints.last_failure_at),
    last_error = COALESCE(h.err, webhook_endpoints.last_error),
    enabled = CASE WHEN h.gone THEN FALSE ELSE webhook_endpoints.enabled END,
    disabled_reason = CASE WHEN h.gone THEN 'the endpoint answered 410 Gone'
                           ELSE webhook_endpoints.disabled_reason END,
    disabled_at = CASE WHEN h.gone THEN h.failed_at ELSE webhook_endpoints.disabled_at END,
    -- A change other workers must see at their next claim (health alone is not).
    updated_at = CASE WHEN h.gone THEN h.failed_at ELSE webhook_endpoints.updated_at END
  FROM changing JOIN h ON h.id = changing.id
  WHERE webhook_endpoints.id = changing.id;
END
$$;
