-- Heartbeat and reap in one room: refresh this instance's liveness and the keys' expiry,
-- and remove the entries of instances that are gone. Changes (and publishes) something
-- only when it removes someone.
-- KEYS[1..4], ARGV[1..4]: see room.lua
-- ARGV[5] idle limit in ms: an instance that has not refreshed this room for longer is gone
--         (a safety net behind the leases; 0 = do not apply, as right after a reconnect)
-- ARGV[6], ARGV[7], ... pairs of instance, lease expiry (server ms) of instances whose
--         lease ran out. One that refreshed this room after its lease expiry came back
--         and is spared.
-- Returns { version, published change or "" }; an unknown room is { 0, "" } and stays
-- without keys.

if not room_exists() then
  return { 0, '' }
end
touch()
local gone = {}
local any = false
for i = 6, #ARGV, 2 do
  local instance, expiry = ARGV[i], tonumber(ARGV[i + 1])
  local last = redis.call('ZSCORE', seen, instance)
  if instance ~= me and last and tonumber(last) <= expiry then
    gone[instance] = true
    any = true
  end
end
local idle = tonumber(ARGV[5])
if idle > 0 then
  for _, instance in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', string.format('(%d', now - idle))) do
    if instance ~= me then
      gone[instance] = true
      any = true
    end
  end
end
if any then
  for _, m in ipairs(redis.call('ZRANGE', online, 0, -1)) do
    local instance, id = split(m)
    if gone[instance] then
      remove(instance, id)
    end
  end
  for instance in pairs(gone) do
    redis.call('ZREM', seen, instance)
  end
end
local payload = commit()
return { tonumber(redis.call('GET', version_key)) or 0, payload or '' }
