-- Deletes the given finished tasks whose done_at is at or before the cutoff.
-- Only members of the done or dead set are passed in, so tasks waiting for a retry
-- (status Failed, in the scheduled set) are never touched.
-- KEYS[1] the set the ids came from (done or dead), KEYS[2] data hash, KEYS[3] meta prefix
-- ARGV[1] cutoff (unix seconds), ARGV[2..] task ids
local cutoff = tonumber(ARGV[1])
local deleted = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local meta_key = KEYS[3] .. ':' .. id
  local done_at = tonumber(redis.call('HGET', meta_key, 'done_at'))
  if done_at == nil or done_at <= cutoff then
    redis.call('SREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('DEL', meta_key)
    deleted = deleted + 1
  end
end
return deleted
