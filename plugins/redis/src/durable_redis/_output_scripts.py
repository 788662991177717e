"""The Lua scripts of events and streams (``Capability.STREAMS``), run with ``_scripts``' prelude.

A run's events are the hash ``:events`` (key -> latest value). Its streams are two hashes
(``_keys``): ``:streams``, small, with ``n`` + ``K`` the item count of stream ``K`` and ``c`` + ``K``
its closed mark (``list_streams`` reads it whole), and ``:items``, whose fields start with one
letter and ``<byte length of K>:K`` (``i`` + offset an item, ``w`` + write id the offset of the
append that carried it): the length makes ``K`` end where it says, so no field of one stream is a
field of another. A fixed number of keys per run keeps its scripts' ``KEYS`` and its TTL free of
any list of stream names.

Every write is one script: the fencing check (the run's ``lease_token``), the write id's lookup,
the closed check and the append happen with nothing in between, so offsets are 0..n-1 with no gap
whichever process appends. A write takes the run key's TTL (a finished run's keys count down
together) and publishes an output notice (``_keys.output_notice``) on the prefix's channel, which
every store's pub/sub connection hears (``_notify``): readers in every process look again.
"""

from __future__ import annotations

# KEYS: run, events. ARGV: token, key, value, channel, notice. Returns 1, or {0, token} if stale.
SET_EVENT = """
local lost = stale(ARGV[1])
if lost then return lost end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
inherit_ttl(KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""

# KEYS: run, streams, items. ARGV: token, key, value, has write id ('1'/'0'), write id, channel,
# notice. Returns the new item's offset, the offset of the append that carried the write id before
# (nothing written), -1 for a closed stream (nothing written), or {0, token} if stale.
APPEND_STREAM = """
local lost = stale(ARGV[1])
if lost then return lost end
local head = string.len(ARGV[2]) .. ':' .. ARGV[2]
local known = ARGV[4] == '1' and redis.call('HGET', KEYS[3], 'w' .. head .. ARGV[5])
if known then return tonumber(known) end
if redis.call('HEXISTS', KEYS[2], 'c' .. ARGV[2]) == 1 then return -1 end
local offset = redis.call('HINCRBY', KEYS[2], 'n' .. ARGV[2], 1) - 1
redis.call('HSET', KEYS[3], 'i' .. head .. offset, ARGV[3])
if ARGV[4] == '1' then redis.call('HSET', KEYS[3], 'w' .. head .. ARGV[5], offset) end
inherit_ttl(KEYS[2])
inherit_ttl(KEYS[3])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return offset
"""

# KEYS: run, streams. ARGV: token, key, channel, notice. Returns 1, or {0, token} if stale.
CLOSE_STREAM = """
local lost = stale(ARGV[1])
if lost then return lost end
redis.call('HSET', KEYS[2], 'c' .. ARGV[2], '1')
inherit_ttl(KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""

# KEYS: streams, items. ARGV: key, offset, limit. Returns {closed (1/0), first offset, value,
# value, ...}: the items from offset on (at most limit) and whether the stream is closed, read in
# one step, so a reader that sees it closed has seen every item. Writes nothing.
READ_STREAM = """
local head = string.len(ARGV[1]) .. ':' .. ARGV[1]
local fields = redis.call('HMGET', KEYS[1], 'n' .. ARGV[1], 'c' .. ARGV[1])
local count = tonumber(fields[1]) or 0
local out = {fields[2] and 1 or 0}
local start = math.max(tonumber(ARGV[2]), 0)
local stop = math.min(count, start + math.max(tonumber(ARGV[3]), 0)) - 1
out[2] = start
local page = 500  -- HMGET arguments per call: unpack() has a limit
for first = start, stop, page do
  local names = {}
  for at = first, math.min(first + page - 1, stop) do names[#names + 1] = 'i' .. head .. at end
  local values = redis.call('HMGET', KEYS[2], unpack(names))
  for _, value in ipairs(values) do out[#out + 1] = value end
end
return out
"""

OUTPUT_SCRIPTS = {
    "set_event": SET_EVENT,
    "append_stream": APPEND_STREAM,
    "close_stream": CLOSE_STREAM,
    "read_stream": READ_STREAM,
}
