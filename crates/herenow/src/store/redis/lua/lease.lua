-- Renew this instance's liveness lease and list the instances whose lease ran out.
-- The leases of all instances live in one sorted set (one key, so one slot on a cluster).
-- KEYS[1] <prefix>:leases   sorted set, member "<instance>", score = lease expiry (server ms)
-- ARGV[1] the calling instance
-- ARGV[2] lease length in ms
-- ARGV[3] how long an expired lease stays listed, in ms, so every instance holding one of
--         its rooms gets to reap it (the rooms' idle limit covers anything later)
-- Returns { now, instance, expiry, instance, expiry, ... } for the expired leases.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], string.format('%d', now + lease), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%d', now - keep))
redis.call('PEXPIRE', KEYS[1], lease + keep)
local out = { now }
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('(%d', now), 'WITHSCORES')
for i = 1, #expired, 2 do
  out[#out + 1] = expired[i]
  out[#out + 1] = tonumber(expired[i + 1])
end
return out
