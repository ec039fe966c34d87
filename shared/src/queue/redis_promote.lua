-- Moves due tasks from our `delayed` set onto the active list, at most ARGV[2] at a time.
-- KEYS[1] delayed zset, KEYS[2] active list, KEYS[3] signal list; ARGV[1] now (ms)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], unpack(ids))
redis.call('ZREM', KEYS[1], unpack(ids))
redis.call('DEL', KEYS[3])
redis.call('LPUSH', KEYS[3], 1)
return #ids
