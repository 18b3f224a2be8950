-- Settle a reservation to its real cost (or keep it), once. Moves `amount` out of each
-- scope's reserved and `actual` into its spent, then reports tier crossings.
-- KEYS: 1 reservation, 2.. scope counters to use if the reservation record is gone
-- ARGV: 1 amount reserved, 2 actual cost, 3 warn_pct, 4 slow_pct, 5 halt_pct, 6 reservation ttl (s)
-- Returns {"noop"} | {"settled", name1, spent1, cap1, tier1, crossed1, name2, ...}
local rkey = KEYS[1]
local amount = tonumber(ARGV[1])
local actual = tonumber(ARGV[2])
local pcts = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}

local scopes = {}
local rec = redis.call("hmget", rkey, "state", "amount", "scope1", "scope2", "scope3")
local state = rec[1]
if state == "settled" then
  return {"noop"}
end
if state == "open" then
  amount = tonumber(rec[2])
  for i = 3, 5 do
    if rec[i] then table.insert(scopes, rec[i]) end
  end
else
  -- The record is gone (Redis lost it): the counters, if present, were rebuilt from the
  -- ledger, where this call was still open.
  for i = 2, #KEYS do table.insert(scopes, KEYS[i]) end
end

local out = {"settled"}
for _, key in ipairs(scopes) do
  if redis.call("exists", key) == 1 then
    local reserved = redis.call("hincrby", key, "reserved", -amount)
    if reserved < 0 then redis.call("hset", key, "reserved", 0) end
    local spent = redis.call("hincrby", key, "spent", actual)
    local got = redis.call("hmget", key, "cap", "tier")
    local cap = tonumber(got[1] or "0")
    local before = tonumber(got[2] or "0")
    local tier = 0
    if cap > 0 then
      for t = 1, 3 do
        if spent * 100 >= cap * pcts[t] then tier = t end
      end
    end
    local crossed = 0
    if tier > before then
      redis.call("hset", key, "tier", tier)
      crossed = 1
    end
    table.insert(out, key)
    table.insert(out, spent)
    table.insert(out, cap)
    table.insert(out, tier)
    table.insert(out, crossed)
  end
end
redis.call("hset", rkey, "state", "settled", "amount", amount, "actual", actual)
redis.call("expire", rkey, tonumber(ARGV[6]))
return out
