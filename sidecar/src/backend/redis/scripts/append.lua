-- Appends one event to a topic, atomically (see append_one in prelude.lua).
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
local epoch = ensure_epoch(meta, log, ids, id_times, ARGV[1])
local offset, duplicate = append_one(meta, log, ids, id_times, channel, epoch, ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  tonumber(ARGV[6]), tonumber(ARGV[7]))
return {offset, epoch, duplicate}
