"""The Lua scripts that make each store operation atomic.

``KEYS`` of a script that may change a run's status, lease or wake time (``KeySpace.changing``):
``[run, steps, sigs, delivered]`` (the run's own keys, in one hash slot), then the index of live
runs, the six status indexes (``_keys.STATUSES`` order) and the expiry schedule; ``create_run``
and ``delete_run`` also get the run index and the id index (and ``create_run`` its workflow's
index). Fenced scripts answer ``{0, current_token}`` when the lease token is stale (``{0, -1}``
when the run is gone). The commonest replies are the integer ``1``: every reply element costs
the client CPU to parse.

One clock: every time a script compares or writes for a lease (a claim's "is the lease still
live?", a lease's expiry, a cancel's "does anyone hold it?", the index's due times, a delivery's
wake time, ``updated_at``) is the server's, read with ``TIME`` inside the script (``clock``), so
processes whose clocks disagree still agree on who holds a run. Scripts are replicated by their
effects (the only way since Redis 7, the default since 5; ``clock`` asks for it on older servers),
so ``TIME`` may precede writes. Durations (``lease_seconds``) come from the client; the times the
client chose (a run's ``created_at``, ``deadline``, a parked run's ``wake_at``) come as ``ARGV``
strings and are stored verbatim. Times a script takes are written with ``%.17g``, which Python's
``float`` reads back as the very double Lua computed; Lua compares them with ``tonumber``.
Scores are written as the stored strings, never as Lua numbers (which Redis formats with 14
digits).

Indexes. Every index is a sorted set of run ids, kept by the very script that changes the run,
so an entry never disagrees with its run (but for the entries of runs whose keys expired, below):

- ``<prefix>:runs``, ``<prefix>:status:<status>`` and ``<prefix>:workflow:{<name>}``, scored by
  ``created_at``: listings walk the one that narrows them most, newest first (``_listing``).
  The run index and the workflow's are written when the run is created; the status indexes move
  the run when its status changes (``reindex``, given the status it had).
- ``<prefix>:ids``, every run id at score 0: ``ZRANGE BYLEX`` finds the ids that start with a
  prefix (child runs are ``<parent>/...``) in O(log n) plus what it finds.
- ``<prefix>:live``, every run whose status is in ``DUE_STATUSES`` (pending, running, waiting),
  scored by the time it becomes due by ``durable._lifecycle.is_due``: when its lease expires if
  it has an owner and a lease expiry, else at once (score 0) for a pending or running run or a
  waiting one with an owner, else (a parked run) at its ``wake_at``, or never (``+inf``). A poll
  reads the entries scored up to now and only the runs they name, however many runs are parked
  or finished. A stored time that is not a number scores 0: the poll reads the record, which
  decodes as corrupt, and returns nothing for it.

A status that is not one of the six (a hand-edited record) has no status index entry and no live
entry: the run is listed, as corrupt, by listings without a status filter.

TTL policy (see the package docstring): ``set_ttl(ms)`` expires all four keys of a run (and its
three keys of events and streams, ``_keys.OUTPUT_KINDS``, named from its run key) when it reaches a
final status, and ``set_ttl(0)`` removes any expiry when it becomes live again.
Keys created later for a run that is already counting down inherit the run key's TTL. A run
counting down is listed in ``<prefix>:expiring`` (member ``<byte length of id>:<id><workflow>``,
scored by when its keys expire), so that a poll, once they expired, removes its index entries
(``prune``): an expired run leaves no entry behind for long, even in indexes no listing walks.
"""

from __future__ import annotations

from durable_redis._output_scripts import OUTPUT_SCRIPTS
from durable_redis._queue_scripts import QUEUE_SCRIPTS

# CLOCK_TOLERANCE: seconds a new run's lease expiry, by its creator's clock, may differ from the
# server's view of it and still be written as given (see CREATE_RUN).
_PRELUDE = """
local CLOCK_TOLERANCE = 1.0
local STATUS_SLOT = {pending = 1, running = 2, waiting = 3, completed = 4, failed = 5, cancelled = 6}
local LIVE, EXPIRING = 5, 12
local function clock()
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x)
  return string.format('%.17g', x)
end
local function num(text)
  local n = tonumber(text)
  if n and n == n then return n end
  return nil
end
local function schedule_member()
  local f = redis.call('HMGET', KEYS[1], 'run_id', 'workflow')
  if not f[1] then return nil end
  return string.len(f[1]) .. ':' .. f[1] .. (f[2] or '')
end
local function output_keys()
  local base = string.sub(KEYS[1], 1, -4)  -- '<prefix>:{<id>}:' of the run key '...:run'
  return {base .. 'events', base .. 'streams', base .. 'items'}
end
local function outputs_changed(id)
  -- Readers of the run's events and streams, in every process, look again (_notify).
  redis.call('PUBLISH', string.sub(KEYS[LIVE], 1, -6) .. ':signals', cjson.encode({o = id}))
end
local function set_ttl(ms)
  if ms > 0 then
    for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ms) end
    for _, key in ipairs(output_keys()) do redis.call('PEXPIRE', key, ms) end
    local member = schedule_member()
    if member then redis.call('ZADD', KEYS[EXPIRING], fmt(clock() + ms / 1000), member) end
    return
  end
  local counted = redis.call('PERSIST', KEYS[1])
  for i = 2, 4 do redis.call('PERSIST', KEYS[i]) end
  if counted == 1 then
    -- The output keys count down only while the run key does (set together, or inherited from
    -- it): a run key without a TTL, as on every claim of a live run, spares three commands.
    for _, key in ipairs(output_keys()) do redis.call('PERSIST', key) end
    local member = schedule_member()
    if member then redis.call('ZREM', KEYS[EXPIRING], member) end
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
  local at = num(expires)
  return owner and at and at > now
end
local function due_score(status, owner, expires, wake)
  if status ~= 'pending' and status ~= 'running' and status ~= 'waiting' then return nil end
  if owner then
    if num(expires) then return expires end
    return '0'
  end
  if status == 'waiting' then
    if wake == false or wake == nil then return '+inf' end
    if num(wake) then return wake end
  end
  return '0'
end
local function esc(id)
  if id == '' then return '%' end
  return (string.gsub(string.gsub(string.gsub(id, '%%', '%%25'), '{', '%%7B'), '}', '%%7D'))
end
local function queue_base(prefix, queue)
  return prefix .. ':queue:{' .. esc(queue) .. '}:'
end
local function requeue(f)
  -- A queued run (f: run_id, status, owner, lease_expires_at, wake_at, created_at, queue, q_member,
  -- q_priority) is out of the live index (queue claims serve it); its queue's members hold it
  -- until it is final, its queue's running set while it holds a lease; once it holds none (a
  -- slot freed, a run woken, reset or enqueued) the queue's waiting claimers are woken.
  redis.call('ZREM', KEYS[LIVE], f[1])
  local prefix = string.sub(KEYS[LIVE], 1, -6)
  local q = queue_base(prefix, f[7])
  if is_final(f[2]) then
    if f[8] then redis.call('ZREM', q .. 'members', f[8]) end
    redis.call('ZREM', q .. 'delays', f[1])
  elseif f[8] and num(f[9]) then
    redis.call('ZADD', q .. 'members', f[9], f[8])
  end
  if live(f[3], f[4], clock()) then
    redis.call('ZADD', q .. 'running', f[4], f[1])
  else
    redis.call('ZREM', q .. 'running', f[1])
    redis.call('PUBLISH', prefix .. ':signals', cjson.encode({f[7]}))
  end
end
local function reindex(old)
  local f = redis.call('HMGET', KEYS[1], 'run_id', 'status', 'owner', 'lease_expires_at', 'wake_at',
    'created_at', 'queue', 'q_member', 'q_priority')
  local id, status = f[1], f[2]
  if not id then return end
  if f[7] then
    requeue(f)
  else
    local due = due_score(status, f[3], f[4], f[5])
    if due then redis.call('ZADD', KEYS[LIVE], due, id) else redis.call('ZREM', KEYS[LIVE], id) end
  end
  if old == true or old == status then return end
  local was = old and STATUS_SLOT[old]
  if was then redis.call('ZREM', KEYS[LIVE + was], id) end
  local slot = status and STATUS_SLOT[status]
  if slot and num(f[6]) then redis.call('ZADD', KEYS[LIVE + slot], f[6], id) end
end
local function relive()
  reindex(true)  -- the live entry (and a queued run's queue entries), its status unchanged
end
"""

# KEYS: changing + runs, ids, workflow index. ARGV: ttl_ms, lease_seconds ('' for a run without
# a lease), the lease's expiry as given, run_id, created_at, field, value, field, value, ... A run
# created with a lease (a direct call owns it) keeps the expiry its creator gave when that is
# within CLOCK_TOLERANCE of lease_seconds from the server's now, else gets that instead: a creator
# whose clock is off cannot give a lease that is already over, or one that lasts longer than
# asked. Returns 1 when created with the fields as given, the expiry written instead when it was
# replaced, else the stored fields (-1 when the run's key holds something other than a hash).
CREATE_RUN = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'hash' then return redis.call('HGETALL', KEYS[1]) end
if kind ~= 'none' then return -1 end
local expires = nil
if ARGV[2] ~= '' then
  local server = clock() + tonumber(ARGV[2])
  if math.abs(server - tonumber(ARGV[3])) > CLOCK_TOLERANCE then expires = fmt(server) end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if expires then redis.call('HSET', KEYS[1], 'lease_expires_at', expires) end
redis.call('ZADD', KEYS[13], ARGV[5], ARGV[4])
redis.call('ZADD', KEYS[14], 0, ARGV[4])
redis.call('ZADD', KEYS[15], ARGV[5], ARGV[4])
reindex(nil)
set_ttl(tonumber(ARGV[1]))  -- a live run's keys (deliveries sent before it existed) never expire
local made = redis.call('HMGET', KEYS[1], 'status', 'owner')
if made[1] == 'pending' and not made[2] then  -- workers of the default queue look again
  redis.call('PUBLISH', string.sub(KEYS[LIVE], 1, -6) .. ':signals', '["default"]')
end
return expires or 1
"""

# ARGV: owner, lease_seconds, nonce. Returns {token, expires_at}, or nil when the claim is refused.
# The nonce (field 'claim') tells this very call, sent again after its reply was lost. A record it
# cannot read (a status that is not claimable, a token or lease expiry that is not a number) is
# refused, unchanged.
CLAIM_RUN = """
local now = clock()
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'lease_expires_at', 'lease_token', 'claim')
if not f[1] then return false end
if f[2] == ARGV[1] and f[5] == ARGV[3] and f[3] then return {tonumber(f[4]), f[3]} end
local status = f[1]
if status ~= 'pending' and status ~= 'running' and status ~= 'waiting' and status ~= 'failed' then
  return false
end
if f[4] and not string.match(f[4], '^%-?%d+$') then return false end
if f[2] and f[3] and not num(f[3]) then return false end
if live(f[2], f[3], now) then return false end
local token = redis.call('HINCRBY', KEYS[1], 'lease_token', 1)
local expires = fmt(now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[1], 'lease_expires_at', expires,
  'updated_at', fmt(now), 'claim', ARGV[3])
redis.call('HDEL', KEYS[1], 'wake_at', 'activity')
set_ttl(0)
reindex(status)
return {token, expires}
"""

# ARGV: token, owner, lease_seconds[, activity]. The expiry is lease_seconds from the server's
# now: now itself for a lease given back (lease_seconds=0), which claim_run's strict comparison
# sees expired at once. updated_at is left alone: a heartbeat is not a change.
RENEW_LEASE = """
local now = clock()
local lost = stale(ARGV[1])
if lost then return lost end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'lease_expires_at', fmt(now + tonumber(ARGV[3])))
if ARGV[4] then redis.call('HSET', KEYS[1], 'activity', ARGV[4]) end
relive()
return {1, redis.call('HGETALL', KEYS[1])}
"""

# ARGV: token, ttl_ms, release ('1'/'0'), status, mask, result, error, wake_at, activity
# mask holds one '1'/'0' per optional field: present values are written, absent ones deleted.
# Returns 1.
UPDATE_RUN = """
local now = clock()
local lost = stale(ARGV[1])
if lost then return lost end
local old = redis.call('HGET', KEYS[1], 'status')
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
reindex(old)
set_ttl(tonumber(ARGV[2]))
if is_final(ARGV[4]) and not is_final(old) then outputs_changed(redis.call('HGET', KEYS[1], 'run_id')) end
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
  reindex(f[1])
  set_ttl(tonumber(ARGV[1]))
  outputs_changed(redis.call('HGET', KEYS[1], 'run_id'))
end
return redis.call('HGETALL', KEYS[1])
"""

# Resets a failed or cancelled run; a run in any other status is returned unchanged. Returns the
# run's fields, or nil for an unknown run.
RESET_RUN = """
local now = clock()
local old = redis.call('HGET', KEYS[1], 'status')
if not old then
  if redis.call('EXISTS', KEYS[1]) == 0 then return false end
  return redis.call('HGETALL', KEYS[1])
end
if old ~= 'failed' and old ~= 'cancelled' then return redis.call('HGETALL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'status', 'pending', 'cancel_requested', '0', 'updated_at', fmt(now))
redis.call('HDEL', KEYS[1], 'error', 'wake_at', 'activity')
set_ttl(0)
reindex(old)
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: changing + runs, ids. ARGV: run_id. Returns {existed, workflow} (workflow '' when
# unknown): the client removes the run from its workflow's index (``PRUNE``).
DELETE_RUN = """
local workflow = redis.call('HGET', KEYS[1], 'workflow') or ''
local member = schedule_member()
local queued = redis.call('HMGET', KEYS[1], 'queue', 'q_member', 'q_debounce')
if queued[1] then
  local q = queue_base(string.sub(KEYS[LIVE], 1, -6), queued[1])
  if queued[2] then redis.call('ZREM', q .. 'members', queued[2]) end
  redis.call('ZREM', q .. 'running', ARGV[1])
  redis.call('ZREM', q .. 'delays', ARGV[1])
  if queued[3] and redis.call('HGET', q .. 'debounce', queued[3]) == ARGV[1] then
    redis.call('HDEL', q .. 'debounce', queued[3])
  end
end
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], unpack(output_keys()))
if existed == 1 then outputs_changed(ARGV[1]) end
for i = LIVE, LIVE + 6 do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('ZREM', KEYS[13], ARGV[1])
redis.call('ZREM', KEYS[14], ARGV[1])
if member then redis.call('ZREM', KEYS[EXPIRING], member) end
return {existed, workflow}
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

# KEYS: run, steps, sigs, delivered, live. ARGV: field, nonce, body, orphan_ttl_ms, channel, notice
# Returns 1 if recorded (also when this very call, by its nonce, recorded it before), else 0.
# A waiting run is due from the server's now.
SEND_SIGNAL = """
local now = fmt(clock())
local seen = redis.call('HGET', KEYS[4], ARGV[1])
if seen then
  local space = string.find(seen, ' ', 1, true)
  if space and string.sub(seen, space + 1) == ARGV[2] then return 1 end
  return 0
end
local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
redis.call('HSET', KEYS[4], ARGV[1], seq .. ' ' .. ARGV[2])
redis.call('RPUSH', KEYS[3], seq .. ' ' .. ARGV[3])
if redis.call('HGET', KEYS[1], 'status') == 'waiting' then
  redis.call('HSET', KEYS[1], 'wake_at', now, 'updated_at', now)
  relive()
end
local pttl = inherit_ttl(KEYS[3])
if pttl > 0 then
  redis.call('PEXPIRE', KEYS[4], pttl)
elseif pttl == -2 and tonumber(ARGV[4]) > 0 then
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""

# KEYS: run, expiring, then indexes. ARGV: run_id, its expiry schedule member ('' for none).
# Removes run_id from every index when the run's key is gone (it expired, or was deleted), and
# its schedule entry; a run that still exists keeps its entries (it was created again, or its
# keys expire later than scheduled: rescheduled). Returns 1 when the entries were removed.
PRUNE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[2] ~= '' then
    local pttl = redis.call('PTTL', KEYS[1])
    if pttl > 0 then
      redis.call('ZADD', KEYS[2], fmt(clock() + pttl / 1000), ARGV[2])
    else
      redis.call('ZREM', KEYS[2], ARGV[2])
    end
  end
  return 0
end
for i = 3, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[2], ARGV[2]) end
return 1
"""

# KEYS: run, runs, live, the six status indexes, ids, the index of the workflow the caller read
# (any other key when it read none), the index of another workflow the run was found in (the
# previous key again for none). ARGV: run_id, the workflow the caller read, '1' if it read one
# ('0': the record has no workflow field). Every index entry of the run recomputed from its stored
# fields (none for a run that is gone): building the indexes of data written by the previous
# release, and repairing an entry that disagrees with its run (a hand-edited record, a process of
# the previous release). Returns 1 if the run exists.
INDEX_RUN = """
local id = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 2, #KEYS do redis.call('ZREM', KEYS[i], id) end
  return 0
end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return 0 end
local f = redis.call('HMGET', KEYS[1], 'status', 'owner', 'lease_expires_at', 'wake_at', 'created_at',
  'workflow', 'queue')
local due = due_score(f[1], f[2], f[3], f[4])
if f[7] then due = nil end  -- a queued run: queue claims serve it, never due_runs
if due then redis.call('ZADD', KEYS[3], due, id) else redis.call('ZREM', KEYS[3], id) end
local created = num(f[5]) and f[5]
for status, slot in pairs(STATUS_SLOT) do
  if status == f[1] and created then
    redis.call('ZADD', KEYS[3 + slot], created, id)
  else
    redis.call('ZREM', KEYS[3 + slot], id)
  end
end
if created then redis.call('ZADD', KEYS[2], created, id) end
redis.call('ZADD', KEYS[10], 0, id)
if ARGV[3] == '1' and f[6] == ARGV[2] then
  if created then redis.call('ZADD', KEYS[11], created, id) end
  if KEYS[12] ~= KEYS[11] then redis.call('ZREM', KEYS[12], id) end
elseif ARGV[3] == '0' and not f[6] and KEYS[12] ~= KEYS[11] then
  redis.call('ZREM', KEYS[12], id)
end
return 1
"""

# KEYS: the previous layout's dedupe hash (:sigids), the current one (:delivered). Renames the
# first to the second (its TTL kept), or merges it into one written meanwhile: fields the second
# lacks are copied, the seq counter becomes the larger. Returns 1 if there was one to migrate.
MIGRATE_DELIVERED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return 1
end
local old = redis.call('HGETALL', KEYS[1])
for i = 1, #old, 2 do
  if old[i] == 'seq' then
    local current = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0') or 0
    if (tonumber(old[i + 1]) or 0) > current then redis.call('HSET', KEYS[2], 'seq', old[i + 1]) end
  else
    redis.call('HSETNX', KEYS[2], old[i], old[i + 1])
  end
end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: layout, runs, alive. ARGV: the layout this code writes, then the layouts it may mark as
# this one without migrating. Sent with EVAL in the round trip that loads the scripts when a store opens,
# before the marker <prefix>:alive is written. Returns 1 when the prefix's keys are in this
# layout: it says so, or the prefix was never opened (no run, no marker: then it is marked at
# once), or it is in the layout that needs no migration (marked at once); 0 when data of the
# previous release must be migrated first; 2 when a newer release wrote it.
LAYOUT_CHECK = """
local version = redis.call('GET', KEYS[1])
if version == ARGV[1] then return 1 end
for i = 2, #ARGV do
  if version == ARGV[i] then
    redis.call('SET', KEYS[1], ARGV[1])
    return 1
  end
end
if version and (tonumber(version) or 0) > tonumber(ARGV[1]) then return 2 end
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# KEYS: live, alive, expiring. ARGV: offset (seconds the caller's now is ahead of its own clock),
# how many expired schedule entries to return at most. The runs due at the server's now plus the
# offset: {now, marker, ids, expired}, where now is the moment judged, marker what <prefix>:alive
# holds ('' when it is gone: the server lost its data), and expired the schedule entries of runs
# whose keys expired by the server's now (their index entries are pruned next).
DUE_RUNS = """
local server = clock()
local now = fmt(server + tonumber(ARGV[1]))
local ids = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE')
local expired = redis.call('ZRANGE', KEYS[3], '-inf', fmt(server), 'BYSCORE', 'LIMIT', 0, ARGV[2])
return {now, redis.call('GET', KEYS[2]) or '', ids, expired}
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
    "prune": PRUNE,
    "index_run": INDEX_RUN,
}

SOURCES: dict[str, str] = {name: _PRELUDE + body for name, body in PER_RUN.items()}
SOURCES.update({name: _PRELUDE + body for name, body in QUEUE_SCRIPTS.items()})
SOURCES.update({name: _PRELUDE + body for name, body in OUTPUT_SCRIPTS.items()})
SOURCES["migrate_delivered"] = MIGRATE_DELIVERED
SOURCES["due_runs"] = _PRELUDE + DUE_RUNS
