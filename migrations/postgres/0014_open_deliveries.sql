-- An endpoint's open deliveries (pending, retrying, or being attempted) by id: what a parked
-- endpoint's backlog is read back from, oldest first. Through the (endpoint_id, id) index a
-- read-back from the start walked past every delivered row of the endpoint (5.7 ms at 10,000
-- delivered, and it ran hundreds of times in a burst); here only open rows are in the index.
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (endpoint_id, id)
  WHERE status IN ('pending', 'retrying', 'delivering');
