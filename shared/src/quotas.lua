-- Quotas over UTC calendar windows (hour, day, month), in one atomic step on Redis' clock.
-- KEYS[i] the bucket prefix of window i; ARGV[1] unix seconds to use instead of Redis' TIME
-- (0: TIME; tests drive a clock), ARGV[2] 1 to take one request, 0 to only read;
-- ARGV[2 + 2i - 1] window i's name (per_hour, per_day, per_month), ARGV[2 + 2i] its limit.
-- A request is taken from every window or from none. Returns {refused window index (0: none),
-- then per window: used, resets at (unix s)}.
redis.replicate_commands()
local now = tonumber(ARGV[1])
if now == 0 then
  now = tonumber(redis.call('TIME')[1])
end
local take = ARGV[2] == '1'

-- Howard Hinnant's civil-from-days and days-from-civil, for month boundaries.
local function civil(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end
local function days(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5)
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

local function bounds(window)
  if window == 'per_hour' then
    local s = now - now % 3600
    return s, s + 3600
  elseif window == 'per_day' then
    local s = now - now % 86400
    return s, s + 86400
  end
  local y, m = civil(math.floor(now / 86400))
  local ny, nm = y, m + 1
  if nm == 13 then ny, nm = y + 1, 1 end
  return days(y, m) * 86400, days(ny, nm) * 86400
end

local keys, used, ends = {}, {}, {}
local refused = 0
for i = 1, #KEYS do
  local window, limit = ARGV[1 + 2 * i], tonumber(ARGV[2 + 2 * i])
  local s, e = bounds(window)
  keys[i] = KEYS[i] .. ':' .. s
  used[i] = tonumber(redis.call('GET', keys[i]) or '0')
  ends[i] = e
  if take and refused == 0 and used[i] >= limit then
    refused = i
  end
end
if take and refused == 0 then
  for i = 1, #KEYS do
    used[i] = redis.call('INCR', keys[i])
    redis.call('EXPIREAT', keys[i], ends[i] + 60)
  end
end
local out = {refused}
for i = 1, #KEYS do
  out[#out + 1] = used[i]
  out[#out + 1] = ends[i]
end
return out
