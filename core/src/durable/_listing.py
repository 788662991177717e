"""Reading runs page by page through any store: ``iter_runs`` (keyset paging, or offset paging
for a store that ignores ``RunQuery.after``) and ``list_reported`` (statuses as reported)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from durable._lifecycle import reported, stored_statuses
from durable._records import RunQuery, RunRecord, RunStatus, listed_after
from durable.store import Store

__all__ = ["PAGE_SIZE", "iter_runs", "list_reported"]

PAGE_SIZE = 500


async def iter_runs(
    store: Store,
    query: RunQuery,
    *,
    limit: int | None = None,
    on_page: Callable[[int], None] | None = None,
) -> AsyncIterator[RunRecord]:
    """Runs matching ``query`` as users see them (``_lifecycle.reported``: ``interrupted`` where
    the executor is gone, and so filtered), newest first; ``query``'s own ``limit`` and
    ``offset`` are ignored in favour of ``limit`` and paging. ``on_page`` receives the running
    count of stored runs read after each page.

    Pages are read by keyset (``RunQuery.after``), so each costs the same however deep it is; a
    store written before ``after`` existed ignores it, which the first such page shows, and is
    then paged by offset.
    """
    wanted = query.statuses
    # A corrupt record's stored status is anything at all: finding those reads every run.
    stored = None if wanted is None or RunStatus.CORRUPT in wanted else stored_statuses(wanted)
    exact = _reads_exactly(wanted)
    seen = yielded = 0
    offset = query.offset
    after = query.after  # a caller's cursor: start after that run
    by_keyset = True
    now = time.time()
    while limit is None or yielded < limit:
        size = PAGE_SIZE if limit is None or not exact else min(PAGE_SIZE, limit - yielded)
        page_query = replace(query, statuses=stored, limit=size, offset=offset, after=after)
        page = await store.list_runs(page_query)
        if after is not None and page and not listed_after(page[0], after):
            by_keyset, offset, after = False, query.offset + seen, None  # the store ignores `after`
            page = await store.list_runs(replace(page_query, after=None, offset=offset))
        for run in page:
            if not by_keyset and query.after is not None and not listed_after(run, query.after):
                continue  # a store that ignores `after`: the caller's cursor, applied here
            run = reported(run, now)
            if wanted is None or run.status in wanted:
                yield run
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
        seen += len(page)
        if by_keyset and page and page[-1].status is RunStatus.CORRUPT:
            # Its stored creation time may be unreadable, so it cannot mark the page's end.
            by_keyset, offset, after = False, query.offset + seen, None
        elif by_keyset and page:
            offset, after = 0, (page[-1].created_at, page[-1].run_id)
        elif not by_keyset:
            offset += len(page)
        if on_page is not None:
            on_page(seen)
        if len(page) < size:
            return


_REPORTED_AS = frozenset({RunStatus.RUNNING, RunStatus.WAITING, RunStatus.INTERRUPTED})


def _reads_exactly(wanted: frozenset[RunStatus] | None) -> bool:
    """Whether every stored run matching the stored-status filter is wanted as reported: only a
    filter naming some but not all of running, waiting and interrupted (or naming corrupt) drops
    rows after reading."""
    if wanted is not None and RunStatus.CORRUPT in wanted:
        return False
    return wanted is None or not wanted & _REPORTED_AS or wanted >= _REPORTED_AS


async def list_reported(store: Store, query: RunQuery) -> list[RunRecord]:
    """``store.list_runs(query)`` with statuses as users see them (``iter_runs``)."""
    if _reads_exactly(query.statuses):
        stored = None if query.statuses is None else stored_statuses(query.statuses)
        now = time.time()
        return [reported(run, now) for run in await store.list_runs(replace(query, statuses=stored))]
    found: list[RunRecord] = []
    skip = query.offset
    async for run in iter_runs(store, replace(query, offset=0)):
        if skip:
            skip -= 1
            continue
        found.append(run)
        if len(found) >= query.limit:
            break
    return found
