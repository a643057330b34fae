-- Appends several events to one topic in one atomic call, in argument order (a
-- batch publish: one round trip instead of one per event). Each event is handled
-- exactly as append.lua handles one (see append_one in prelude.lua).
--
-- KEYS: 1 meta, 2 log, 3 ids, 4 id times, 5 channel
-- ARGV: 1 epoch to create if the topic has none
--       2 retention cutoff (unix ms)
--       3 max events kept (0 = no history)
--       4 max idempotency ids kept
--       then per event: stored event JSON, idempotency id ('' = none), published at
-- Returns {epoch, offset_1, duplicate_1, offset_2, duplicate_2, ...}.
local meta, log, ids, id_times, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local epoch = ensure_epoch(meta, log, ids, id_times, ARGV[1])
local max_events, max_ids = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {epoch}
for i = 5, #ARGV, 3 do
  local offset, duplicate = append_one(meta, log, ids, id_times, channel, epoch, ARGV[i], ARGV[i + 1], ARGV[i + 2],
    ARGV[2], max_events, max_ids)
  out[#out + 1] = offset
  out[#out + 1] = duplicate
end
return out
