"""Named queues (``Capability.QUEUES``, docs/QUEUES.md) of ``RedisStore``: a base class of it.

Each operation that checks and writes is one script (``_queue_scripts``): an enqueue (with its
debounce), a claim with its queue's limits counted inside it (live leases from the queue's
``:running`` set, first claims from ``:starts``, both on the server's ``TIME``). A queued run's
entry is fields of its run hash, so it is deleted and expires with the run; the queue's own keys
(``_keys.QueueKeys``) share one hash tag. Waiting claimers are woken through the store's pub/sub
channel, which the scripts that free a slot, wake a run or enqueue one publish ``[queue]`` on.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from durable.errors import StoreError
from durable.store import DEFAULT_QUEUE, Enqueued, Lease, QueuedRun, QueueLimits, QueueStats, RunRecord
from durable_redis import _keys as k
from durable_redis._calls import Call

if TYPE_CHECKING:
    from durable_redis._notify import Notifier


class QueueMethods:
    """``enqueue_run``, ``claim_queued``, ``get_queued``, ``queue_stats``, ``list_queues`` and
    ``wait_for_queues`` of ``RedisStore`` (a base class of it, before ``Store``)."""

    keys: k.KeySpace
    clock: Callable[[], float]
    poll_interval: float
    _marker: str | None
    _notifier: Notifier | None

    if TYPE_CHECKING:

        @property
        def client(self) -> Any: ...

        async def _script(self, call: Call, run_id: str, field: str = "run") -> Any: ...
        async def _run(self, call: Call) -> Any: ...
        async def _run_together(self, *calls: Call) -> list[Any]: ...
        def _markers(self) -> list[Call]: ...
        def _record(self, run_id: str, fields: dict[str, str]) -> RunRecord: ...
        def unreadable_run(self, run_id: str, error: Exception) -> RunRecord: ...

    async def enqueue_run(self, run: RunRecord, entry: QueuedRun) -> tuple[RunRecord, Enqueued]:
        entry = replace(entry, run_id=run.run_id, started_at=None)
        fields = k.run_fields(run)
        fields.update(k.queue_fields(entry))
        queue = self.keys.queue(entry.queue)
        keys = self.keys.changing(run.run_id)
        keys += (self.keys.index, self.keys.ids, self.keys.workflow(run.workflow))
        keys += (queue.members, queue.debounce, self.keys.queues, queue.delays)
        args: list[Any] = [
            run.run_id,
            k.fmt_float(run.created_at),
            entry.queue,
            str(int(entry.priority)),
            k.queue_order(entry.enqueued_at),
            "0" if entry.debounce_key is None else "1",
            entry.debounce_key or "",
            "0" if entry.partition_key is None else "1",
            entry.partition_key or "",
            k.fmt_float(entry.not_before),
            k.fmt_float(entry.enqueued_at),
            run.workflow,
            run.inputs,
            run.inputs_digest,
            k.fmt_float(run.updated_at),
        ]
        for field, value in fields.items():
            args += [field, value]
        call = Call(
            f"enqueueing run {run.run_id!r} on queue {entry.queue!r}", keys, args, script="enqueue_run"
        )
        if self._marker is None:  # the prefix was emptied by drop_all: its markers come back with it
            reply = (await self._run_together(call, *self._markers()))[0]
            self._marker = await self._run(Call.plain("reading the marker", "GET", self.keys.alive))
        else:
            reply = await self._script(call, run.run_id)
        if reply == -1:  # the run's key holds another type than a hash
            from redis import exceptions as rx

            return self.unreadable_run(run.run_id, rx.ResponseError("WRONGTYPE")), Enqueued.EXISTS
        if reply[0] == 1:
            return run, Enqueued.CREATED
        stored_fields = k.pairs(reply[1])
        stored = self._record(stored_fields.get("run_id", run.run_id), stored_fields)
        if reply[0] == 2:
            return stored, Enqueued.REPLACED
        # This very call, sent again after its reply was lost, finds its own record.
        if call.retried and stored == run:
            return stored, Enqueued.CREATED
        return stored, Enqueued.EXISTS

    async def claim_queued(
        self,
        queue: str,
        now: float,
        owner: str,
        lease_seconds: float,
        limits: QueueLimits,
        *,
        limit: int = 1,
        workflows: Collection[str] | None = None,
    ) -> list[tuple[RunRecord, Lease]]:
        if limit <= 0 or (workflows is not None and not workflows):
            return []
        keys = [*self.keys.queue(queue).all, *self.keys.changing("")[4:11]]
        rate = limits.rate_limit
        args: list[Any] = [
            k.fmt_float(now),
            owner,
            k.fmt_float(lease_seconds),
            int(limit),
            "" if limits.concurrency is None else int(limits.concurrency),
            "" if limits.partition_concurrency is None else int(limits.partition_concurrency),
            "" if rate is None else int(rate[0]),
            "" if rate is None else k.fmt_float(rate[1]),
            secrets.token_hex(8),  # tells this very call, sent again after its reply was lost
            *sorted(workflows or ()),
        ]
        reply = await self._run(Call(f"claiming from queue {queue!r}", keys, args, script="claim_queued"))
        self._looked_at(queue, now)  # a delayed run due since is one this claim skipped
        claimed: list[tuple[RunRecord, Lease]] = []
        for run_id, flat in zip(reply[::2], reply[1::2], strict=True):
            run = self._record(run_id, k.pairs(flat))
            assert run.lease_expires_at is not None
            claimed.append((run, Lease(run_id, owner, run.lease_token, run.lease_expires_at)))
        return claimed

    async def get_queued(self, run_id: str) -> QueuedRun | None:
        key = self.keys.run_keys(run_id)[0]
        what = f"reading the queue entry of run {run_id!r}"
        values = await self._script(Call.plain(what, "HMGET", key, *k.QUEUE_FIELDS), run_id)
        fields = {
            name: value for name, value in zip(k.QUEUE_FIELDS, values, strict=True) if value is not None
        }
        return k.queued_from(run_id, fields)

    async def queue_stats(self, queue: str, now: float, *, window: float | None = None) -> QueueStats:
        keys = self.keys.queue(queue)
        args = [k.fmt_float(now), "" if window is None else k.fmt_float(window), self.keys.prefix]
        call = Call(
            f"counting queue {queue!r}", [keys.members, keys.running, keys.starts], args, script="queue_stats"
        )
        queued, delayed, running, started = await self._run(call)
        return QueueStats(
            queue,
            queued=int(queued),
            delayed=int(delayed),
            running=int(running),
            started_in_window=None if window is None else int(started),
        )

    async def list_queues(self) -> list[str]:
        what = "listing queues"
        names: list[str] = sorted(await self._run(Call.plain(what, "SMEMBERS", self.keys.queues)))
        if not names:
            return []
        sizes: Sequence[Any] = await self._run_together(
            *(Call.plain(what, "ZCARD", self.keys.queue(name).members) for name in names)
        )
        return [name for name, size in zip(names, sizes, strict=True) if int(size) > 0]

    async def wait_for_queues(self, queues: Collection[str], timeout: float) -> None:
        """Return when a run of one of ``queues`` may have become claimable (a script published
        it, from any process, or this process woke it), when the earliest ``not_before`` of their
        delayed runs passes (each queue's ``:delays``, read first), or after ``timeout`` seconds;
        while the subscription is down, after ``poll_interval`` at most.

        ``DEFAULT_QUEUE`` (``create_run`` of a pending run publishes it) alone is waited on in this
        process only (``Store.wait_for_queues``, which this process's ``create_run`` wakes): an
        idle worker of unqueued workflows opens no subscription and sends nothing but its polls
        (issue 16's bound), and a start in another process reaches it at its next poll. A worker
        that also serves a declared queue hears every process's starts."""
        self.client  # noqa: B018 - raises a clear error when the store is not open
        if all(queue == DEFAULT_QUEUE for queue in queues):
            await super().wait_for_queues(queues, timeout)  # type: ignore[misc]
            return
        notifier = self._notifier
        assert notifier is not None
        try:
            ahead = await self._next_not_before(queues)
        except (StoreError, RedisError):  # an outage, a key of another type: the wait is the poll's
            ahead = None  # (a raise would end the wait at once, and its worker would spin)
        if ahead is not None:
            timeout = min(timeout, max(0.0, ahead - self.clock()))
        event = asyncio.Event()
        registry: dict[str, set[asyncio.Event]] = self.__dict__.setdefault("_queue_waiters", {})
        for queue in queues:
            registry.setdefault(queue, set()).add(event)
        try:
            await notifier.register_queues(queues, event)
            pause = timeout if notifier.healthy else min(timeout, self.poll_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), pause)
        finally:
            notifier.unregister_queues(queues, event)
            for queue in queues:
                waiters = registry.get(queue)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        registry.pop(queue, None)

    async def _next_not_before(self, queues: Collection[str]) -> float | None:
        """The earliest ``not_before`` (on the callers' clock) of a run of ``queues`` not claimed
        yet that came after this process last looked at the queue's delays, from each queue's
        ``:delays`` (one round trip), or ``None``.

        Counted from the ``now`` of the queue's last claim or of the last such read, not from
        this read's time: a run that became due after a claim skipped it is due at once (the
        caller returns and claims it), and once; one a claim passed over for a limit, or that a
        claimer at its capacity did not try to claim, does not make it spin."""
        looked: dict[str, float] = self.__dict__.get("_delays_looked_at", {})
        now = self.clock()
        wanted = [queue for queue in queues if queue != DEFAULT_QUEUE]
        calls = [
            Call.plain(
                "reading the next delayed run",
                "ZRANGE",
                self.keys.queue(queue).delays,
                "(" + k.fmt_float(looked.get(queue, now)),
                "+inf",
                "BYSCORE",
                "LIMIT",
                0,
                1,
                "WITHSCORES",
            )
            for queue in wanted
        ]
        replies = await self._run_together(*calls)
        for queue in wanted:
            self._looked_at(queue, now)
        # Each reply is [[member, score]] (redis-py reads WITHSCORES as pairs), or [] for none.
        scores = [float(reply[0][1]) for reply in replies if reply]
        return min(scores, default=None)

    def _looked_at(self, queue: str, now: float) -> None:
        """Delayed runs of ``queue`` due by ``now`` (the callers' clock) were seen by this process."""
        looked: dict[str, float] = self.__dict__.setdefault("_delays_looked_at", {})
        looked[queue] = max(now, looked.get(queue, now))
