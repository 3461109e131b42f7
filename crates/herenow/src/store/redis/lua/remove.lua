-- Remove this instance's entry for one id. Idempotent: an absent entry, or an unknown
-- room, changes nothing and creates no key.
-- KEYS[1..4], ARGV[1..4]: see room.lua
-- ARGV[5] presence id
-- Returns the published change, or false.

if not room_exists() then
  return false
end
touch()
if redis.call('HEXISTS', meta, member(me, ARGV[5])) == 1 then
  remove(me, ARGV[5])
end
return commit()
