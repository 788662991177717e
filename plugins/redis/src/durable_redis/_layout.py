"""Bringing keys written by the previous release to this layout (``_keys.LAYOUT``), once.

The previous release kept no status, workflow or id index and called a run's dedupe hash
``:sigids``. When a store opens a prefix whose ``<prefix>:layout`` is not this version (and
that holds runs or a marker: a prefix never opened has nothing to migrate, see
``LAYOUT_CHECK``), it scans the prefix's run keys (``SCAN MATCH <prefix>:{*``, a walk of the
whole keyspace, once) and, for each:

- a run hash: its every index entry is computed from its stored fields by ``index_run``, one
  atomic step per run, so a run another process changes meanwhile (whose scripts keep the
  indexes themselves) is never indexed from a stale read;
- a ``:sigids`` hash: renamed ``:delivered`` (``migrate_delivered``; merged into one written
  meanwhile), its TTL kept. The deliveries themselves (``:sigs``) keep their key, so a run parked
  under the previous layout receives a signal sent after the upgrade, and a delivery id recorded
  before it is still recorded once.

Then it writes ``<prefix>:layout``. Several processes opening at once may each migrate; the
outcome is the same. A process of the previous release still running writes runs these indexes
miss and dedupe hashes under the old name: upgrade every process (the package docstring says so).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from durable_redis import _keys as k
from durable_redis._calls import Call

if TYPE_CHECKING:
    from durable_redis._store import RedisStore

SCAN_COUNT = 5000
"""Keys a SCAN step looks at: the scan walks the whole keyspace (every prefix's keys), once."""


async def migrate(store: RedisStore) -> None:
    """Index every run and rename every ``:sigids`` hash of ``store``'s prefix, then mark the
    prefix as in this layout."""
    keys = store.keys
    cursor = 0
    while True:
        step = functools.partial(_scan, store, cursor)
        cursor, found = await store._call("migrating keys to this layout", step)
        runs: list[str] = []
        calls: list[Call] = []
        for key in found:
            parsed = keys.run_id_of(key)
            if parsed is None:
                continue
            run_id, kind = parsed
            if kind == "run":
                runs.append(run_id)
            elif kind == "sigids":
                delivered = keys.run_keys(run_id)[3]
                what = f"migrating the deliveries of run {run_id!r}"
                calls.append(Call(what, [key, delivered], [], script="migrate_delivered"))
        if runs:
            read = functools.partial(_workflows, store, runs)
            workflows = await store._call("migrating keys to this layout", read)
            for run_id, workflow in zip(runs, workflows, strict=True):
                if not isinstance(workflow, Exception):  # another type than a hash: corrupt, left as is
                    calls.append(store.index_call(run_id, workflow))
        if calls:
            await store.run_together(calls)
        if cursor == 0:
            break
    what = "marking the keys migrated"
    await store.run_together(
        [Call.plain(what, "SET", keys.layout, k.LAYOUT), Call.plain(what, "DEL", f"{keys.prefix}:live:built")]
    )


async def _scan(store: RedisStore, cursor: int, _attempt: int) -> tuple[int, list[str]]:
    """One SCAN step over the prefix's run keys: the next cursor (0 at the end) and keys."""
    cursor, keys = await store.client.scan(cursor, match=store.keys.run_pattern, count=SCAN_COUNT)
    return cursor, [str(key) for key in keys]


async def _workflows(store: RedisStore, run_ids: list[str], _attempt: int) -> list[Any]:
    """Each run's stored workflow (``None`` if it has none; the error of a key of another type)."""
    async with store.client.pipeline(transaction=False) as pipe:
        for run_id in run_ids:
            pipe.hget(store.keys.run_keys(run_id)[0], "workflow")
        return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]
