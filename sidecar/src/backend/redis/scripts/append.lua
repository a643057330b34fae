-- Appends one event to a topic, atomically: idempotency check, epoch creation, next
-- offset, history entry trimmed to retention (count and age), idempotency record, and
-- the delivery payload published on the topic's sharded channel.
--
-- KEYS: 1 meta, 2 log, 3 ids, 4 id times, 5 channel (declared so the slot is checked)
-- ARGV: 1 epoch to create if the topic has none
--       2 stored event JSON
--       3 idempotency id ('' = no check)
--       4 published at (unix ms)
--       5 retention cutoff (unix ms; older events and ids are dropped)
--       6 max events kept (0 = no history)
--       7 max idempotency ids kept
-- Returns {offset, epoch, duplicate (0|1)}.
local meta, log, ids, id_times, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local event, id = ARGV[2], ARGV[3]
local published = ARGV[4]
local cutoff = tonumber(ARGV[5])
local max_events = tonumber(ARGV[6])
local max_ids = tonumber(ARGV[7])

local epoch = ensure_epoch(meta, log, ids, id_times, ARGV[1])

if id ~= '' then
  local expired = redis.call('ZRANGEBYSCORE', id_times, '-inf', '(' .. ARGV[5], 'LIMIT', 0, 1000)
  if #expired > 0 then
    redis.call('HDEL', ids, unpack(expired))
    redis.call('ZREM', id_times, unpack(expired))
  end
  local seen = redis.call('HGET', ids, id)
  if seen then
    return {tonumber(seen), epoch, 1}
  end
end

local offset = redis.call('HINCRBY', meta, 'offset', 1)

if id ~= '' then
  redis.call('HSET', ids, id, offset)
  redis.call('ZADD', id_times, published, id)
  local extra = redis.call('ZCARD', id_times) - max_ids
  if extra > 0 then
    local oldest = redis.call('ZRANGE', id_times, 0, extra - 1)
    redis.call('HDEL', ids, unpack(oldest))
    redis.call('ZREM', id_times, unpack(oldest))
  end
end

if max_events > 0 then
  redis.call('XADD', log, 'MAXLEN', max_events, offset .. '-1', 'e', event, 't', published)
  trim_by_age(log, cutoff)
end

redis.call('SPUBLISH', channel, offset .. ' ' .. epoch .. ' ' .. event)
return {offset, epoch, 0}
