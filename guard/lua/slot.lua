-- Take (or refresh) a company's running-quest slot. Slots expire, so a dead worker cannot
-- hold one for long.
-- KEYS: 1 the company's slot set   ARGV: 1 quest id, 2 now (ms), 3 ttl (ms), 4 max slots
-- Returns {1, 0} when held, {0, retry_after_ms} when all slots are taken.
local now = tonumber(ARGV[2])
redis.call("zremrangebyscore", KEYS[1], "-inf", now)
local held = redis.call("zscore", KEYS[1], ARGV[1])
if held or redis.call("zcard", KEYS[1]) < tonumber(ARGV[4]) then
  redis.call("zadd", KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call("pexpire", KEYS[1], tonumber(ARGV[3]) * 2)
  return {1, 0}
end
local first = redis.call("zrange", KEYS[1], 0, 0, "WITHSCORES")
return {0, tonumber(first[2]) - now}
