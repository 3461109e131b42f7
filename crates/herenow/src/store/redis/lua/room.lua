-- Prelude of every room script (prepended to write/register/touch.lua), so all of
-- them read their keys and common arguments the same way.
--
-- KEYS[1] <prefix>:{room}:online   sorted set, member "<instance>|<id>", score = server ms
--                                  of the entry's last write
-- KEYS[2] <prefix>:{room}:meta     hash, same member -> {"stamp":<version>,"entry":<entry JSON>}
-- KEYS[3] <prefix>:{room}:version  counter, bumped by exactly one per change
-- KEYS[4] <prefix>:{room}:seen     sorted set, member "<instance>", score = server ms of its
--                                  last write or heartbeat in this room
-- ARGV[1] channel of the room's changes (<prefix>:{room}:changed)
-- ARGV[2] PUBLISH, or SPUBLISH on a cluster
-- ARGV[3] the calling instance
-- ARGV[4] key expiry in ms: a room nobody refreshes disappears on its own
-- (the script's own arguments start at ARGV[5])
--
-- Every key carries the room's hash tag, so on a cluster a script touches one slot only.
-- Time is the server's (TIME), never an instance's clock.

local online, meta, version_key, seen = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local channel, publish, me, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local now_text = string.format('%d', now)

local function member(instance, id)
  return instance .. '|' .. id
end

-- "<instance>|<id>" -> instance, id (ids never contain '|'; instances may).
local function split(m)
  local at = string.find(m, '|[^|]*$')
  return string.sub(m, 1, at - 1), string.sub(m, at + 1)
end

local function room_exists()
  return redis.call('EXISTS', version_key) == 1
end

-- This instance is alive in this room as of now.
local function touch()
  redis.call('ZADD', seen, now_text, me)
end

-- The ops of the change being built, applied by commit() in order.
local pending = {}

-- An entry's last two fields are its stamps (room::Entry keeps them there, after
-- everything a client sent): "now" in either becomes this script's TIME. The match is
-- anchored at the end, so text inside the state or location cannot take part.
local function stamped(entry)
  local head, since, active = string.match(entry, '^(.*),"statusSince":([^,]*),"activeAt":([^,}]*)}$')
  if not head then
    return entry -- an entry without stamps (written by an older version)
  end
  if since == '"now"' then
    since = now_text
  end
  if active == '"now"' then
    active = now_text
  end
  return head .. ',"statusSince":' .. since .. ',"activeAt":' .. active .. '}'
end

local function upsert(instance, id, entry)
  pending[#pending + 1] = { 'upsert', instance, id, stamped(entry) }
end

local function remove(instance, id)
  pending[#pending + 1] = { 'remove', instance, id }
end

local function refresh_or_drop()
  if redis.call('ZCARD', online) == 0 then
    -- An empty room leaves nothing behind; its version starts again from 0.
    redis.call('DEL', online, meta, version_key, seen)
  else
    for _, key in ipairs({ online, meta, version_key, seen }) do
      redis.call('PEXPIRE', key, ttl)
    end
  end
end

-- Apply the pending ops as one change: one version, one publish. Returns the published
-- payload, or false when there was nothing to change (then nothing is bumped or published,
-- only the expiry refreshed).
local function commit()
  if #pending == 0 then
    refresh_or_drop()
    return false
  end
  local version = string.format('%d', (tonumber(redis.call('GET', version_key)) or 0) + 1)
  local ops = {}
  for _, op in ipairs(pending) do
    local m = member(op[2], op[3])
    local who = '"instance":' .. cjson.encode(op[2]) .. ',"id":' .. cjson.encode(op[3])
    if op[1] == 'upsert' then
      redis.call('HSET', meta, m, '{"stamp":' .. version .. ',"entry":' .. op[4] .. '}')
      redis.call('ZADD', online, now_text, m)
      ops[#ops + 1] = '{"op":"upsert",' .. who .. ',"entry":' .. op[4] .. '}'
    else
      redis.call('HDEL', meta, m)
      redis.call('ZREM', online, m)
      ops[#ops + 1] = '{"op":"remove",' .. who .. '}'
    end
  end
  redis.call('SET', version_key, version)
  refresh_or_drop()
  local payload = '{"t":"change","change":{"version":' .. version .. ',"ops":[' .. table.concat(ops, ',') .. ']}}'
  redis.call(publish, channel, payload)
  return payload
end

-- Is the stored meta value `stored` the same entry as `entry` (the JSON text)?
local function same_entry(stored, entry)
  if not stored then
    return false
  end
  local tail = ',"entry":' .. entry .. '}'
  return string.sub(stored, -#tail) == tail
end
