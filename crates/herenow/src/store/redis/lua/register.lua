-- Make this instance's entries in the room exactly the given ones (after a reconnect, or
-- after a write failed): what the store lost is written again, what it kept from before
-- and is gone now is removed, what is equal stays untouched. An id given with an empty
-- entry is one this instance removed while it could not write: it is removed, and named
-- in the change even if the store no longer has it, so instances that still show it (a
-- Redis that lost its data) learn it is gone. One change at most.
-- KEYS[1..4], ARGV[1..4]: see room.lua
-- ARGV[5], ARGV[6], ... pairs of presence id, entry JSON or ""
-- Returns the published change, or false.

if #ARGV < 5 and not room_exists() then
  return false
end
touch()
local wanted, removed = {}, {}
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] ~= '' then
    wanted[ARGV[i]] = ARGV[i + 1]
  end
end
for _, m in ipairs(redis.call('ZRANGE', online, 0, -1)) do
  local instance, id = split(m)
  if instance == me and not wanted[id] then
    remove(me, id)
    removed[id] = true
  end
end
for i = 5, #ARGV, 2 do
  local id, entry = ARGV[i], ARGV[i + 1]
  if entry == '' then
    if not removed[id] then
      remove(me, id)
    end
  elseif not same_entry(redis.call('HGET', meta, member(me, id)), entry) then
    upsert(me, id, entry)
  end
end
return commit()
