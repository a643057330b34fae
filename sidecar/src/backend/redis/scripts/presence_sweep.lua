-- Removes expired presence entries (their sidecar stopped refreshing them). Atomic, so
-- exactly one sidecar removes each entry and announces its leave.
-- KEYS: 1 entries hash, 2 expiry zset
-- ARGV: 1 now (unix ms), 2 most entries removed per call
-- Returns the removed entries' JSONs.
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #expired == 0 then
  return {}
end
local entries = redis.call('HMGET', KEYS[1], unpack(expired))
redis.call('HDEL', KEYS[1], unpack(expired))
redis.call('ZREM', KEYS[2], unpack(expired))
local out = {}
for _, e in ipairs(entries) do
  if e then
    out[#out + 1] = e
  end
end
return out
