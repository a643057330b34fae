-- Adds a session's presence entry (unless present) with its expiry.
-- KEYS: 1 entries hash, 2 expiry zset
-- ARGV: 1 session, 2 entry JSON, 3 expires at (unix ms)
-- Returns 1 when the entry is new, 0 when it was present (its expiry is refreshed).
local added = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return added
