"""Redis store for durable: ``RedisStore(url="redis://localhost:6379/0", ttl=86400, prefix="durable")``.

It speaks to one Redis server. It does not support Redis Cluster: its client is not
cluster-aware (no slot routing, no MOVED/ASK redirects), and it is not tested against one.

Key layout (``_keys``): a run's keys are ``<prefix>:{<escaped run id>}:run`` (hash of the run's
fields), ``:steps`` (hash: step key -> checkpoint), ``:sigs`` (list of deliveries in ``seq``
order: the one key of a run's signals whose name says "sig") and ``:delivered`` (hash:
length-prefixed ``(name, delivery_id)`` -> seq, plus the ``seq`` counter). The braces delimit the
escaped run id, which contains none, so no two (prefix, run id, kind) triples share a key name.
They are written as a Redis hash tag, so all of one run's keys hash to one slot, but the scripts
that change a run also keep the prefix's indexes, which live in others, and nothing here routes
by slot. The indexes are sorted sets of run ids kept by the very scripts that change a run:
``<prefix>:runs`` (every run), ``<prefix>:status:<status>`` (one per stored status) and
``<prefix>:workflow:{<name>}`` (one per workflow), all scored by ``created_at``, which listings
walk (``_listing``: the one that narrows a query most, newest first, a page at a time, from
``RunQuery.after``'s run on); ``<prefix>:ids`` (every id at one score, so ``ZRANGE BYLEX`` finds
an id prefix: a run's children); ``<prefix>:live`` (the runs whose status may make them due,
scored by the time each becomes due, for ``due_runs``: a poll reads no finished or parked run).
So a listing page, a child lookup and a poll cost the same at 100,000 runs as at none.
``<prefix>:signals`` is the pub/sub channel that wakes ``wait_for_signal``.

Upgrading (``_layout``): ``<prefix>:layout`` holds the key layout's version. A store that opens
keys of the previous release (which kept no status, workflow or id index and named the dedupe
hash ``:sigids``) migrates them once, before ``open()`` returns: one ``SCAN`` of the keyspace for
the prefix's run keys, every run's index entries computed from its stored fields, every
``:sigids`` renamed ``:delivered``. Deliveries keep their key, so a run parked before the upgrade
receives a signal sent after it, and a delivery id recorded before is still recorded once.
Processes of the previous release keep none of these indexes, so upgrade them all; keys of a
newer layout are refused (``ConfigurationError``).

Queues (``Capability.QUEUES``, docs/QUEUES.md; ``_queues``, ``_queue_scripts``): a queued
run's entry (queue, priority, partition, not-before, enqueue time, debounce key, first start) is
fields of its run hash, so it is deleted and expires with the run; each queue's keys share the
hash tag ``{<prefix>:queue:<name>}``: ``:members`` (its unfinished runs, by priority then
enqueue time then id), ``:running`` (its runs holding a lease, scored by the lease's expiry,
which every script that changes a lease keeps), ``:starts`` (first claims, for rate windows),
``:debounce`` and ``:meta``; ``<prefix>:queues`` names them. A queued run is never in
``<prefix>:live`` (``due_runs`` never returns it). ``claim_queued`` is one script: the server's
``TIME``, the live leases counted from ``:running`` (expired entries trimmed, each left checked
against its run, so a dead owner's slot frees itself at its lease's expiry), the starts within
the rate window, then the members walked in order, skipping delayed runs, full partitions and
new starts past the rate window, each claim written as ``claim_run`` writes it. Enqueues, freed
slots and woken queued runs publish ``[queue]`` on ``<prefix>:signals``, which wakes
``wait_for_queues`` in every process. A queue's ``:delays`` holds its delayed runs not claimed yet,
scored by ``not_before``: an idle claimer sleeps until the earliest, then claims it.

Events and streams (``Capability.STREAMS``, docs/STREAMS.md; ``_outputs``, ``_output_scripts``):
three more keys of each run, ``:events`` (event key -> latest value), ``:streams`` (each
stream's item count and closed mark) and ``:items`` (every stream's items and write ids, as
length-prefixed fields), which expire and are deleted with its other keys. Each write is one
script (lease check, write id, closed check, append), so offsets have no gap; ``read_stream``
reads items and the closed mark in one script.
Writes, final statuses and deletions publish ``{"o": run_id}`` on ``<prefix>:signals``, which
wakes ``read_stream`` and ``get_event`` readers in every process.

Atomicity (``_scripts``): every operation that checks and writes is one Lua script run with
EVALSHA, fenced by the run's lease token where the Store contract says so.

Round trips (``_calls``): a lone operation is sent at once; a new checkpoint is one round trip.
Every command submitted while another round trip is in flight (script calls of any run, index
updates, reads) is sent with the others in the next one, as a non-transactional pipeline: each
script call touches one run's keys (and the index of live runs), and each caller gets exactly its
own reply, stored step or ``LeaseLost``. Checkpoints of one run under one lease are merged into
one script call (``_checkpoints``). So many concurrent runs share round trips and a connection
or two.

TTL policy: a run's keys get ``ttl`` seconds when it reaches a final status (``completed`` or
``cancelled``), counted from that moment; claiming or resetting it again removes the expiry.
Pending, running, waiting and *failed* runs never expire: a failed run is resumed by calling
it again, possibly days later, and must keep its checkpoints so finished steps do not run
twice. Delete failed runs you will not resume with ``delete_run``. Signals sent to a run that
does not exist (yet) expire after ``ttl`` unless the run is created meanwhile. ``ttl=0`` keeps
everything forever. A run counting down is listed in ``<prefix>:expiring`` by when its keys
expire; once they did, the next poll (``due_runs``, 100 runs a poll) removes its index entries,
and a listing drops any entry whose run it finds gone.

One clock: every lease comparison and expiry is the server's. The scripts read ``TIME`` for a
claim's "is the lease live?" and the expiry it sets, a renewal's expiry, a cancel's "does anyone
hold it?", the due time of a run whose signal arrived, and ``updated_at``; ``due_runs(now)``
judges ``now`` on the server's clock (``now - clock()`` seconds after its ``TIME``: a worker's
``time.time()`` is the server's now), and a run created with a lease (a direct call) keeps the
expiry its creator gave only when that is within a second of the server's view, else it lasts
the lease's length from the server's now. So a process whose clock is off by any amount neither
takes over a live run nor resumes a dead owner's runs late. Not the server's: the times a caller
chooses and the core compares itself (``created_at``, a workflow's ``deadline``, a durable
sleep's ``wake_at``, a delivery's ``sent_at``), which are that process's clock: a sleep parked by
a host whose clock is off by d wakes d late or early. ``RedisStore.clock`` (``time.time``) is
the hook a test skews.

Persistence: at open the store reads ``CONFIG GET appendonly``, ``save`` and
``maxmemory-policy`` (in the round trip that loads its scripts) and logs one WARNING per process
and server, naming the server without its password and the settings, when a restart would lose
runs (nothing on disk, or snapshots only: a crash loses what was written since the last one) or
memory pressure would evict them (``allkeys-*``). ``appendonly yes`` keeps every committed
checkpoint through a restart or a crash of the server (a power loss may cost the last second
with ``appendfsync everysec``). ``require_persistence=True`` (``?require_persistence=1``) refuses
to open (``ConfigurationError``) on such a server, and on one whose ``CONFIG`` is disabled
(renamed or denied), where the settings cannot be checked; otherwise that is logged at INFO.
``durable stores --check URL`` prints the same (``RedisStore.durability()``).

Data loss: each store writes ``<prefix>:alive`` when it opens (unless present) and remembers what
it holds. A fenced write or a ``get_run`` that finds its run gone checks it (one GET, on that
path only), and every poll (``due_runs``) reads it in its script: gone or replaced, the server
lost its data since the store opened. The store logs it once at WARNING ("the Redis server ... lost its data
(restart without persistence?)", with the server and its settings) and raises ``RedisDataLost``
(a ``StoreError``) instead of ``LeaseLost`` or returning no run, for that run and, until the store
is reopened, for every run it finds gone; it writes the marker again, and new runs work as
before. A process that opens its store after the loss cannot tell: the runs are unknown there,
and calling a lost run id again runs it from the start.

Timeouts: every operation of one round trip (all run, step and signal operations) raises
``StoreUnavailable`` at most ``operation_timeout`` seconds (default 5) after it started, retries
included; each round trip waits ``operation_timeout / 2`` for its reply and then drops its
connection, so the next attempt, or the next operation, uses a fresh one (a connection that died
silently is replaced within one operation). Listings bound each round trip, not their sum. The
signal subscription is pinged after 2 s without a message and counted lost when no reply comes
within ``operation_timeout / 2``: it resubscribes, and the waiters re-read their deliveries (they
poll every ``poll_interval`` while it is down), so a delivery is noticed within about
``4 + operation_timeout`` seconds (9 s by default) of a silent death, at once after a reset. A
signal wait rides out ``StoreUnavailable`` until its own deadline. The engine's heartbeat bounds
a renewal by a third of the lease on its own, and logs lease loss.

URL options: ``redis://[[user]:password@]host[:port][/db][?prefix=...&ttl=...]`` (also
``require_persistence=1`` and ``operation_timeout=SECONDS``) and ``rediss://`` for TLS; other
query options go to ``redis.asyncio.from_url``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from durable.hookspecs import StoreBackend, hookimpl
from durable.store import Capability, Store

if TYPE_CHECKING:
    from durable_redis._persistence import RedisDataLost
    from durable_redis._store import RedisStore

__all__ = ["RedisDataLost", "RedisStore"]

SCHEMES = ("redis", "rediss")
CAPABILITIES = frozenset(
    {
        Capability.PERSISTENT,
        Capability.MULTI_PROCESS,
        Capability.NOTIFY,
        Capability.MULTI_HOST,
        Capability.QUEUES,
        Capability.STREAMS,
    }
)
"""``RedisStore.capabilities``, declared here so that listing backends does not import redis-py."""


def __getattr__(name: str) -> Any:
    # The entry point loads this module for every Workflow(); redis-py (and hiredis) are imported
    # only when a Redis store is used.
    if name == "RedisStore":
        from durable_redis._store import RedisStore

        return RedisStore
    if name == "RedisDataLost":
        from durable_redis._persistence import RedisDataLost

        return RedisDataLost
    raise AttributeError(f"module 'durable_redis' has no attribute {name!r}")


@contextmanager
def _test_server() -> Iterator[str]:
    # Imported here: testcontainers is a test-only dependency (the `containers` extra).
    from testcontainers.community.redis import RedisContainer  # type: ignore[import-not-found,unused-ignore]

    with RedisContainer() as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(container.port)
        yield f"redis://{host}:{port}/0"


def _isolated_url(base_url: str, token: str) -> str:
    """``base_url`` with a fresh key prefix: the store shares no key with any other token's."""
    parts = urlsplit(base_url)
    query = [(n, v) for n, v in parse_qsl(parts.query, keep_blank_values=True) if n != "prefix"]
    query.append(("prefix", f"durable-test-{token}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def random_prefix() -> str:
    return "durable-test-" + secrets.token_hex(6)


async def _drop_isolated(url: str) -> None:
    """Delete every key under an isolated test URL's prefix (the contract suite's clean-up)."""
    import redis.asyncio as aioredis

    from durable_redis._store import RedisStore

    store = RedisStore.from_url(url)
    client = aioredis.from_url(store.url)
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in store.prefix) + ":*"
    try:
        batch: list[Any] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


@hookimpl
def durable_store_backends() -> list[StoreBackend]:
    return [
        StoreBackend(
            name="redis",
            schemes=SCHEMES,
            description="One Redis server (not Redis Cluster): many processes and hosts; pub/sub wake-ups.",
            store_class="durable_redis._store:RedisStore",
            install_hint="pip install 'python-durable[redis]'",
            capabilities=CAPABILITIES,
            test_server=_test_server,
            isolated_url=_isolated_url,
            drop_isolated=_drop_isolated,
        )
    ]


@hookimpl
def durable_store_from_url(url: str, options: dict[str, Any]) -> Store | None:
    if urlsplit(url).scheme.lower() not in SCHEMES:
        return None
    from durable_redis._store import RedisStore

    return RedisStore.from_url(url, **options)
