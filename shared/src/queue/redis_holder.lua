-- The worker whose in-flight set holds a task, if any (tasks are not "locked" in their
-- metadata: apalis' lease script scans the whole active list per task, which is quadratic
-- under a backlog, so leases are off and in-flight sets say who runs what).
-- KEYS[1] workers zset; ARGV[1] in-flight set prefix; ARGV[2] task id
for _, worker in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('SISMEMBER', ARGV[1] .. ':' .. worker, ARGV[2]) == 1 then
    return worker
  end
end
return false
