-- Recreate a scope's counters from the ledger, unless another worker already has.
-- KEYS: 1 scope counter
-- ARGV: 1 spent, 2 reserved, 3 cap, 4 tier, 5 ttl (s)
if redis.call("exists", KEYS[1]) == 1 then
  return 0
end
redis.call("hset", KEYS[1], "spent", ARGV[1], "reserved", ARGV[2], "cap", ARGV[3], "tier", ARGV[4])
redis.call("expire", KEYS[1], tonumber(ARGV[5]))
return 1
