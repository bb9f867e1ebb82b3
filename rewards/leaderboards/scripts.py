"""The Lua scripts that change or read the boards, each one round trip and atomic.

The score arithmetic mirrors ``engine.boards.encode_score`` / ``decode_score``
(the integration tests compare live boards with rebuilt ones, which are computed in
Python). Lua numbers are doubles: every value here is an integer below 2**53 or a
power-of-two multiple that doubles hold exactly. Scores go to Redis as ``%.17g``
strings, never through Lua's own 14-digit number formatting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from engine.boards import EXACT_POINTS_BITS, TICK_SPAN
from rewards.redis_client import RedisClient


class Script:
    """A Lua script run with EVALSHA, loaded into Redis on first use (or after a restart)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def load(self, redis: RedisClient) -> None:
        """Make sure Redis has the script (before queueing it in a pipeline)."""
        await redis.script_load(self.source)

    async def __call__(self, redis: RedisClient, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]


SCORES = f"""
local SPAN = {TICK_SPAN}
local EXACT_BITS = {EXACT_POINTS_BITS}
local function bitlen(n)
  local bits = 0
  while n >= 1 do n = math.floor(n / 2); bits = bits + 1 end
  return bits
end
local function encode(points, reached)
  local offset = SPAN - 1 - reached
  local drop = bitlen(math.abs(points)) - EXACT_BITS
  if drop > 0 then
    local unit = 2 ^ drop
    offset = math.floor(offset / unit) * unit
  end
  return -(points * SPAN + offset)
end
local function decode(score)
  local value = -score
  local points = math.floor(value / SPAN)
  return points, SPAN - 1 - (value - points * SPAN)
end
local function add(key, user, delta, tick)
  local current = redis.call('ZSCORE', key, user)
  local points, reached = 0, tick
  if current then
    points, reached = decode(tonumber(current))
    if tick > reached then reached = tick end
  end
  points = points + delta
  if points == 0 then
    redis.call('ZREM', key, user)
  else
    redis.call('ZADD', key, string.format('%.17g', encode(points, reached)), user)
  end
end
"""

# Move a user between the boards and their opted-out twins (KEYS: registry, hidden set).
VISIBILITY = """
local function move(registry, user, to_twin)
  local boards = redis.call('HGETALL', registry)
  for i = 1, #boards, 2 do
    local from, to = boards[i], boards[i + 1]
    if not to_twin then from, to = to, from end
    local score = redis.call('ZSCORE', from, user)
    if score then
      redis.call('ZREM', from, user)
      redis.call('ZADD', to, score, user)
      local ttl = redis.call('PTTL', from)
      if ttl > 0 then redis.call('PEXPIRE', to, ttl) end
    end
  end
end
local function hide(registry, hidden, user)
  if redis.call('SADD', hidden, user) == 1 then move(registry, user, true) end
end
local function show(registry, hidden, user)
  if redis.call('SREM', hidden, user) == 1 then move(registry, user, false) end
end
"""

# Apply one outbox batch. KEYS: applied, hidden, names, registry, rebuilding.
# ARGV: batch id, now (ms), payload {"k": [[board, twin, seconds to live or 0]],
# "p": [[user, name, opted_out (0/1), points, tick, [board index (1-based)]]]}.
# Returns 1 applied, 0 already applied, -1 a rebuild is running (try again later).
APPLY = Script(
    SCORES
    + VISIBILITY
    + """
if redis.call('EXISTS', KEYS[5]) == 1 then return -1 end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local data = cjson.decode(ARGV[3])
local boards = data.k
for _, board in ipairs(boards) do redis.call('HSET', KEYS[4], board[1], board[2]) end
for _, p in ipairs(data.p) do
  local user = p[1]
  if type(p[2]) == 'string' then redis.call('HSET', KEYS[3], user, p[2]) end
  if p[3] == 1 then hide(KEYS[4], KEYS[2], user) end
  local twin = redis.call('SISMEMBER', KEYS[2], user) == 1
  for _, index in ipairs(p[6]) do
    local board = boards[index]
    add(twin and board[2] or board[1], user, p[4], p[5])
  end
end
for _, board in ipairs(boards) do
  if board[3] > 0 then
    redis.call('EXPIRE', board[1], board[3])
    redis.call('EXPIRE', board[2], board[3])
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""
)

# Bring users' visibility and names in line with the directory.
# KEYS: hidden, names, registry, rebuilding. ARGV: user, opted_out (0/1), name, ...
SYNC_USERS = Script(
    VISIBILITY
    + """
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
for i = 1, #ARGV, 3 do
  local user = ARGV[i]
  if ARGV[i + 1] == '1' then hide(KEYS[3], KEYS[1], user) else show(KEYS[3], KEYS[1], user) end
  if redis.call('HEXISTS', KEYS[2], user) == 1 then redis.call('HSET', KEYS[2], user, ARGV[i + 2]) end
end
return 1
"""
)

# Whether a program's boards may be incomplete: a rebuild is running, or the generation
# marker is gone (Redis lost the boards; the worker rebuilds them). 1 or 0.
REBUILDING = """
local function rebuilding(lock, marker)
  if redis.call('EXISTS', lock) == 1 or redis.call('EXISTS', marker) == 0 then return 1 end
  return 0
end
"""

# A page of a board. KEYS: board, names, rebuilding, generation. ARGV: first, last
# (0-based, inclusive). Returns {size, {user, score, ...}, {name, ...}, rebuilding (0/1)}.
PAGE = Script(
    REBUILDING
    + """
local rows = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
local users = {}
for i = 1, #rows, 2 do users[#users + 1] = rows[i] end
local names = {}
if #users > 0 then names = redis.call('HMGET', KEYS[2], unpack(users)) end
return {redis.call('ZCARD', KEYS[1]), rows, names, rebuilding(KEYS[3], KEYS[4])}
"""
)

# A user and up to k ranks either side, in one round trip. KEYS: board, names,
# rebuilding, generation, the board's hidden twin. ARGV: user, k, own (1: the user asks
# for their own standing). Returns {rank or -1, size, first, {user, score, ...},
# {name, ...}, known (0/1), rebuilding (0/1)}; and when ``own`` and the user opted out
# (on the twin, not the board): rank -2, the visible people k ranks either side of where
# they would stand, and two more items: how many visible people rank above them, and
# their score.
AROUND = Script(
    REBUILDING
    + """
local function named(rows)
  local users = {}
  for i = 1, #rows, 2 do users[#users + 1] = rows[i] end
  if #users == 0 then return {} end
  return redis.call('HMGET', KEYS[2], unpack(users))
end
local size = redis.call('ZCARD', KEYS[1])
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
local busy = rebuilding(KEYS[3], KEYS[4])
local k = tonumber(ARGV[2])
if not rank then
  local known = redis.call('HEXISTS', KEYS[2], ARGV[1])
  local score = false
  if ARGV[3] == '1' and known == 1 then score = redis.call('ZSCORE', KEYS[5], ARGV[1]) end
  if not score then return {-1, size, 0, {}, {}, known, busy} end
  local above = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. score)
  local first = above - k
  if first < 0 then first = 0 end
  local rows = {}
  if above + k - 1 >= first then
    rows = redis.call('ZRANGE', KEYS[1], first, above + k - 1, 'WITHSCORES')
  end
  return {-2, size, first, rows, named(rows), 1, busy, above, score}
end
local first = rank - k
if first < 0 then first = 0 end
local rows = redis.call('ZRANGE', KEYS[1], first, rank + k, 'WITHSCORES')
return {rank, size, first, rows, named(rows), 1, busy}
"""
)

# A user's rank on several boards. KEYS: rebuilding, generation, the boards. ARGV: user.
# Returns {rebuilding (0/1), then rank or -1, score or '', size per board}.
RANKS = Script(
    REBUILDING
    + """
local out = {rebuilding(KEYS[1], KEYS[2])}
for i = 3, #KEYS do
  local key = KEYS[i]
  local rank = redis.call('ZRANK', key, ARGV[1])
  out[#out + 1] = rank or -1
  out[#out + 1] = redis.call('ZSCORE', key, ARGV[1]) or ''
  out[#out + 1] = redis.call('ZCARD', key)
end
return out
"""
)

# Finish a rebuild: swap the scratch keys in, and set the boards' generation (the
# rebuild's token). KEYS: registry, hidden, names, applied, rebuilding, generation.
# ARGV: token, now (ms), {"boards": [[board, twin, scratch, scratch twin,
# seconds to live or 0]], "hidden": scratch hidden, "names": scratch names, "applied": [ids]}.
# Returns 1, or -1 if the rebuild no longer holds the lock.
SWAP = Script(
    """
if redis.call('GET', KEYS[5]) ~= ARGV[1] then return -1 end
local data = cjson.decode(ARGV[3])
local old = redis.call('HGETALL', KEYS[1])
for i = 1, #old do redis.call('UNLINK', old[i]) end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
for _, b in ipairs(data.boards) do
  redis.call('UNLINK', b[1], b[2])
  if redis.call('EXISTS', b[3]) == 1 then redis.call('RENAME', b[3], b[1]) end
  if redis.call('EXISTS', b[4]) == 1 then redis.call('RENAME', b[4], b[2]) end
  if b[5] > 0 then
    redis.call('EXPIRE', b[1], b[5])
    redis.call('EXPIRE', b[2], b[5])
  else
    redis.call('PERSIST', b[1])
    redis.call('PERSIST', b[2])
  end
  redis.call('HSET', KEYS[1], b[1], b[2])
end
if redis.call('EXISTS', data.hidden) == 1 then
  redis.call('RENAME', data.hidden, KEYS[2])
  redis.call('PERSIST', KEYS[2])
end
if redis.call('EXISTS', data.names) == 1 then
  redis.call('RENAME', data.names, KEYS[3])
  redis.call('PERSIST', KEYS[3])
end
for _, id in ipairs(data.applied) do redis.call('ZADD', KEYS[4], ARGV[2], id) end
redis.call('SET', KEYS[6], ARGV[1])
redis.call('DEL', KEYS[5])
return 1
"""
)

# Renew or release a rebuild's lock if it still holds it. KEYS: rebuilding.
# ARGV: token, and for RENEW the new time to live (ms).
RENEW = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
)
RELEASE = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""
)


def _bulk(command: str) -> Script:
    """``command`` (ZADD, HSET) with many pairs at once, from one JSON argument: redis-py
    packs each argument in Python (1 s of a 1M-posting rebuild's names for 100k people).
    KEYS: the key. ARGV: seconds to live, JSON ``[a, b, ...]``. Returns the pairs."""
    return Script(
        f"""
local items = cjson.decode(ARGV[2])
redis.call('{command}', KEYS[1], unpack(items))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return #items / 2
"""
    )


# Members into a (scratch) sorted set: ["score", "member", ...], scores as exact decimal
# strings; and a rebuild's names: ["user", "name", ...].
BULK_ZADD = _bulk("ZADD")
BULK_HSET = _bulk("HSET")
