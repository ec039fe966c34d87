-- (pairs migrations/sqlite/0007_pidms_order.sql) Nothing to do on PostgreSQL: NULLs already
-- sort last in ascending order, so the existing (prd, remaining DESC, keyname) indexes serve
-- the search's order with keys without a product last.
SELECT 1;
