-- Read a whole room at one version (a read, but a script so the reads are atomic).
-- KEYS[1] <prefix>:{room}:meta
-- KEYS[2] <prefix>:{room}:version
-- KEYS[3] <prefix>:{room}:seen
-- Returns { version, n, writer_1 .. writer_n, field, value, field, value, ... }: the
-- writers are the instances that wrote the room since it last appeared in Redis (a
-- heartbeat alone does not make one, see touch.lua); an unknown room is { 0, 0 }.

local out = { tonumber(redis.call('GET', KEYS[2])) or 0 }
local writers = redis.call('ZRANGE', KEYS[3], 0, -1)
out[2] = #writers
for i = 1, #writers do
  out[#out + 1] = writers[i]
end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do
  out[#out + 1] = all[i]
end
return out
