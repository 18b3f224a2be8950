-- Count a quest start in the company's current one-minute window, unless the window is full.
-- KEYS: 1 window counter   ARGV: 1 limit, 2 ttl (s)
-- Returns the count after this start, or -1 when over the limit (nothing counted).
local n = tonumber(redis.call("get", KEYS[1]) or "0")
if n >= tonumber(ARGV[1]) then
  return -1
end
n = redis.call("incr", KEYS[1])
redis.call("expire", KEYS[1], tonumber(ARGV[2]))
return n
