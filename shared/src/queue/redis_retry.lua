-- Puts a dead or failed task back on the active list to run now.
-- KEYS[1] dead set, KEYS[2] scheduled zset, KEYS[3] active list, KEYS[4] meta key,
-- KEYS[5] signal list; ARGV[1] task id, ARGV[2] wake channel
-- Returns 1 if requeued, 0 if the task is in neither place.
local id = ARGV[1]
local moved = redis.call('SREM', KEYS[1], id)
if moved == 0 then
  if redis.call('HGET', KEYS[4], 'status') == 'Failed' then
    moved = redis.call('ZREM', KEYS[2], id)
  end
end
if moved == 0 then
  return 0
end
redis.call('HSET', KEYS[4], 'status', 'Pending', 'attempts', 0)
redis.call('RPUSH', KEYS[3], id)
redis.call('DEL', KEYS[5])
redis.call('LPUSH', KEYS[5], 1)
redis.call('PUBLISH', ARGV[2], 1)
return 1
