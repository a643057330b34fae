-- Reads a topic's history position and the events after an offset, atomically.
-- Starts the topic's epoch if it has none (as append does), so the epoch a subscriber
-- is told is the one the next event gets.
--
-- KEYS: 1 meta, 2 log, 3 ids, 4 id times
-- ARGV: 1 epoch to create if the topic has none
--       2 after (offset; events with larger offsets are returned)
--       3 limit (most events returned)
--       4 retention cutoff (unix ms; older events are not returned)
--       5 retention max events (a lowered limit applies before the next append)
-- Returns {epoch, first retained offset (last + 1 when none), last offset,
--          {offset, stored event JSON, offset, JSON, ...}}.
local meta, log, ids, id_times = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cutoff = tonumber(ARGV[4])
local limit = tonumber(ARGV[3])

local epoch = ensure_epoch(meta, log, ids, id_times, ARGV[1])
local last = tonumber(redis.call('HGET', meta, 'offset')) or 0
trim_by_age(log, cutoff)
redis.call('XTRIM', log, 'MAXLEN', tonumber(ARGV[5]))

local first = last + 1
local events = {}
for _, entry in ipairs(redis.call('XRANGE', log, '-', '+', 'COUNT', 1)) do
  first = tonumber(string.match(entry[1], '^(%d+)-'))
end

if limit > 0 and tonumber(ARGV[2]) < last then
  local range = redis.call('XRANGE', log, '(' .. ARGV[2] .. '-1', '+', 'COUNT', limit)
  for _, entry in ipairs(range) do
    local at = entry_time(entry)
    if not at or at >= cutoff then
      local fields = entry[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'e' then
          events[#events + 1] = tonumber(string.match(entry[1], '^(%d+)-'))
          events[#events + 1] = fields[i + 1]
        end
      end
    end
  end
end

return {epoch, first, last, events}
