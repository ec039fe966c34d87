-- Discards a waiting task (due, delayed, or waiting for a retry): out of the active list,
-- our delayed set or apalis' scheduled set, into the dead set with status Killed, where
-- `retry` can bring it back and `queue-vacuum` trims it. A task a worker holds is running
-- and is left alone.
-- KEYS[1] active list, KEYS[2] delayed zset, KEYS[3] scheduled zset, KEYS[4] dead set,
-- KEYS[5] meta key; ARGV[1] task id, ARGV[2] now (unix seconds)
-- Returns 1 if discarded, 0 if the task was not waiting.
local id = ARGV[1]
local removed = redis.call('ZREM', KEYS[2], id)
if removed == 0 then
  removed = redis.call('ZREM', KEYS[3], id)
end
if removed == 0 then
  removed = redis.call('LREM', KEYS[1], 1, id)
end
if removed == 0 then
  return 0
end
redis.call('SADD', KEYS[4], id)
redis.call('HSET', KEYS[5], 'status', 'Killed', 'result', '"discarded"', 'done_at', ARGV[2])
return 1
