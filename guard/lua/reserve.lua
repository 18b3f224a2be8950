-- Reserve a Claude call's worst-case cost against every scope, atomically.
-- KEYS: 1 reservation, 2.. scope counters (quest, day window, month window)
-- ARGV: 1 amount, 2 halt_pct, 3 reservation ttl (s), then per scope: name, cap (0 = no limit)
-- Returns {"ok"} | {"dup", amount, state} | {"missing", name} | {"refused", name, spent, reserved, cap}
local amount = tonumber(ARGV[1])
local halt_pct = tonumber(ARGV[2])
local rkey = KEYS[1]

if redis.call("exists", rkey) == 1 then
  local got = redis.call("hmget", rkey, "amount", "state")
  return {"dup", got[1], got[2]}
end

local n = #KEYS - 1
for i = 1, n do
  local cap = tonumber(ARGV[3 + 2 * i])
  if cap > 0 and redis.call("exists", KEYS[1 + i]) == 0 then
    return {"missing", ARGV[2 + 2 * i]}
  end
end

for i = 1, n do
  local cap = tonumber(ARGV[3 + 2 * i])
  if cap > 0 then
    local got = redis.call("hmget", KEYS[1 + i], "spent", "reserved")
    local spent = tonumber(got[1] or "0")
    local reserved = tonumber(got[2] or "0")
    -- integer math: spent + reserved + amount <= cap * halt_pct / 100
    if (spent + reserved + amount) * 100 > cap * halt_pct then
      return {"refused", ARGV[2 + 2 * i], spent, reserved, cap}
    end
  end
end

local fields = {"amount", amount, "state", "open"}
for i = 1, n do
  local cap = tonumber(ARGV[3 + 2 * i])
  if cap > 0 then
    -- (a scope gets its expiry when "rebuild" creates it)
    redis.call("hincrby", KEYS[1 + i], "reserved", amount)
    redis.call("hset", KEYS[1 + i], "cap", cap)
    table.insert(fields, "scope" .. i)
    table.insert(fields, KEYS[1 + i])
  end
end
redis.call("hset", rkey, unpack(fields))
redis.call("expire", rkey, tonumber(ARGV[3]))
return {"ok"}
