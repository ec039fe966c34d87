-- Depth of one queue in a single round trip.
-- KEYS[1] active list, KEYS[2] scheduled zset, KEYS[3] workers zset, KEYS[4] dead set,
-- KEYS[5] done set, KEYS[6] data hash, KEYS[7] meta prefix, KEYS[8] inflight prefix,
-- KEYS[9] our delayed zset (ms scores)
-- ARGV[1] now (unix seconds), ARGV[2] max scheduled entries to inspect for the failed count,
-- ARGV[3] now (ms)
-- Returns {pending, scheduled_future, scheduled_due, running, failed, dead, done,
--          oldest_active_data or false, oldest_due_score or false}
local now = tonumber(ARGV[1])
local pending = redis.call('LLEN', KEYS[1])
local due = redis.call('ZCOUNT', KEYS[2], '-inf', now)
  + redis.call('ZCOUNT', KEYS[9], '-inf', ARGV[3])
local future = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
  + redis.call('ZCOUNT', KEYS[9], '(' .. ARGV[3], '+inf')

local running = 0
for _, worker in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  running = running + redis.call('SCARD', KEYS[8] .. ':' .. worker)
end

local failed = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1)) do
  if redis.call('HGET', KEYS[7] .. ':' .. id, 'status') == 'Failed' then
    failed = failed + 1
  end
end

local oldest_data = false
local head = redis.call('LINDEX', KEYS[1], 0)
if head then
  oldest_data = redis.call('HGET', KEYS[6], head) or false
end
local oldest_due = false
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[2] and tonumber(first[2]) <= now then
  oldest_due = tostring(tonumber(first[2]) * 1000)
end
local delayed = redis.call('ZRANGE', KEYS[9], 0, 0, 'WITHSCORES')
if delayed[2] and tonumber(delayed[2]) <= tonumber(ARGV[3]) then
  if oldest_due == false or tonumber(delayed[2]) < tonumber(oldest_due) then
    oldest_due = delayed[2]
  end
end

return {pending, future, due, running, failed, redis.call('SCARD', KEYS[4]),
        redis.call('SCARD', KEYS[5]), oldest_data, oldest_due}
