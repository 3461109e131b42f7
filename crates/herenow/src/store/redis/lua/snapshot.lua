-- Read a whole room at one version (a read, but a script so the two reads are atomic).
-- KEYS[1] <prefix>:{room}:meta
-- KEYS[2] <prefix>:{room}:version
-- Returns { version, field, value, field, value, ... }; an unknown room is { 0 }.

local out = { tonumber(redis.call('GET', KEYS[2])) or 0 }
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do
  out[#out + 1] = all[i]
end
return out
