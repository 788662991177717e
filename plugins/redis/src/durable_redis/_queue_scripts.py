"""The Lua scripts of queues (``Capability.QUEUES``), run with ``_scripts``' prelude.

A queued run's entry is fields of its run hash (``_keys.QUEUE_FIELDS``); its queue's keys
(``_keys.QueueKeys``) share one hash tag. The scripts that change a run keep them
(``requeue`` in the prelude): ``:members`` holds the queue's runs that are not final, ``:running``
the ones holding a lease, scored by its expiry (renewals move the score), and a queued run is
never in ``<prefix>:live``; ``:delays`` the ones enqueued with a ``not_before`` after their
``enqueued_at`` until their first claim, scored by ``not_before`` (``wait_for_queues`` reads its
first score). A claim reads the run hashes its candidates name (keys it computes
from the prefix, as the store serves one server, not a cluster).

One clock: leases and rate windows are judged on the server's ``TIME``; ``not_before``,
``wake_at`` and the ``now`` a claim is given are the caller's.
"""

from __future__ import annotations

# KEYS: changing(run) (1-12), runs, ids, workflow index, the queue's members, debounce, the set
# of queue names and the queue's delays. ARGV: run_id, created_at, queue, priority, order (queue_order of
# enqueued_at), has_debounce, debounce key, has_partition, partition, not_before, enqueued_at,
# workflow, inputs, inputs_digest, updated_at, then the new run hash's field, value, ...
# Returns {1} created, {2, fields} a debounced run replaced, {0, fields} exists, -1 when the
# run's key holds another type than a hash.
ENQUEUE_RUN = """
local prefix = string.sub(KEYS[LIVE], 1, -6)
if ARGV[6] == '1' then
  local held = redis.call('HGET', KEYS[17], ARGV[7])
  if held then
    local key = prefix .. ':{' .. esc(held) .. '}:run'
    local f = redis.call('HMGET', key, 'status', 'lease_token', 'q_started_at', 'queue', 'workflow',
      'q_member')
    if f[1] == 'pending' and f[2] == '0' and not f[3] and f[4] == ARGV[3] then
      if f[5] ~= ARGV[12] then return {0, redis.call('HGETALL', key)} end
      local member = ARGV[5] .. ':' .. held
      redis.call('HSET', key, 'inputs', ARGV[13], 'inputs_digest', ARGV[14], 'updated_at', ARGV[15],
        'q_priority', ARGV[4], 'q_not_before', ARGV[10], 'q_enqueued_at', ARGV[11], 'q_member', member)
      if ARGV[8] == '1' then
        redis.call('HSET', key, 'q_partition', ARGV[9])
      else
        redis.call('HDEL', key, 'q_partition')
      end
      if f[6] then redis.call('ZREM', KEYS[16], f[6]) end
      redis.call('ZADD', KEYS[16], ARGV[4], member)
      if tonumber(ARGV[10]) > tonumber(ARGV[11]) then
        redis.call('ZADD', KEYS[19], ARGV[10], held)
      else
        redis.call('ZREM', KEYS[19], held)
      end
      redis.call('PUBLISH', prefix .. ':signals', cjson.encode({ARGV[3]}))
      return {2, redis.call('HGETALL', key)}
    end
  end
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'hash' then return {0, redis.call('HGETALL', KEYS[1])} end
if kind ~= 'none' then return -1 end
redis.call('HSET', KEYS[1], unpack(ARGV, 16))
redis.call('ZADD', KEYS[13], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[14], 0, ARGV[1])
redis.call('ZADD', KEYS[15], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[18], ARGV[3])
if ARGV[6] == '1' then redis.call('HSET', KEYS[17], ARGV[7], ARGV[1]) end
if tonumber(ARGV[10]) > tonumber(ARGV[11]) then redis.call('ZADD', KEYS[19], ARGV[10], ARGV[1]) end
reindex(nil)  -- the queue's members, out of :live, and its waiting claimers woken
set_ttl(0)  -- deliveries sent before the run existed never expire now
return {1}
"""

# KEYS: the queue's members, running, starts, debounce, meta, delays, then <prefix>:live and the
# six status indexes (STATUSES order). ARGV: now (the caller's), owner, lease_seconds, limit,
# concurrency, partition_concurrency, rate_n, rate_seconds ('' for no limit), nonce, then the
# workflows asked for (none: any). Returns {run_id, fields, run_id, fields, ...} in claim order.
#
# The live leases are counted from :running (entries whose score, the lease's expiry, is past are
# trimmed, and each one left is checked against its run: a dead owner's slot frees itself). The
# nonce (field 'claim', as claim_run's) tells this very call sent again after its reply was lost:
# it returns what it claimed then, and claims nothing more.
CLAIM_QUEUED = """
local server = clock()
local prefix = string.sub(KEYS[7], 1, -6)
local caller = tonumber(ARGV[1])
local owner, nonce = ARGV[2], ARGV[9]
local limit = tonumber(ARGV[4])
local concurrency, per_partition = num(ARGV[5]), num(ARGV[6])
local rate_n, rate_seconds = num(ARGV[7]), num(ARGV[8])
local wanted = nil
if #ARGV > 9 then
  wanted = {}
  for i = 10, #ARGV do wanted[ARGV[i]] = true end
end
local function run_key(id) return prefix .. ':{' .. esc(id) .. '}:run' end
local function part(value) if value then return 'p' .. value end return 'n' end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(server))
local running, partitions, again = 0, {}, {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local f = redis.call('HMGET', run_key(id), 'owner', 'lease_expires_at', 'q_partition', 'claim', 'queue')
  if f[5] and live(f[1], f[2], server) then
    running = running + 1
    local p = part(f[3])
    partitions[p] = (partitions[p] or 0) + 1
    if f[1] == owner and f[4] == nonce then
      again[#again + 1] = id
      again[#again + 1] = redis.call('HGETALL', run_key(id))
    end
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
if #again > 0 then return again end
local horizon = tonumber(redis.call('HGET', KEYS[5], 'horizon') or '3600') or 3600
if rate_seconds and rate_seconds > horizon then
  horizon = rate_seconds
  redis.call('HSET', KEYS[5], 'horizon', fmt(horizon))
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', fmt(server - horizon))
local in_window = 0
if rate_n then in_window = redis.call('ZCOUNT', KEYS[3], '(' .. fmt(server - rate_seconds), '+inf') end
local claimed = {}
local taken, start, page = 0, 0, 100
while taken < limit and not (concurrency and running >= concurrency) do
  local members = redis.call('ZRANGE', KEYS[1], start, start + page - 1)
  if #members == 0 then break end
  start = start + page
  for _, member in ipairs(members) do
    if taken >= limit or (concurrency and running >= concurrency) then break end
    local id = string.sub(member, 18)
    local key = run_key(id)
    local f = redis.call('HMGET', key, 'status', 'owner', 'lease_expires_at', 'wake_at', 'workflow',
      'q_not_before', 'q_partition', 'q_started_at', 'q_debounce', 'created_at', 'lease_token')
    local status = f[1]
    local due = (status == 'pending' or status == 'running' or status == 'waiting')
      and not (f[2] and f[3] and not num(f[3])) and not live(f[2], f[3], server)
      and (status ~= 'waiting' or f[2] or (num(f[4]) and num(f[4]) <= caller))
      and (num(f[6]) or 0) <= caller
      and (f[11] == nil or f[11] == false or string.match(f[11], '^%-?%d+$'))
      and (wanted == nil or (f[5] and wanted[f[5]]))
    local p = part(f[7])
    local first = not f[8]
    if due and per_partition and (partitions[p] or 0) >= per_partition then due = false end
    if due and first and rate_n and in_window >= rate_n then due = false end
    if due then
      local token = redis.call('HINCRBY', key, 'lease_token', 1)
      local expires = fmt(server + tonumber(ARGV[3]))
      redis.call('HSET', key, 'status', 'running', 'owner', owner, 'lease_expires_at', expires,
        'updated_at', fmt(server), 'claim', nonce)
      redis.call('HDEL', key, 'wake_at', 'activity')
      if first then
        redis.call('HSET', key, 'q_started_at', fmt(server))
        redis.call('ZADD', KEYS[3], fmt(server), id)
        in_window = in_window + 1
        if f[9] and redis.call('HGET', KEYS[4], f[9]) == id then redis.call('HDEL', KEYS[4], f[9]) end
        redis.call('ZREM', KEYS[6], id)
      end
      redis.call('ZADD', KEYS[2], expires, id)
      redis.call('ZREM', KEYS[7], id)
      if status ~= 'running' then
        redis.call('ZREM', KEYS[7 + STATUS_SLOT[status]], id)
        if num(f[10]) then redis.call('ZADD', KEYS[7 + STATUS_SLOT.running], f[10], id) end
      end
      running = running + 1
      partitions[p] = (partitions[p] or 0) + 1
      taken = taken + 1
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = redis.call('HGETALL', key)
    end
  end
end
return claimed
"""

# KEYS: the queue's members, running, starts. ARGV: now (the caller's), window ('' for none), prefix.
# Returns {queued, delayed, running, started in the window (-1 for no window)}. Writes nothing.
QUEUE_STATS = """
local server = clock()
local prefix = ARGV[3]
local caller = tonumber(ARGV[1])
local queued, delayed, running = 0, 0, 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local id = string.sub(member, 18)
  local f = redis.call('HMGET', prefix .. ':{' .. esc(id) .. '}:run', 'status', 'owner',
    'lease_expires_at', 'wake_at', 'q_not_before')
  local status = f[1]
  if live(f[2], f[3], server) then
    running = running + 1
  elseif status == 'pending' and (num(f[5]) or 0) > caller then
    delayed = delayed + 1
  elseif status == 'pending' or status == 'running'
    or (status == 'waiting' and (f[2] or (num(f[4]) and num(f[4]) <= caller))) then
    queued = queued + 1
  end
end
local started = -1
local window = num(ARGV[2])
if window then started = redis.call('ZCOUNT', KEYS[3], '(' .. fmt(server - window), '+inf') end
return {queued, delayed, running, started}
"""

QUEUE_SCRIPTS = {
    "enqueue_run": ENQUEUE_RUN,
    "claim_queued": CLAIM_QUEUED,
    "queue_stats": QUEUE_STATS,
}
