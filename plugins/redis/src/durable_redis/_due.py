"""``due_runs`` of ``RedisStore`` (a base class of it): a worker's poll of the index of live runs,
which repairs the entries it finds wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from durable._lifecycle import is_due
from durable.batching import WriteBatcher
from durable.store import RunRecord, RunStatus
from durable_redis import _keys as k
from durable_redis import _listing
from durable_redis._calls import Call, wrong_type

_SWEEP = 100
"""Most expired runs whose index entries one poll removes."""


class DueMethods:
    """``due_runs`` of ``RedisStore`` (a base class of it, before ``Store``)."""

    keys: k.KeySpace
    clock: Callable[[], float]
    _marker: str | None

    if TYPE_CHECKING:

        async def _run(self, call: Call) -> Any: ...
        async def _run_together(self, *calls: Call) -> list[Any]: ...
        def _open_batcher(self) -> WriteBatcher[Call, Any]: ...
        async def _noticed_loss(self, found: str | None) -> None: ...
        def _record(self, run_id: str, fields: dict[str, str]) -> RunRecord: ...
        def unreadable_run(self, run_id: str, error: Exception) -> RunRecord: ...
        def prune_call(
            self, run_id: str, source: _listing.Source | None = None, member: str = ""
        ) -> Call: ...
        def index_call(
            self, run_id: str, workflow: str | None, source: _listing.Source | None = None
        ) -> Call: ...
        def _workflow_source(self, workflow: str) -> _listing.Source: ...

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        """Runs due at ``now`` (``durable._lifecycle.is_due``), oldest created first, at most ``limit``,
        of ``workflows`` only if given (the live index does not know workflows: runs of others are
        read and skipped, so they cost a read each but never crowd the asked-for ones out).

        Read from the index of live runs, whose entries are scored by the time each run becomes
        due (``_scripts``): the entries scored up to ``now``, then only the runs they name, so a
        poll costs the same however many runs are parked or finished. When more are due than
        ``limit``, the run index's scores (``created_at``) choose the oldest before any is read. A
        record that cannot be read (corrupt) is not returned: its entry stays, so a record an
        operator repairs is due again at once.

        One clock: ``now`` is read as a time on this process's ``clock`` and judged on the
        server's, ``now - clock()`` seconds after the server's ``TIME`` (a worker passes its
        ``time.time()``: the server's now), so a worker whose clock is off resumes a run exactly
        when the server's clock says its lease expired. The same script reads ``<prefix>:alive``:
        a poll notices (and logs) a loss of the server's data. It also returns the runs whose
        keys expired (``<prefix>:expiring``): the poll removes their index entries.
        """
        if limit <= 0:
            return []
        what = "listing due runs"
        offset = k.fmt_float(now - self.clock())
        keys = [self.keys.live, self.keys.alive, self.keys.expiring]
        judged, marker, due_ids, expired = await self._run(
            Call(what, keys, [offset, _SWEEP], script="due_runs")
        )
        now = float(judged)
        if self._marker is not None and marker != self._marker:
            await self._noticed_loss(marker)
        if len(due_ids) > limit:
            created = await self._run(Call.plain(what, "ZMSCORE", self.keys.index, *due_ids))
            # A run whose run-index entry is missing still counts, read among the first.
            order = sorted(zip((0.0 if c is None else float(c) for c in created), due_ids, strict=True))
            due_ids = [run_id for _, run_id in order]
        found: list[RunRecord] = []
        repairs = [self._expired_call(member) for member in expired]
        start = 0
        while start < len(due_ids) and len(found) < limit:
            ids = due_ids[start : start + limit - len(found)]
            start += len(ids)
            calls = [Call.plain(what, "HGETALL", self.keys.run_keys(run_id)[0]) for run_id in ids]
            for run_id, fields in zip(ids, await self._open_batcher().submit_all(calls), strict=True):
                if isinstance(fields, BaseException):
                    if not (isinstance(fields, Exception) and wrong_type(fields)):
                        raise fields
                    self.unreadable_run(run_id, fields)  # reported once; never returned
                    continue
                if not fields:
                    repairs.append(self.prune_call(run_id))
                    continue
                run = self._record(run_id, fields)
                if run.status is RunStatus.CORRUPT:
                    continue
                if not is_due(run, now) or "queue" in fields:  # an entry that disagrees with its run
                    repairs.append(self.index_call(run_id, run.workflow))  # (queue claims serve a queued run)
                elif workflows is None or run.workflow in workflows:
                    found.append(run)
        if repairs:
            await self._run_together(*repairs)
        found.sort(key=lambda run: (run.created_at, run.run_id))
        return found

    def _expired_call(self, member: str) -> Call:
        """The prune of a run whose keys expired, from its expiry schedule ``member``
        (``<byte length of id>:<id><workflow>``)."""
        raw = member.encode()
        length, _, rest = raw.partition(b":")
        size = int(length)
        run_id, workflow = rest[:size].decode(), rest[size:].decode()
        return self.prune_call(run_id, self._workflow_source(workflow), member)
