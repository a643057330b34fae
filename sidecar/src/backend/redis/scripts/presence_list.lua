-- Lists presence entries that have not expired.
-- KEYS: 1 entries hash, 2 expiry zset
-- ARGV: 1 now (unix ms)
-- Returns the entry JSONs.
local live = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local out = {}
-- HMGET in chunks: unpack() of a very large table would overflow Lua's stack.
for i = 1, #live, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #live) do
    chunk[#chunk + 1] = live[j]
  end
  for _, e in ipairs(redis.call('HMGET', KEYS[1], unpack(chunk))) do
    if e then
      out[#out + 1] = e
    end
  end
end
return out
