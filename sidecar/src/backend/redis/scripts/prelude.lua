-- Shared by append.lua, append_many.lua and read.lua (prepended to each when it is embedded).

-- The topic's epoch; when the metadata is missing (new topic, or history lost) a new
-- epoch starts at offset 0 and whatever history was left under the old one is removed,
-- so no client can mistake it for the new epoch's events.
local function ensure_epoch(meta, log, ids, id_times, new_epoch)
  local epoch = redis.call('HGET', meta, 'epoch')
  if epoch then
    return epoch
  end
  redis.call('DEL', log, ids, id_times)
  redis.call('HSET', meta, 'epoch', new_epoch, 'offset', 0)
  return new_epoch
end

-- The `t` (published at, unix ms) field of a stream entry.
local function entry_time(entry)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 't' then
      return tonumber(fields[i + 1])
    end
  end
  return nil
end

-- Removes history entries published before `cutoff`, oldest first, looking at a
-- bounded number of entries per call (later calls continue).
local function trim_by_age(log, cutoff)
  local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
  if #oldest == 0 then
    return
  end
  local t = entry_time(oldest[1])
  if not t or t >= cutoff then
    return
  end
  local batch = redis.call('XRANGE', log, '-', '+', 'COUNT', 256)
  local last_old = nil
  for _, entry in ipairs(batch) do
    local at = entry_time(entry)
    if at and at >= cutoff then
      break
    end
    last_old = entry[1]
  end
  if last_old then
    -- MINID removes ids lower than the threshold: `<n>-2` is just above `<n>-1`.
    local n = string.match(last_old, '^(%d+)-')
    redis.call('XTRIM', log, 'MINID', n .. '-2')
  end
end

-- Appends one event (the epoch already ensured): idempotency check, next offset,
-- history entry trimmed to retention (count and age), idempotency record, and the
-- delivery payload published on the topic's sharded channel.
-- Returns offset, duplicate (0|1).
local function append_one(meta, log, ids, id_times, channel, epoch, event, id, published, cutoff_arg,
                          max_events, max_ids)
  if id ~= '' then
    local expired = redis.call('ZRANGEBYSCORE', id_times, '-inf', '(' .. cutoff_arg, 'LIMIT', 0, 1000)
    if #expired > 0 then
      redis.call('HDEL', ids, unpack(expired))
      redis.call('ZREM', id_times, unpack(expired))
    end
    local seen = redis.call('HGET', ids, id)
    if seen then
      return tonumber(seen), 1
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
    trim_by_age(log, tonumber(cutoff_arg))
  end

  redis.call('SPUBLISH', channel, offset .. ' ' .. epoch .. ' ' .. event)
  return offset, 0
end
