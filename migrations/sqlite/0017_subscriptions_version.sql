-- A counter of changes to what endpoints are subscribed to, bumped by triggers in the
-- changing transaction; the publisher writes a group only while it is the version of the
-- subscriptions it kept. Mirrors migrations/postgres/0017_subscriptions_version.sql.
CREATE TABLE webhook_subscriptions_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO webhook_subscriptions_version (id, version) VALUES (1, 0);

CREATE TRIGGER webhook_endpoints_added AFTER INSERT ON webhook_endpoints
BEGIN
  UPDATE webhook_subscriptions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER webhook_endpoints_removed AFTER DELETE ON webhook_endpoints
BEGIN
  UPDATE webhook_subscriptions_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER webhook_endpoints_subscription_changed
  AFTER UPDATE OF enabled, deleted_at, event_types, tenant_id ON webhook_endpoints
  WHEN OLD.enabled IS NOT NEW.enabled OR OLD.deleted_at IS NOT NEW.deleted_at
    OR OLD.event_types IS NOT NEW.event_types OR OLD.tenant_id IS NOT NEW.tenant_id
BEGIN
  UPDATE webhook_subscriptions_version SET version = version + 1 WHERE id = 1;
END;
