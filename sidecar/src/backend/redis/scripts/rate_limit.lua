-- GCRA (generic cell rate algorithm) on one bucket shared by all sidecars: the key
-- holds the bucket's theoretical arrival time (TAT) in microseconds of Redis' clock,
-- so sidecars with skewed clocks still agree. A bucket takes `burst` requests at once
-- and one more every `interval`; the key expires when the bucket is full again.
--
-- KEYS: 1 bucket
-- ARGV: 1 interval (microseconds per token), 2 burst
-- Returns 0 when allowed, else the microseconds until a request would be allowed.
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return math.ceil(allow_at - now)
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(ttl_ms, 1))
return 0
