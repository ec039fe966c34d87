-- GCRA in one atomic step, on Redis' own clock so that every process agrees.
-- KEYS[1] the bucket; ARGV[1] interval between requests (ms, may be fractional);
-- ARGV[2] burst. Returns {allowed 0/1, remaining, reset (unix ms), retry_after (ms)}.
redis.replicate_commands()
local t = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tau = t * (burst - 1)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local allow_at = tat - tau
if now < allow_at then
  return {0, 0, math.ceil(tat), math.ceil(allow_at - now)}
end
local new_tat = tat + t
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
local remaining = math.floor((now - new_tat) / t) + burst
if remaining < 0 then remaining = 0 end
return {1, remaining, math.ceil(new_tat), 0}
