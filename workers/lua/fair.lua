-- Fair dispatch of one Dramatiq queue's messages across companies (workers/fair_queue.py).
--
-- KEYS: [1] Dramatiq's namespace, [2] this queue's fair prefix, [3] the weights hash
-- ARGV: [1] command, [2] now (ms), [3] queue, [4] consumer id, [5] heartbeat timeout (ms),
--       [6] default weight, [7] most intake entries sorted per call, [8...] the command's own
--
-- Publishers push onto Dramatiq's list (the intake) as they always have, and Dramatiq's own
-- maintenance returns a dead consumer's messages there too. Every call first sorts up to
-- ARGV[7] intake entries into their company's lanes: "started" (a later step or a retry of a
-- quest already running, or a step handed back) goes before "new" (a first step). Companies
-- with steps waiting sit in the ring, a sorted set by pass (stride scheduling): the lowest
-- pass goes next and advances by STRIDE / weight, so backlogged companies take turns in
-- proportion to their weights. A company that had nothing waiting joins at the ring's lowest
-- pass: idle time earns no credit, and a newcomer waits at most one turn of each other.
-- A fetched id goes into the consumer's Dramatiq acks set, so ack, nack and the heartbeat
-- timeout stay Dramatiq's. Nothing here costs anything per idle company.

local namespace, prefix, weights = KEYS[1], KEYS[2], KEYS[3]
local command, now, queue, consumer = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local heartbeat_timeout, default_weight = tonumber(ARGV[5]), tonumber(ARGV[6])
local sort_max = tonumber(ARGV[7])

local STRIDE = 1000000
local intake = namespace .. ":" .. queue
local bodies = intake .. ".msgs"
local heartbeats = namespace .. ":__heartbeats__"
local acks = namespace .. ":__acks__." .. consumer .. "." .. queue
local ring = prefix .. ":ring"
local clock = prefix .. ":clock"
local waiting = prefix .. ":waiting"

redis.call("zadd", heartbeats, now, consumer)

local function lane(which, company)
    return prefix .. ":" .. which .. ":" .. company
end

-- The company of a message body, and whether its quest has started. A body that is not a
-- quest step's goes to the company "-": it is fetched in its turn and dead-lettered there.
local function sort_of(body)
    local ok, message = pcall(cjson.decode, body)
    if not ok or type(message) ~= "table" or type(message.args) ~= "table" then
        return "-", "new"
    end
    local envelope = message.args[1]
    if type(envelope) ~= "table" or type(envelope.company_id) ~= "string" then
        return "-", "new"
    end
    local payload, options = envelope.payload, message.options
    local step = type(payload) == "table" and tonumber(payload.step) or 1
    local retries = type(options) == "table" and tonumber(options.retries) or 0
    if (step or 1) > 1 or (retries or 0) > 0 then
        return envelope.company_id, "started"
    end
    return envelope.company_id, "new"
end

local function join(company)
    if redis.call("zscore", ring, company) then
        return
    end
    local head = redis.call("zrange", ring, 0, 0, "WITHSCORES")
    local pass = head[2] or redis.call("get", clock) or 0
    redis.call("zadd", ring, pass, company)
end

-- Put a message into its company's lane: at the tail, or at the head of "started" for a
-- step handed back (it ran, and it waited its turn once already).
local function put(id, handed_back)
    local body = redis.call("hget", bodies, id)
    if not body then
        return  -- acked or dead-lettered meanwhile: nothing to run
    end
    local company, which = sort_of(body)
    if handed_back then
        redis.call("lpush", lane("started", company), id)
    else
        redis.call("rpush", lane(which, company), id)
    end
    redis.call("hincrby", waiting, company, 1)
    join(company)
end

local function sort_intake()
    for _ = 1, sort_max do
        local id = redis.call("lpop", intake)
        if not id then
            return
        end
        put(id, false)
    end
end

local function take_turn(company, pass)
    local started, new = lane("started", company), lane("new", company)
    local id = redis.call("lpop", started) or redis.call("lpop", new)
    if id then
        if redis.call("hincrby", waiting, company, -1) <= 0 then
            redis.call("hdel", waiting, company)
        end
    end
    if redis.call("exists", started, new) == 0 then
        redis.call("zrem", ring, company)
        redis.call("set", clock, pass)
    else
        local weight = tonumber(redis.call("hget", weights, company)) or default_weight
        redis.call("zadd", ring, pass + STRIDE / math.max(weight, 1), company)
    end
    return id
end

if command == "fetch" then
    sort_intake()
    local want = tonumber(ARGV[8])
    local ids = {}
    while #ids < want do
        local head = redis.call("zrange", ring, 0, 0, "WITHSCORES")
        if not head[1] then
            break
        end
        local id = take_turn(head[1], tonumber(head[2]))
        if id then
            redis.call("sadd", acks, id)
            ids[#ids + 1] = id
        end
    end
    if #ids == 0 then
        return {}
    end
    return redis.call("hmget", bodies, unpack(ids))

elseif command == "requeue" then  -- this consumer hands fetched messages back
    for i = 8, #ARGV do
        if redis.call("srem", acks, ARGV[i]) > 0 then
            put(ARGV[i], true)
        end
    end

elseif command == "maintain" then  -- what consumers that fell silent held goes back
    local dead = redis.call("zrangebyscore", heartbeats, 0, now - heartbeat_timeout)
    local returned = 0
    for _, worker in ipairs(dead) do
        local held = namespace .. ":__acks__." .. worker .. "." .. queue
        for _, id in ipairs(redis.call("smembers", held)) do
            put(id, true)
            returned = returned + 1
        end
        redis.call("del", held)
    end
    sort_intake()
    return returned

elseif command == "unsort" then  -- fair dispatch turned off: every lane back to the intake
    local moved = 0
    for _, company in ipairs(redis.call("zrange", ring, 0, -1)) do
        for _, which in ipairs({"started", "new"}) do
            local ids = redis.call("lrange", lane(which, company), 0, -1)
            for _, id in ipairs(ids) do
                redis.call("rpush", intake, id)
            end
            moved = moved + #ids
            redis.call("del", lane(which, company))
        end
    end
    redis.call("del", ring, waiting)
    return moved
end
