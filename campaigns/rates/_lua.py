"""The Lua script behind `RedisLimiter.acquire`: every limit checked, then all committed or
none, in one EVALSHA. Kept as a module string so it ships inside the package without
package-data configuration.

KEYS, three per limit i (1-based):
  KEYS[3i-2]  GCRA state: the theoretical arrival time, a decimal string (seconds)
  KEYS[3i-1]  daily cap: a counter per calendar day, or the rolling-window hash
              {t = total, o = oldest minute counted, <minute> = count}
  KEYS[3i]    observed rate ring: hash {s<slot> = second, c<slot> = count}, slot = second % 120
ARGV:
  [1] now in seconds ("" = the Redis server's TIME)   [2] cost
  then one per limit, five fields separated by spaces (fewer arguments to encode and send):
  emission interval s (0 = no rate limit), burst, daily cap (0 = none), cap mode ("c"
  calendar day, "r" rolling 24 h, "-" none), end of the calendar day (epoch s, 0 = unknown)
Returns 1 when allowed, else the string "<wait seconds> <index of the binding limit> rate|daily"
(one bulk string parses faster in redis-py than an array).
The arithmetic of the rate part is campaigns/rates/gcra.py's `gcra`.
"""
from __future__ import annotations

OBSERVED_SLOTS = 120          # seconds kept by the observed-rate ring (also its TTL)
ROLLING_MINUTES = 1440        # minute buckets in the rolling 24 h window
CALENDAR_TTL_S = 2 * 86400    # a calendar-day counter outlives its day by about a day

ACQUIRE = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local cost = tonumber(ARGV[2])
local n = #ARGV - 2
local EPS = 1e-9
local ROLL = %(rolling)d
local SLOTS = %(slots)d
local cur_min = math.floor(now / 60)

local function fmt(x) return string.format('%%.6f', x) end
local function int(x) return string.format('%%d', x) end

-- GCRA: returns allowed, wait, new_tat
local function gcra(key, interval, burst)
  local tat = tonumber(redis.call('GET', key))
  if not tat or tat < now then tat = now end
  local new_tat = tat + cost * interval
  local allow_at = new_tat - burst * interval
  if allow_at - now > EPS then return false, allow_at - now, 0 end
  return true, 0, new_tat
end

-- Rolling window: drop minute buckets older than 24 h, return the current total.
local function rolling_total(key)
  local o = tonumber(redis.call('HGET', key, 'o'))
  if not o then return 0 end
  local cutoff = cur_min - ROLL
  local total = tonumber(redis.call('HGET', key, 't')) or 0
  if o > cutoff then return total end
  if cutoff - o >= ROLL then
    redis.call('DEL', key)
    return 0
  end
  for m = o, cutoff do
    local c = redis.call('HGET', key, int(m))
    if c then
      total = total - tonumber(c)
      redis.call('HDEL', key, int(m))
    end
  end
  redis.call('HSET', key, 't', total, 'o', int(cutoff + 1))
  return total
end

-- Seconds until enough of the rolling window has aged out for `need` more messages.
local function rolling_wait(key, need)
  local o = tonumber(redis.call('HGET', key, 'o')) or cur_min
  local freed = 0
  for m = o, cur_min do
    local c = tonumber(redis.call('HGET', key, int(m)))
    if c then
      freed = freed + c
      if freed >= need then return (m + ROLL) * 60 - now end
    end
  end
  return 86400
end

-- Calendar day without a known end: look again within the hour (or at UTC midnight).
local function calendar_wait(day_end)
  if day_end > now then return day_end - now end
  local to_midnight = 86400 - (now %% 86400)
  if to_midnight < 3600 then return to_midnight end
  return 3600
end

-- Returns wait (0 = fits)
local function daily_wait(key, cap, mode, day_end)
  if mode == 'c' then
    local used = tonumber(redis.call('GET', key)) or 0
    if used + cost <= cap then return 0 end
    return math.max(calendar_wait(day_end), 0.001)
  end
  local total = rolling_total(key)
  if total + cost <= cap then return 0 end
  return math.max(rolling_wait(key, total + cost - cap), 0.001)
end

local function daily_commit(key, mode)
  if mode == 'c' then
    if redis.call('INCRBY', key, cost) == cost then
      redis.call('EXPIRE', key, %(calendar_ttl)d)
    end
    return
  end
  redis.call('HINCRBY', key, 't', cost)
  if redis.call('HINCRBY', key, int(cur_min), cost) == cost then  -- a new minute
    redis.call('HSETNX', key, 'o', int(cur_min))
    redis.call('EXPIRE', key, ROLL * 60 + 120)
  end
end

local function observe(key)
  local sec = int(math.floor(now))
  local slot = int(math.floor(now) %% SLOTS)
  if redis.call('HGET', key, 's' .. slot) == sec then
    redis.call('HINCRBY', key, 'c' .. slot, cost)
  else  -- a new second: overwrite the slot of two minutes ago
    redis.call('HSET', key, 's' .. slot, sec, 'c' .. slot, cost)
    redis.call('EXPIRE', key, SLOTS)
  end
end

local denied, max_wait, bind_i, bind_kind = false, 0, 0, ''
local new_tats, specs = {}, {}
for i = 1, n do
  local interval, burst, cap, mode, day_end =
    string.match(ARGV[i + 2], '(%%S+) (%%S+) (%%S+) (%%S+) (%%S+)')
  interval, cap = tonumber(interval), tonumber(cap)
  specs[i] = {interval, cap, mode}
  if interval > 0 then
    local ok, wait, nt = gcra(KEYS[3 * i - 2], interval, tonumber(burst))
    new_tats[i] = nt
    if not ok then
      denied = true
      if wait > max_wait then max_wait, bind_i, bind_kind = wait, i, 'rate' end
    end
  end
  if cap > 0 then
    local wait = daily_wait(KEYS[3 * i - 1], cap, mode, tonumber(day_end))
    if wait > 0 then
      denied = true
      if wait > max_wait then max_wait, bind_i, bind_kind = wait, i, 'daily' end
    end
  end
end
if denied then  -- never report a wait that rounds to zero for a refusal
  return fmt(math.max(max_wait, 0.000001)) .. ' ' .. bind_i .. ' ' .. bind_kind
end

for i = 1, n do
  local interval, cap, mode = specs[i][1], specs[i][2], specs[i][3]
  if interval > 0 then
    local ttl_ms = math.ceil((new_tats[i] - now) * 1000) + 1000
    redis.call('SET', KEYS[3 * i - 2], fmt(new_tats[i]), 'PX', ttl_ms)
  end
  if cap > 0 then daily_commit(KEYS[3 * i - 1], mode) end
  observe(KEYS[3 * i])
end
return 1
""" % {"rolling": ROLLING_MINUTES, "slots": OBSERVED_SLOTS, "calendar_ttl": CALENDAR_TTL_S}

#: `RedisLimiter.flush_observed`: counts taken without a limit to check (only observed),
#: added to their rings in one call. KEYS: the rings; ARGV[1] now ("" = Redis TIME), then one
#: count per key. The counts of the last flush interval land in the second of the flush.
OBSERVE = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local sec = string.format('%%d', math.floor(now))
local slot = string.format('%%d', math.floor(now) %% %(slots)d)
for i = 1, #KEYS do
  local key, cost = KEYS[i], tonumber(ARGV[i + 1])
  if redis.call('HGET', key, 's' .. slot) == sec then
    redis.call('HINCRBY', key, 'c' .. slot, cost)
  else
    redis.call('HSET', key, 's' .. slot, sec, 'c' .. slot, cost)
    redis.call('EXPIRE', key, %(slots)d)
  end
end
return 1
""" % {"slots": OBSERVED_SLOTS}
