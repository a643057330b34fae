-- Shared by append.lua and read.lua (prepended to each when it is embedded).

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
