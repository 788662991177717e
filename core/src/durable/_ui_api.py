"""``durable ui``'s JSON answers: a page of runs, counts per status, a run, a run's family tree.

Query parameters are parsed here, and refused (``ValueError``, answered 400) when malformed:

- ``status`` (repeatable), ``workflow``, ``prefix`` (run id prefix), ``version`` (the code version
  that created the run, exact), ``since`` / ``until`` (creation time, epoch seconds: ``since``
  inclusive, ``until`` exclusive);
- ``limit`` from 1 to 1000 (larger ones give 1000; default 100);
- paging: ``after_created`` and ``after_id`` together, the ``(created_at, run_id)`` of the last run
  of the previous page (``RunQuery.after``, keyset paging: a page deep in the history costs what
  the first one does); ``offset`` is still accepted.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from durable import _inspect, _listing
from durable._records import RunQuery, RunStatus
from durable.errors import UnknownRunError
from durable.store import Store

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
COUNT_LIMIT = 10_000
"""Counts per status read at most this many runs; beyond, they say so (``counts_capped``)."""
TREE_LIMIT = 500
"""A family tree shows at most this many runs (``tree_capped`` beyond)."""


def first(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def integer(params: dict[str, list[str]], name: str, default: int, *, minimum: int) -> int:
    text = first(params, name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"?{name}= must be an integer, got {text[:40]!r}") from None
    if value < minimum:
        raise ValueError(f"?{name}= must be at least {minimum}, got {value}")
    return value


def _time(params: dict[str, list[str]], name: str) -> float | None:
    text = first(params, name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"?{name}= must be a time in epoch seconds, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"?{name}= must be a finite time, got {text[:40]!r}")
    return value


def parse_query(params: dict[str, list[str]]) -> RunQuery:
    """The ``RunQuery`` a request's parameters describe (see the module docstring)."""
    statuses = frozenset(RunStatus(s) for s in params.get("status", []) if s)
    after_created, after_id = _time(params, "after_created"), first(params, "after_id")
    if (after_created is None) != (not after_id):
        raise ValueError("?after_created= and ?after_id= go together (the last run of the previous page)")
    return RunQuery(
        statuses=statuses or None,
        workflow=first(params, "workflow") or None,
        id_prefix=first(params, "prefix") or None,
        version=first(params, "version") or None,
        created_after=_time(params, "since"),
        created_before=_time(params, "until"),
        limit=min(integer(params, "limit", DEFAULT_LIMIT, minimum=1), MAX_LIMIT),
        offset=integer(params, "offset", 0, minimum=0),
        after=None if after_created is None or not after_id else (after_created, after_id),
    )


async def runs_page(store: Store, query: RunQuery) -> dict[str, Any]:
    """One page of runs, newest first, with the cursor of the next page (``None`` on the last).

    A filter on a reported status such as ``interrupted`` may read several stored pages for one
    page of answers: ``_inspect.iter_runs`` reads them by keyset from ``query.after`` on."""
    if _listing._reads_exactly(query.statuses):
        runs = await _inspect.list_reported(store, replace(query, limit=query.limit + 1))
    else:
        runs = [run async for run in _inspect.iter_runs(store, query, limit=query.limit + 1)]
    more = len(runs) > query.limit
    runs = runs[: query.limit]
    summaries = await _inspect.summarize(store, runs)
    last = runs[-1] if runs else None
    return {
        "runs": [s.to_json() for s in summaries],
        "limit": query.limit,
        "offset": query.offset,
        "next": {"created_at": last.created_at, "run_id": last.run_id} if more and last else None,
        "observed_at": time.time(),
    }


async def status_counts(store: Store, query: RunQuery) -> dict[str, Any]:
    """How many runs match ``query``'s filters other than status and paging, per reported status."""
    base = replace(query, statuses=None, after=None, offset=0)
    counts: Counter[str] = Counter()
    seen = 0
    async for run in _inspect.iter_runs(store, base, limit=COUNT_LIMIT + 1):
        seen += 1
        if seen > COUNT_LIMIT:
            break
        counts[str(run.status)] += 1
    return {
        "counts": {str(s): counts.get(str(s), 0) for s in RunStatus},
        "total": min(seen, COUNT_LIMIT),
        "counts_capped": seen > COUNT_LIMIT,
    }


async def family_tree(store: Store, run_id: str) -> dict[str, Any]:
    """The tree of parent and child runs that ``run_id`` belongs to, from its root run down.

    Child runs have ids ``<parent>/<key>``, so a subtree is a prefix listing; each node gives its
    summary and its ``children``."""
    run = await store.get_run(run_id)
    if run is None:
        raise UnknownRunError(f"no run {run_id!r} in {store!r}", run_id=run_id)
    root, seen = run, {run.run_id}
    while root.parent_run_id is not None and root.parent_run_id not in seen:
        parent = await store.get_run(root.parent_run_id)
        if parent is None:
            break
        seen.add(parent.run_id)
        root = parent
    family = [root]
    async for member in _inspect.iter_runs(
        store, RunQuery(id_prefix=root.run_id + "/"), limit=TREE_LIMIT + 1
    ):
        family.append(member)
    capped = len(family) > TREE_LIMIT + 1
    family = family[: TREE_LIMIT + 1]
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for summary in await _inspect.summarize(store, family):
        node = {**summary.to_json(), "children": []}
        nodes[summary.run_id] = node
    for member in sorted(family, key=lambda r: (r.created_at, r.run_id)):
        if member.run_id != root.run_id:
            by_parent.setdefault(member.parent_run_id, []).append(nodes[member.run_id])
    for parent_id, kids in by_parent.items():
        if parent_id in nodes:
            nodes[parent_id]["children"] = kids
    return {"root": nodes[root.run_id], "run_id": run_id, "tree_capped": capped}
