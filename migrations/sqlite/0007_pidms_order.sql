-- Keys without a product (PIDKey's invalid keys) sort after every product, as on PostgreSQL,
-- where NULLs sort last by default. SQLite sorts NULL first, so the ordered indexes of the
-- search lead with `prd IS NULL` (the search orders by the same expression), and the blocked
-- keys' partial index follows suit.
CREATE INDEX pidms_keys_order ON pidms_keys (prd IS NULL, prd, remaining DESC, keyname);
CREATE INDEX pidms_keys_blocked_order ON pidms_keys (prd IS NULL, prd, remaining DESC, keyname)
    WHERE blocked = 1;
DROP INDEX pidms_keys_blocked;
