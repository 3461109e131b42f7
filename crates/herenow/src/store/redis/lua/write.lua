-- Write several of this instance's entries of one room as one change (a burst of joins
-- is one call, one version, one publish). Each pair is a presence id and its entry JSON
-- (insert or replace: always a change), or an empty string to remove the entry (an
-- absent entry changes nothing, and an unknown room gets no key for it).
-- KEYS[1..4], ARGV[1..4]: see room.lua
-- ARGV[5], ARGV[6], ... pairs of presence id, entry JSON or ""
-- Returns the published change, or false.

local writes = false
for i = 6, #ARGV, 2 do
  if ARGV[i] ~= '' then
    writes = true
  end
end
if not writes and not room_exists() then
  return false
end
touch()
for i = 5, #ARGV, 2 do
  local id, entry = ARGV[i], ARGV[i + 1]
  if entry ~= '' then
    upsert(me, id, entry)
  elseif redis.call('HEXISTS', meta, member(me, id)) == 1 then
    remove(me, id)
  end
end
return commit()
