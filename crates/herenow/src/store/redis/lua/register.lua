-- Make this instance's entries in the room exactly the given ones (after a reconnect):
-- what the store lost is written again, what it kept from before and is gone now is
-- removed, what is equal stays untouched. One change at most.
-- KEYS[1..4], ARGV[1..4]: see room.lua
-- ARGV[5], ARGV[6], ... pairs of presence id, entry JSON
-- Returns the published change, or false.

if #ARGV < 5 and not room_exists() then
  return false
end
touch()
local wanted = {}
for i = 5, #ARGV, 2 do
  wanted[ARGV[i]] = ARGV[i + 1]
end
for _, m in ipairs(redis.call('ZRANGE', online, 0, -1)) do
  local instance, id = split(m)
  if instance == me and not wanted[id] then
    remove(me, id)
  end
end
for i = 5, #ARGV, 2 do
  local id, entry = ARGV[i], ARGV[i + 1]
  if not same_entry(redis.call('HGET', meta, member(me, id)), entry) then
    upsert(me, id, entry)
  end
end
return commit()
