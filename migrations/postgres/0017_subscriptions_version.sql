-- A counter of changes to what endpoints are subscribed to (added, removed, enabled or
-- disabled, deleted, event types, owner), bumped by triggers in the changing transaction,
-- whoever makes the change (the API, a worker disabling a 410 endpoint, the scheduler
-- disabling a failing one, a tenant's delete). The publisher keeps the subscriptions it
-- read with their version and writes a group only while the version is the same (checked
-- in the publish statement itself): the read of every endpoint before each group, a round
-- trip per group, is gone. Mirrors migrations/sqlite/0017_subscriptions_version.sql.
CREATE TABLE webhook_subscriptions_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO webhook_subscriptions_version (id, version) VALUES (1, 0);

CREATE FUNCTION switchyard_subscriptions_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE webhook_subscriptions_version SET version = version + 1 WHERE id = 1;
  RETURN NULL;
END
$$;

CREATE TRIGGER webhook_endpoints_added_or_removed
  AFTER INSERT OR DELETE OR TRUNCATE ON webhook_endpoints
  FOR EACH STATEMENT EXECUTE FUNCTION switchyard_subscriptions_changed();

-- Health updates (most updates of the table) change none of these and bump nothing.
CREATE TRIGGER webhook_endpoints_subscription_changed
  AFTER UPDATE ON webhook_endpoints
  FOR EACH ROW
  WHEN (OLD.enabled IS DISTINCT FROM NEW.enabled
        OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
        OR OLD.event_types IS DISTINCT FROM NEW.event_types
        OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
  EXECUTE FUNCTION switchyard_subscriptions_changed();
