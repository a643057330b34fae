-- Extends the expiry of the sessions a sidecar owns; entries that vanished meanwhile
-- (swept during an outage, or history lost) are added again.
-- KEYS: 1 entries hash, 2 expiry zset
-- ARGV: 1 expires at (unix ms), then session, entry JSON pairs
-- Returns the sessions that were added again.
local rejoined = {}
for i = 2, #ARGV, 2 do
  local session, entry = ARGV[i], ARGV[i + 1]
  if redis.call('HSETNX', KEYS[1], session, entry) == 1 then
    rejoined[#rejoined + 1] = session
  end
  redis.call('ZADD', KEYS[2], ARGV[1], session)
end
return rejoined
