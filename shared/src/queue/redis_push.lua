-- Pushes tasks the way apalis' batch_push.lua stores them (data hash, meta hash), except
-- where they go: due tasks straight onto the active list, delayed ones into our own
-- `delayed` set (scored in ms), which workers promote in bounded chunks. apalis parks every
-- task in its `scheduled` set and its fetch script promotes all due ones with a single
-- unpack(), which fails past ~8000 ids and then stops every worker for good.
-- Due tasks are announced on the channel apalis' own scripts use
-- (`tasks:<active list>:available`), once per push, which wakes idle workers at once.
-- KEYS[1] data hash, KEYS[2] active list, KEYS[3] signal list, KEYS[4] meta prefix,
-- KEYS[5] delayed zset
-- ARGV[1] now (ms), ARGV[2] max attempts, ARGV[3] wake channel, then triples: id, data,
-- run_at (ms, 0 = now)
local now = tonumber(ARGV[1])
local immediate = 0
for i = 4, #ARGV, 3 do
  local id, data, run_at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if redis.call('HSETNX', KEYS[1], id, data) == 1 then
    redis.call('HSET', KEYS[4] .. ':' .. id, 'attempts', 0, 'max_attempts', ARGV[2],
      'status', 'Pending', 'idempotency_key', '')
    if run_at > now then
      redis.call('ZADD', KEYS[5], run_at, id)
    else
      redis.call('RPUSH', KEYS[2], id)
      immediate = immediate + 1
    end
  end
end
if immediate > 0 then
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
  redis.call('PUBLISH', ARGV[3], immediate)
end
return immediate
