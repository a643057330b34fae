-- Removes a session's presence entry.
-- KEYS: 1 entries hash, 2 expiry zset
-- ARGV: 1 session
-- Returns 1 when it was present.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
