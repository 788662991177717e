"""The memory store's indexes: every bounded read costs the same however many runs it holds.

Listings read runs in listing order (``created_at`` descending, ``run_id`` ascending) from the
narrowest index that answers the query: one workflow's runs, the runs in some statuses, the
ids with a prefix (a run's children), or all runs. Polls read the active runs and, of the
parked ones, only those whose wake time has come.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator

from durable._records import RunQuery, RunRecord, RunStatus, listed_after

__all__ = ["ParkedRuns", "RunIndexes"]

_Key = tuple[float, "_Descending"]


class _Descending(str):
    """A run id that sorts backwards, so that ``(created_at, _Descending(run_id))`` ascending is
    the listing order read from the end."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)


class _ListingOrder:
    """Some runs' places in listing order, kept so that adding the newest run (appended at the
    end) and reading a page cost the same however many runs precede it.

    A removed run's key stays in the list until more than half of it is dead (then it is rebuilt
    once), so that removing the oldest runs one by one does not move the whole list each time.
    """

    def __init__(self) -> None:
        self._keys: list[_Key] = []
        self._live: dict[str, _Key] = {}
        """Each member's key: a key of a removed run is not this very object."""

    def __len__(self) -> int:
        return len(self._live)

    def add(self, run: RunRecord) -> None:
        key = (run.created_at, _Descending(run.run_id))
        self._live[run.run_id] = key
        if not self._keys or self._keys[-1] < key:
            self._keys.append(key)
        else:
            bisect.insort(self._keys, key)

    def discard(self, run_id: str) -> None:
        if self._live.pop(run_id, None) is not None and len(self._live) * 2 < len(self._keys):
            self._keys = [key for key in self._keys if self._live.get(key[1]) is key]

    def listed(self, after: tuple[float, str] | None) -> Iterator[tuple[_Key, str]]:
        """``(key, run id)`` of the members in listing order, from just after ``after``."""
        keys, live = self._keys, self._live
        end = len(keys) if after is None else bisect.bisect_left(keys, (after[0], _Descending(after[1])))
        for index in range(end - 1, -1, -1):
            key = keys[index]
            if live.get(key[1]) is key:
                yield key, key[1]


class _SortedIds:
    """Run ids in order, in blocks of at most ``_BLOCK``, so that adding one moves one block, not
    every id; a prefix is found by bisecting the blocks' first ids."""

    _BLOCK = 512

    def __init__(self) -> None:
        self._blocks: list[list[str]] = []
        self._firsts: list[str] = []

    def add(self, run_id: str) -> None:
        if not self._blocks:
            self._blocks, self._firsts = [[run_id]], [run_id]
            return
        at = max(0, bisect.bisect_right(self._firsts, run_id) - 1)
        block = self._blocks[at]
        bisect.insort(block, run_id)
        self._firsts[at] = block[0]
        if len(block) > self._BLOCK:
            half = len(block) // 2
            self._blocks[at : at + 1] = [block[:half], block[half:]]
            self._firsts[at : at + 1] = [block[0], block[half]]

    def discard(self, run_id: str) -> None:
        at = bisect.bisect_right(self._firsts, run_id) - 1
        if at < 0:
            return
        block = self._blocks[at]
        index = bisect.bisect_left(block, run_id)
        if index < len(block) and block[index] == run_id:
            del block[index]
            if block:
                self._firsts[at] = block[0]
            else:
                del self._blocks[at], self._firsts[at]

    def with_prefix(self, prefix: str) -> Iterator[str]:
        at = max(0, bisect.bisect_right(self._firsts, prefix) - 1)
        for block in self._blocks[at:]:
            for run_id in block[bisect.bisect_left(block, prefix) :]:
                if not run_id.startswith(prefix):
                    return
                yield run_id


class RunIndexes:
    """Every run in listing order, and per workflow, per status and by id."""

    def __init__(self) -> None:
        self._all = _ListingOrder()
        self._by_workflow: dict[str, _ListingOrder] = {}
        self._by_status: dict[RunStatus, _ListingOrder] = {}
        self._ids = _SortedIds()

    def added(self, run: RunRecord) -> None:
        self._all.add(run)
        self._by_workflow.setdefault(run.workflow, _ListingOrder()).add(run)
        self._by_status.setdefault(run.status, _ListingOrder()).add(run)
        self._ids.add(run.run_id)

    def changed(self, previous: RunRecord, run: RunRecord) -> None:
        if previous.status is not run.status:
            self._by_status[previous.status].discard(run.run_id)
            self._by_status.setdefault(run.status, _ListingOrder()).add(run)

    def removed(self, run: RunRecord) -> None:
        self._all.discard(run.run_id)
        self._by_workflow[run.workflow].discard(run.run_id)
        self._by_status[run.status].discard(run.run_id)
        self._ids.discard(run.run_id)

    def candidates(self, query: RunQuery, runs: dict[str, RunRecord]) -> Iterator[RunRecord]:
        """Runs in listing order after ``query.after``, a superset of those ``query`` matches, from
        the narrowest index that answers it."""
        after = query.after
        if query.id_prefix is not None:
            found = sorted(
                (runs[run_id] for run_id in self._ids.with_prefix(query.id_prefix)),
                key=lambda run: (-run.created_at, run.run_id),
            )
            yield from (run for run in found if after is None or listed_after(run, after))
            return
        if query.workflow is not None:
            order = self._by_workflow.get(query.workflow)
            yield from () if order is None else (runs[run_id] for _, run_id in order.listed(after))
            return
        if query.statuses is not None:
            orders = [self._by_status[s].listed(after) for s in query.statuses if s in self._by_status]
            # Each yields ascending in (-created_at, run_id) order: merge them by that key.
            merged = heapq.merge(*orders, key=lambda item: (-item[0][0], str(item[1])))
            yield from (runs[run_id] for _, run_id in merged)
            return
        yield from (runs[run_id] for _, run_id in self._all.listed(after))


class ParkedRuns:
    """Parked runs (waiting, with no owner) by wake time, so that a poll reads only those whose
    time has come. Entries are checked against the run when they come due (a run changed since
    it was parked left a stale entry, which is dropped)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []

    def park(self, run: RunRecord) -> None:
        assert run.wake_at is not None
        heapq.heappush(self._heap, (run.wake_at, run.run_id))

    def due(self, now: float, runs: dict[str, RunRecord]) -> Iterator[str]:
        """Ids of parked runs whose wake time is at or before ``now`` (each given once)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            wake_at, run_id = heapq.heappop(heap)
            run = runs.get(run_id)
            if run is not None and is_parked(run) and run.wake_at == wake_at:
                yield run_id


def is_parked(run: RunRecord) -> bool:
    return run.status is RunStatus.WAITING and run.owner is None
