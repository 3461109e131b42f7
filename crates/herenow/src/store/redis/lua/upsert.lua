-- Write this instance's entry for one id (always a change, like the memory store).
-- KEYS[1..4], ARGV[1..4]: see room.lua
-- ARGV[5] presence id
-- ARGV[6] entry JSON
-- Returns the published change.

touch()
upsert(me, ARGV[5], ARGV[6])
return commit()
