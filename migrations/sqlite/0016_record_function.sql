-- Nothing on SQLite: PostgreSQL's 0016 adds `switchyard_record_attempts`, the record of a
-- batch in one call; SQLite records through the statements in
-- `shared/src/webhooks/store/deliveries.rs`. Kept so both stores count the same versions.
SELECT 1;
