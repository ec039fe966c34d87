-- Moves due tasks from our `delayed` set onto the active list, at most ARGV[2] at a time,
-- and announces them on the wake channel.
-- KEYS[1] delayed zset, KEYS[2] active list, KEYS[3] signal list; ARGV[1] now (ms),
-- ARGV[2] max, ARGV[3] wake channel
-- Returns {moved, score of the next delayed task or false}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('RPUSH', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
  redis.call('PUBLISH', ARGV[3], #ids)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#ids, next[2] or false}
