"""``list_runs`` through the indexes: the one that narrows a query most, read a page at a time.

Each index scored by ``created_at`` (every run, a status's, a workflow's) is walked newest first
(``_Cursor``): its entries are read in pages of run ids and scores, and only the runs they name
are read. A query of several statuses merges their indexes' walks into one listing order
(``created_at`` descending, then ``run_id`` ascending). ``RunQuery.after`` starts each walk at the
cursor's score (the runs created at that very instant with a greater id first): a page costs the
same however deep it is. An ``id_prefix`` is looked up in the index of ids (``ZRANGE BYLEX``)
when that finds fewer runs than the walk would read: a run's children (``<id>/...``) cost what
the family holds, not what the store holds.

Round trips of a page: one for the index entries and one for the runs they name (more only when
the filters drop runs, or the page ends inside a group of runs created at one instant); a query
that names both statuses and a workflow, or an id prefix, first counts its candidates (one more).

Every run read is built by ``durable._decode.run_from_text``: a damaged record is listed as a
corrupt run (and so matched only by a listing without a status filter), never raised. An entry
whose run is gone (its keys expired, or it was deleted) is removed from the indexes; one that
disagrees with its run (a hand-edited record) is recomputed from the run (``index_run``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from durable._decode import run_from_text
from durable.store import RunQuery, RunRecord, RunStatus
from durable_redis import _keys as k

if TYPE_CHECKING:
    from durable_redis._store import RedisStore

PAGE = 500
"""Most index entries (and runs) read in one round trip."""
LEX_DIRECT = 1000
"""Ids read with the planning round trip of an ``id_prefix`` listing: a family this small is
listed without another look at the index of ids."""

_STORED = frozenset(k.STATUSES)

Fields = dict[str, str] | Exception
"""A run's hash as read: its fields (empty for a run that is gone), or the error reply of a key
that holds another type."""


@dataclass(frozen=True)
class Source:
    """An index scored by ``created_at``: every run's, or the runs of one status or workflow."""

    key: str
    status: str | None = None
    workflow: str | None = None


@dataclass
class _Cursor:
    """A walk of one ``Source`` in listing order, between the query's bounds."""

    source: Source
    high: str
    low: str
    group: str | None = None
    """The score of ``RunQuery.after``: its runs with a greater id are read first."""
    after_id: str = ""
    buffer: list[tuple[float, str]] = field(default_factory=list)
    """Entries read and not yet taken, as ``(-created_at, run_id)``, in listing order from ``pos``."""
    pos: int = 0
    done: bool = False
    whole_group: str | None = None
    """A score whose entries fill a whole page: read them all, alone."""

    def wants(self, size: int) -> bool:
        return not self.done and len(self.buffer) - self.pos < size

    def commands(self, size: int) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        """The ``zrange`` calls of the next read (``(method, args, kwargs)``)."""
        key = self.source.key
        group = {"byscore": True, "withscores": True}
        if self.whole_group is not None:
            return [("zrange", (key, self.whole_group, self.whole_group), group)]
        calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        if self.group is not None:
            calls.append(("zrange", (key, self.group, self.group), group))
        page = {"byscore": True, "desc": True, "withscores": True, "offset": 0, "num": size + 1}
        calls.append(("zrange", (key, self.high, self.low), page))
        return calls

    def take(self, size: int, replies: list[list[tuple[str, float]]]) -> None:
        """Add what ``commands(size)`` read to the buffer."""
        if self.pos:
            del self.buffer[: self.pos]
            self.pos = 0
        if self.whole_group is not None:
            self.buffer += sorted((-score, member) for member, score in replies[0])
            self.high, self.whole_group = "(" + self.whole_group, None
            return
        if self.group is not None:
            after = self.after_id
            self.buffer += sorted((-score, member) for member, score in replies[0] if member > after)
            self.group = None
            replies = replies[1:]
        page = replies[0]
        if len(page) <= size:
            self.done = True
            self.buffer += sorted((-score, member) for member, score in page)
            return
        edge = page[size - 1][1]
        if page[size][1] == edge:
            # The page ends inside a group of runs created at one instant, which are listed by id:
            # leave the group for the next read, from its score.
            kept = [(member, score) for member, score in page[:size] if score != edge]
            if kept:
                self.high = k.fmt_float(edge)
            else:
                self.whole_group = k.fmt_float(edge)
            page = kept
        else:
            page = page[:size]
            self.high = "(" + k.fmt_float(edge)
        self.buffer += sorted((-score, member) for member, score in page)


def sources(keys: k.KeySpace, query: RunQuery) -> tuple[list[list[Source]], bool]:
    """The candidate walks of ``query`` (each a list of indexes merged), and whether it can match
    nothing at all."""
    candidates: list[list[Source]] = []
    statuses = query.statuses
    if statuses is not None and RunStatus.CORRUPT not in statuses:
        stored = sorted(s.value for s in statuses if s in _STORED)
        if not stored:
            return [], True  # only statuses never stored (interrupted): nothing matches
        candidates.append([Source(keys.status(s), status=s) for s in stored])
    if query.workflow is not None:
        candidates.append([Source(keys.workflow(query.workflow), workflow=query.workflow)])
    if not candidates:
        candidates.append([Source(keys.index)])
    return candidates, False


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """The ``BYLEX`` range of the ids starting with ``prefix`` (no UTF-8 text holds byte 0xFF)."""
    raw = prefix.encode()
    return b"[" + raw, b"(" + raw + b"\xff"


async def list_runs(store: RedisStore, query: RunQuery) -> list[RunRecord]:
    if query.limit <= 0:
        return []
    candidates, nothing = sources(store.keys, query)
    if nothing:
        return []
    lister = _Lister(store, query)
    prefix = query.id_prefix or None
    if prefix is None and len(candidates) == 1:
        return await lister.walk(candidates[0])
    # Count what each candidate would walk (and, for an id prefix, what the index of ids holds),
    # then take the cheapest.
    async with store.client.pipeline(transaction=False) as pipe:
        for candidate in candidates:
            for source in candidate:
                pipe.zcard(source.key)
        if prefix is not None:
            low, high = prefix_range(prefix)
            pipe.zlexcount(store.keys.ids, low, high)
            pipe.zrange(store.keys.ids, low, high, bylex=True, offset=0, num=LEX_DIRECT)
        replies: list[Any] = await pipe.execute()
    sizes: list[int] = []
    at = 0
    for candidate in candidates:
        sizes.append(sum(replies[at : at + len(candidate)]))
        at += len(candidate)
    best = min(range(len(candidates)), key=sizes.__getitem__)
    if prefix is not None:
        count, first_ids = int(replies[at]), replies[at + 1]
        if count == 0:
            return []
        wanted = query.offset + query.limit
        walked = wanted * sizes[best] / count  # runs a walk reads to find that many, evenly spread
        if count <= LEX_DIRECT or count <= walked:
            return await lister.by_ids(first_ids, count, prefix)
    return await lister.walk(candidates[best])


class _Lister:
    """One ``list_runs`` call: the runs found, and the index entries to repair afterwards."""

    def __init__(self, store: RedisStore, query: RunQuery) -> None:
        self.store = store
        self.query = query
        self.wanted = query.offset + query.limit
        self.found: list[RunRecord] = []
        self.seen: set[str] = set()
        self.gone: list[tuple[str, Source | None]] = []
        self.stale: list[tuple[str, str, Source | None]] = []

    async def walk(self, walked: Sequence[Source]) -> list[RunRecord]:
        query = self.query
        high, low = "+inf", "-inf"
        if query.created_before is not None:
            high = "(" + k.fmt_float(query.created_before)
        if query.created_after is not None:
            low = k.fmt_float(query.created_after)
        group, after_id = None, ""
        if query.after is not None:
            at, after_id = query.after
            if query.created_before is None or at < query.created_before:
                high = "(" + k.fmt_float(at)
                if query.created_after is None or at >= query.created_after:
                    group = k.fmt_float(at)
        cursors = [_Cursor(source, high, low, group, after_id) for source in walked]
        size = min(self.wanted, PAGE)
        while len(self.found) < self.wanted:
            await self._fill([c for c in cursors if c.wants(size)], size)
            batch = _merged(cursors, size, self.seen)
            if batch is None:
                break
            if batch:
                await self._read(batch)
            size = min(size * 4, PAGE)  # filtered out: read further a larger page at a time
        await self._repair()
        return self.found[query.offset : self.wanted]

    async def _fill(self, cursors: list[_Cursor], size: int) -> None:
        while cursors:
            async with self.store.client.pipeline(transaction=False) as pipe:
                plan = [cursor.commands(size) for cursor in cursors]
                for calls in plan:
                    for method, args, kwargs in calls:
                        getattr(pipe, method)(*args, **kwargs)
                replies: list[Any] = await pipe.execute()
            at = 0
            for cursor, calls in zip(cursors, plan, strict=True):
                cursor.take(size, replies[at : at + len(calls)])
                at += len(calls)
            # A page that was one group of runs created at one instant: read the whole group.
            cursors = [cursor for cursor in cursors if cursor.whole_group is not None]

    async def by_ids(self, first_ids: list[str], count: int, prefix: str) -> list[RunRecord]:
        """The listing from the ids starting with ``prefix`` (``count`` of them, the first
        ``first_ids`` already read), ordered by the run index's scores."""
        store, query = self.store, self.query
        run_ids = list(first_ids)
        low, high = prefix_range(prefix)
        while len(run_ids) < count:
            rest = max(PAGE, count - len(run_ids))
            more: list[str] = await store.client.zrange(  # type: ignore[assignment]
                store.keys.ids, low, high, bylex=True, offset=len(run_ids), num=rest
            )
            if not more:
                break
            run_ids += more
        created: list[float | None] = await store.client.zmscore(store.keys.index, run_ids)  # type: ignore[assignment]
        entries: list[tuple[float, str]] = []
        for run_id, score in zip(run_ids, created, strict=True):
            if score is None:  # a run that is gone, or was never listed: pruned if gone
                self.gone.append((run_id, None))
                continue
            if query.created_after is not None and score < query.created_after:
                continue
            if query.created_before is not None and score >= query.created_before:
                continue
            if query.after is not None:
                at, after_id = query.after
                if score > at or (score == at and run_id <= after_id):
                    continue
            entries.append((-score, run_id))
        entries.sort()
        start, size = 0, min(self.wanted, PAGE)
        while start < len(entries) and len(self.found) < self.wanted:
            batch: list[tuple[tuple[float, str], _Cursor | None]] = [
                (entry, None) for entry in entries[start : start + size]
            ]
            start += size
            await self._read(batch)
            size = min(size * 4, PAGE)
        await self._repair()
        return self.found[query.offset : self.wanted]

    async def _read(self, batch: list[tuple[tuple[float, str], _Cursor | None]]) -> None:
        """Read the runs of ``batch``'s entries, and keep those the query matches."""
        store, query = self.store, self.query
        run_ids = [run_id for (_, run_id), _ in batch]
        for ((_, run_id), cursor), fields in zip(batch, await store.read_runs(run_ids), strict=True):
            source = None if cursor is None else cursor.source
            if isinstance(fields, Exception):
                run = store.unreadable_run(run_id, fields)
            elif not fields:
                self.gone.append((run_id, source))
                continue
            else:
                if source is not None and (
                    (source.status is not None and fields.get("status") != source.status)
                    or (source.workflow is not None and fields.get("workflow") != source.workflow)
                ):
                    self.stale.append((run_id, fields.get("workflow", ""), source))
                run = run_from_text(store.label, fields, run_id)
            if query.matches(run):
                self.found.append(run)

    async def _repair(self) -> None:
        calls = [self.store.prune_call(run_id, source) for run_id, source in self.gone]
        calls += [self.store.index_call(run_id, workflow, source) for run_id, workflow, source in self.stale]
        if calls:
            await self.store.run_together(calls)


def _merged(
    cursors: list[_Cursor], size: int, seen: set[str]
) -> list[tuple[tuple[float, str], _Cursor | None]] | None:
    """Up to ``size`` entries taken from the cursors' buffers in listing order (each run once),
    stopping where a walk must read further first; ``None`` when every walk is over."""
    out: list[tuple[tuple[float, str], _Cursor | None]] = []
    while len(out) < size:
        best: _Cursor | None = None
        for cursor in cursors:
            if cursor.pos < len(cursor.buffer):
                if best is None or cursor.buffer[cursor.pos] < best.buffer[best.pos]:
                    best = cursor
            elif not cursor.done:
                return out
        if best is None:
            return out or None
        entry = best.buffer[best.pos]
        best.pos += 1
        if entry[1] not in seen:
            seen.add(entry[1])
            out.append((entry, best))
    return out
