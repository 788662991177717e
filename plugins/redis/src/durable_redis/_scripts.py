"""The Lua scripts that make each store operation atomic.

Per-run scripts receive ``KEYS = [run, steps, sigs, sigids]`` (or a leading subset), all in
one hash slot. Times, tokens and TTLs come from the client as ``ARGV`` strings and are
stored verbatim, so floats round-trip exactly; Lua only compares them with ``tonumber``.
Fenced scripts answer ``{0, current_token}`` when the lease token is stale. The commonest
replies are the integer ``1``: every reply element costs the client CPU to parse.

TTL policy (see the package docstring): ``set_ttl(ms)`` expires all four keys of a run when
it reaches a final status, and ``set_ttl(0)`` removes any expiry when it becomes live again.
Keys created later for a run that is already counting down inherit the run key's TTL.
"""

from __future__ import annotations

_PRELUDE = """
local function set_ttl(ms)
  for i = 1, #KEYS do
    if ms > 0 then redis.call('PEXPIRE', KEYS[i], ms) else redis.call('PERSIST', KEYS[i]) end
  end
end
local function inherit_ttl(key)
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then redis.call('PEXPIRE', key, pttl) end
  return pttl
end
local function stale(token)
  local current = redis.call('HGET', KEYS[1], 'lease_token')
  if current == token then return nil end
  return {0, current or -1}
end
local function is_final(status)
  return status == 'completed' or status == 'cancelled'
end
local function live(owner, expires, now)
  return owner and expires and tonumber(expires) > tonumber(now)
end
"""

# ARGV: ttl_ms, field, value, field, value, ... Returns 1 when created, else the stored fields.
CREATE_RUN = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
set_ttl(tonumber(ARGV[1]))
return 1
"""

# ARGV: owner, now, expires_at. Returns the new token, or nil when the claim is refused.
CLAIM_RUN = """
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'lease_expires_at', 'lease_token')
if not f[1] then return false end
-- The same call retried after its reply was lost: same owner and the very same expiry string.
if f[2] == ARGV[1] and f[3] == ARGV[3] then return tonumber(f[4]) end
if is_final(f[1]) or live(f[2], f[3], ARGV[2]) then return false end
local token = redis.call('HINCRBY', KEYS[1], 'lease_token', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[1], 'lease_expires_at', ARGV[3],
  'updated_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'wake_at')
set_ttl(0)
return token
"""

# ARGV: token, owner, expires_at
RENEW_LEASE = """
local lost = stale(ARGV[1])
if lost then return lost end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'lease_expires_at', ARGV[3])
return {1, redis.call('HGETALL', KEYS[1])}
"""

# ARGV: token, now, ttl_ms, release ('1'/'0'), status, mask, result, error, wake_at
# mask holds one '1'/'0' per optional field: present values are written, absent ones deleted.
# Returns 1.
UPDATE_RUN = """
local lost = stale(ARGV[1])
if lost then return lost end
redis.call('HSET', KEYS[1], 'status', ARGV[5], 'updated_at', ARGV[2])
local names = {'result', 'error', 'wake_at'}
for i = 1, 3 do
  if string.sub(ARGV[6], i, i) == '1' then
    redis.call('HSET', KEYS[1], names[i], ARGV[6 + i])
  else
    redis.call('HDEL', KEYS[1], names[i])
  end
end
if ARGV[4] == '1' then redis.call('HDEL', KEYS[1], 'owner', 'lease_expires_at') end
set_ttl(tonumber(ARGV[3]))
return 1
"""

# ARGV: now, ttl_ms. Returns the run's fields, or nil for an unknown run.
REQUEST_CANCEL = """
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'lease_expires_at')
if not f[1] then return false end
redis.call('HSET', KEYS[1], 'cancel_requested', '1', 'updated_at', ARGV[1])
if not is_final(f[1]) and not live(f[2], f[3], ARGV[1]) then
  redis.call('HSET', KEYS[1], 'status', 'cancelled')
  set_ttl(tonumber(ARGV[2]))
end
return redis.call('HGETALL', KEYS[1])
"""

# ARGV: now
RESET_RUN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'status', 'pending', 'cancel_requested', '0', 'updated_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'error', 'wake_at')
set_ttl(0)
return redis.call('HGETALL', KEYS[1])
"""

DELETE_RUN = """
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return existed
"""

# KEYS: run, steps. ARGV: token, key, value, key, value, ...
# Answers 1 when every step was stored, else {1, r1, r2, ...}: '' where this write was stored,
# else the completed value that stays.
SAVE_STEPS = """
local lost = stale(ARGV[1])
if lost then return lost end
local out = {1}
local kept = false
for i = 2, #ARGV, 2 do
  local existing = redis.call('HGET', KEYS[2], ARGV[i])
  if existing and string.sub(existing, 1, 1) == 'c' then
    out[#out + 1] = existing
    kept = true
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    out[#out + 1] = ''
  end
end
inherit_ttl(KEYS[2])
if kept then return out end
return 1
"""

# KEYS: run, sigs, sigids. ARGV: field, nonce, body, now, orphan_ttl_ms, channel, notice
# Returns 1 if recorded (also when this very call, by its nonce, recorded it before), else 0.
SEND_SIGNAL = """
local seen = redis.call('HGET', KEYS[3], ARGV[1])
if seen then
  local space = string.find(seen, ' ', 1, true)
  if string.sub(seen, space + 1) == ARGV[2] then return 1 end
  return 0
end
local seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
redis.call('HSET', KEYS[3], ARGV[1], seq .. ' ' .. ARGV[2])
redis.call('RPUSH', KEYS[2], seq .. ' ' .. ARGV[3])
if redis.call('HGET', KEYS[1], 'status') == 'waiting' then
  redis.call('HSET', KEYS[1], 'wake_at', ARGV[4], 'updated_at', ARGV[4])
end
local pttl = inherit_ttl(KEYS[2])
if pttl > 0 then
  redis.call('PEXPIRE', KEYS[3], pttl)
elseif pttl == -2 and tonumber(ARGV[5]) > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""

# KEYS: index. ARGV: member, score, member, score, ...
# Drops index entries of runs that expired, unless the run was created again meanwhile (which
# gives the entry a new score).
PRUNE_INDEX = """
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""

PER_RUN = {
    "create_run": CREATE_RUN,
    "claim_run": CLAIM_RUN,
    "renew_lease": RENEW_LEASE,
    "update_run": UPDATE_RUN,
    "request_cancel": REQUEST_CANCEL,
    "reset_run": RESET_RUN,
    "delete_run": DELETE_RUN,
    "save_steps": SAVE_STEPS,
    "send_signal": SEND_SIGNAL,
}

SOURCES: dict[str, str] = {name: _PRELUDE + body for name, body in PER_RUN.items()}
SOURCES["prune_index"] = PRUNE_INDEX
