"""The Lua scripts that make each store operation atomic.

Per-run scripts receive ``KEYS = [run, steps, sigs, sigids]`` (or a leading subset), all in
one hash slot, and those that change a run's status, lease or wake time also the index of live
runs (``KEYS[5]``, ``KEYS[4]`` for ``send_signal``). Fenced scripts answer ``{0, current_token}``
when the lease token is stale (``{0, -1}`` when the run is gone). The commonest replies are the
integer ``1``: every reply element costs the client CPU to parse.

One clock: every time a script compares or writes for a lease (a claim's "is the lease still
live?", a lease's expiry, a cancel's "does anyone hold it?", the index's due times, a delivery's
wake time, ``updated_at``) is the server's, read with ``TIME`` inside the script (``clock``), so
processes whose clocks disagree still agree on who holds a run. Scripts are replicated by their
effects (the only way since Redis 7, the default since 5; ``clock`` asks for it on older servers),
so ``TIME`` may precede writes. Durations (``lease_seconds``) come from the client; the times the
client chose (a run's ``created_at``, ``deadline``, a parked run's ``wake_at``) come as ``ARGV``
strings and are stored verbatim. Times a script takes are written with ``%.17g``, which Python's
``float`` reads back as the very double Lua computed; Lua compares them with ``tonumber``.

The index of live runs (``<prefix>:live``) lists every run whose status is in ``DUE_STATUSES``
(pending, running, waiting), scored by the time it becomes due by ``durable._lifecycle.is_due``:
when its lease expires if it has an owner and a lease expiry, else at once (score 0) for a
pending or running run or a waiting one with an owner, else (a parked run) at its ``wake_at``, or
never (``+inf``). ``reindex`` recomputes a run's entry from its stored fields in the script that
changed them, so the entry never disagrees with the run: a poll reads the entries scored up to
now and only the runs they name, however many finished runs the store holds.

TTL policy (see the package docstring): ``set_ttl(ms)`` expires all four keys of a run when
it reaches a final status, and ``set_ttl(0)`` removes any expiry when it becomes live again.
Keys created later for a run that is already counting down inherit the run key's TTL.
"""

from __future__ import annotations

# CLOCK_TOLERANCE: seconds a new run's lease expiry, by its creator's clock, may differ from the
# server's view of it and still be written as given (see CREATE_RUN).
_PRELUDE = """
local CLOCK_TOLERANCE = 1.0
local function clock()
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x)
  return string.format('%.17g', x)
end
local function set_ttl(ms)
  for i = 1, 4 do
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
local function reindex(index)
  local f = redis.call('HMGET', KEYS[1], 'run_id', 'status', 'owner', 'lease_expires_at', 'wake_at')
  local status = f[2]
  if status ~= 'pending' and status ~= 'running' and status ~= 'waiting' then
    if f[1] then redis.call('ZREM', index, f[1]) end
    return
  end
  local due = '0'
  if f[3] then
    due = f[4] or '0'
  elseif status == 'waiting' then
    due = f[5] or '+inf'
  end
  redis.call('ZADD', index, due, f[1])
end
"""

# ARGV: ttl_ms, lease_seconds ('' for a run without a lease), the lease's expiry as given,
# field, value, field, value, ... A run created with a lease (a direct call owns it) keeps the
# expiry its creator gave when that is within CLOCK_TOLERANCE of lease_seconds from the server's
# now, else gets that instead: a creator whose clock is off cannot give a lease that is already
# over, or one that lasts longer than asked. Returns 1 when created with the fields as given, the
# expiry written instead when it was replaced, else the stored fields.
CREATE_RUN = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
local expires = nil
if ARGV[2] ~= '' then
  local server = clock() + tonumber(ARGV[2])
  if math.abs(server - tonumber(ARGV[3])) > CLOCK_TOLERANCE then expires = fmt(server) end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if expires then redis.call('HSET', KEYS[1], 'lease_expires_at', expires) end
set_ttl(tonumber(ARGV[1]))
reindex(KEYS[5])
return expires or 1
"""

# ARGV: owner, lease_seconds, nonce. Returns {token, expires_at}, or nil when the claim is refused.
# The nonce (field 'claim') tells this very call, sent again after its reply was lost.
CLAIM_RUN = """
local now = clock()
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'lease_expires_at', 'lease_token', 'claim')
if not f[1] then return false end
if f[2] == ARGV[1] and f[5] == ARGV[3] and f[3] then return {tonumber(f[4]), f[3]} end
if is_final(f[1]) or live(f[2], f[3], now) then return false end
local token = redis.call('HINCRBY', KEYS[1], 'lease_token', 1)
local expires = fmt(now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[1], 'lease_expires_at', expires,
  'updated_at', fmt(now), 'claim', ARGV[3])
redis.call('HDEL', KEYS[1], 'wake_at', 'activity')
set_ttl(0)
reindex(KEYS[5])
return {token, expires}
"""

# ARGV: token, owner, lease_seconds[, activity]. The expiry is lease_seconds from the server's
# now: now itself for a lease given back (lease_seconds=0), which claim_run's strict comparison
# sees expired at once.
RENEW_LEASE = """
local now = clock()
local lost = stale(ARGV[1])
if lost then return lost end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'lease_expires_at', fmt(now + tonumber(ARGV[3])))
if ARGV[4] then redis.call('HSET', KEYS[1], 'activity', ARGV[4]) end
reindex(KEYS[5])
return {1, redis.call('HGETALL', KEYS[1])}
"""

# ARGV: token, ttl_ms, release ('1'/'0'), status, mask, result, error, wake_at, activity
# mask holds one '1'/'0' per optional field: present values are written, absent ones deleted.
# Returns 1.
UPDATE_RUN = """
local now = clock()
local lost = stale(ARGV[1])
if lost then return lost end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'updated_at', fmt(now))
local names = {'result', 'error', 'wake_at', 'activity'}
for i = 1, 4 do
  if string.sub(ARGV[5], i, i) == '1' then
    redis.call('HSET', KEYS[1], names[i], ARGV[5 + i])
  else
    redis.call('HDEL', KEYS[1], names[i])
  end
end
if ARGV[3] == '1' then redis.call('HDEL', KEYS[1], 'owner', 'lease_expires_at') end
set_ttl(tonumber(ARGV[2]))
reindex(KEYS[5])
return 1
"""

# ARGV: ttl_ms. Returns the run's fields, or nil for an unknown run.
REQUEST_CANCEL = """
local now = clock()
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'lease_expires_at')
if not f[1] then return false end
redis.call('HSET', KEYS[1], 'cancel_requested', '1', 'updated_at', fmt(now))
if not is_final(f[1]) and not live(f[2], f[3], now) then
  redis.call('HSET', KEYS[1], 'status', 'cancelled')
  set_ttl(tonumber(ARGV[1]))
  reindex(KEYS[5])
end
return redis.call('HGETALL', KEYS[1])
"""

RESET_RUN = """
local now = clock()
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'status', 'pending', 'cancel_requested', '0', 'updated_at', fmt(now))
redis.call('HDEL', KEYS[1], 'error', 'wake_at', 'activity')
set_ttl(0)
reindex(KEYS[5])
return redis.call('HGETALL', KEYS[1])
"""

# ARGV: run_id
DELETE_RUN = """
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
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

# KEYS: run, sigs, sigids, live. ARGV: field, nonce, body, orphan_ttl_ms, channel, notice
# Returns 1 if recorded (also when this very call, by its nonce, recorded it before), else 0.
# A waiting run is due from the server's now.
SEND_SIGNAL = """
local now = fmt(clock())
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
  redis.call('HSET', KEYS[1], 'wake_at', now, 'updated_at', now)
  reindex(KEYS[4])
end
local pttl = inherit_ttl(KEYS[2])
if pttl > 0 then
  redis.call('PEXPIRE', KEYS[3], pttl)
elseif pttl == -2 and tonumber(ARGV[4]) > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
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

# KEYS: run, live. ARGV: run_id. The run's entry in the index of live runs, from its stored fields
# (none for a run that is gone): building the index of a store written by the previous release,
# and repairing an entry that disagrees with its run.
REINDEX = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.call('ZREM', KEYS[2], ARGV[1]) end
reindex(KEYS[2])
return 1
"""

# KEYS: live_built, runs. Sent with EVAL in the round trip that loads the scripts when a store
# opens. Returns 1 when the index of live runs is complete: it was built, or there is no run yet
# (then it is marked built at once); 0 when the runs of an older release must be indexed first.
LIVE_INDEX_BUILT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], '1')
return 1
"""

# KEYS: live, alive. ARGV: offset (seconds the caller's now is ahead of its own clock). The runs
# due at the server's now plus the offset: {now, marker, ids}, where now is the moment judged and
# marker what <prefix>:alive holds ('' when it is gone: the server lost its data).
DUE_RUNS = """
local now = fmt(clock() + tonumber(ARGV[1]))
local ids = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE')
return {now, redis.call('GET', KEYS[2]) or '', ids}
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
    "reindex": REINDEX,
}

SOURCES: dict[str, str] = {name: _PRELUDE + body for name, body in PER_RUN.items()}
SOURCES["prune_index"] = PRUNE_INDEX
SOURCES["due_runs"] = _PRELUDE + DUE_RUNS
