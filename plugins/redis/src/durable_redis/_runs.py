"""Runs and their leases (create, read, claim, renew, update, cancel, reset, delete) of
``RedisStore``: a base class of it. Each is one script on the run's keys (``_scripts``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx

from durable.errors import StoreError
from durable.store import DEFAULT_QUEUE, Lease, RunRecord, RunStatus
from durable_redis import _keys as k
from durable_redis._calls import Call

if TYPE_CHECKING:
    from durable_redis import _listing
    from durable_redis._persistence import RedisDataLost


class RunMethods:
    """``create_run``, ``get_run``, ``claim_run``, ``renew_lease``, ``update_run``,
    ``request_cancel``, ``reset_run`` and ``delete_run`` of ``RedisStore`` (a base class of it,
    before ``Store``)."""

    keys: k.KeySpace
    clock: Callable[[], float]
    _marker: str | None

    if TYPE_CHECKING:

        async def _run(self, call: Call) -> Any: ...
        async def _run_together(self, *calls: Call) -> list[Any]: ...
        async def _script(self, call: Call, run_id: str, field: str = "run") -> Any: ...
        async def _lost(self, lease: Lease, current: Any) -> StoreError: ...
        async def _data_lost(self, run_id: str) -> RedisDataLost | None: ...
        def _markers(self) -> list[Call]: ...
        def _ttl_ms(self) -> int: ...
        def _record(self, run_id: str, fields: dict[str, str]) -> RunRecord: ...
        def unreadable_run(self, run_id: str, error: Exception) -> RunRecord: ...
        def prune_call(
            self, run_id: str, source: _listing.Source | None = None, member: str = ""
        ) -> Call: ...
        def _workflow_source(self, workflow: str) -> _listing.Source: ...
        def wake_queue_waiters(self, queue: str | None = None) -> None: ...
        def wake_output_waiters(self, run_id: str) -> None: ...

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        # A run created with a lease (a direct call owns it): how long it lasts by this process's
        # clock, which the script counts from the server's now where the two clocks disagree.
        given = run.lease_expires_at if run.owner is not None else None
        lease = ("", "") if given is None else (k.fmt_float(given - self.clock()), k.fmt_float(given))
        created_at = k.fmt_float(run.created_at)
        args: list[Any] = [self._ttl_ms() if run.status.is_final else 0, *lease, run.run_id, created_at]
        for field, value in k.run_fields(run).items():
            args += [field, value]
        keys = self.keys.changing(run.run_id)
        keys += (self.keys.index, self.keys.ids, self.keys.workflow(run.workflow))
        call = Call(f"creating run {run.run_id!r}", keys, args, script="create_run")
        if self._marker is None:  # the prefix was emptied by drop_all: its markers come back with it
            reply = (await self._run_together(call, *self._markers()))[0]
            self._marker = await self._run(Call.plain("reading the marker", "GET", self.keys.alive))
        else:
            reply = await self._run(call)
        if reply == 1:
            if run.status is RunStatus.PENDING and run.owner is None:
                self.wake_queue_waiters(DEFAULT_QUEUE)  # this process's idle workers (the script publishes)
            return run, True
        if isinstance(reply, str):  # the expiry of the new run's lease, on the server's clock
            return replace(run, lease_expires_at=float(reply)), True
        if reply == -1:  # the run's key holds another type than a hash
            return self.unreadable_run(run.run_id, rx.ResponseError("WRONGTYPE")), False
        stored = self._record(run.run_id, k.pairs(reply))
        # This very call, sent again after its reply was lost, finds its own record (its lease's
        # expiry is the server's).
        created = call.retried and replace(stored, lease_expires_at=run.lease_expires_at) == run
        return stored, created

    async def get_run(self, run_id: str) -> RunRecord | None:
        key = self.keys.run_keys(run_id)[0]
        try:
            fields = await self._run(Call.plain(f"reading run {run_id!r}", "HGETALL", key))
        except rx.ResponseError as exc:
            return self.unreadable_run(run_id, exc)
        if fields:
            return self._record(run_id, fields)
        lost = await self._data_lost(run_id)
        if lost is not None:
            raise lost
        return None

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        # The server's clock judges the lease and sets the expiry; the nonce tells a retry of this
        # very call (see the script).
        args = [owner, k.fmt_float(lease_seconds), secrets.token_hex(8)]
        call = Call(f"claiming run {run_id!r}", self.keys.changing(run_id), args, script="claim_run")
        reply = await self._script(call, run_id)
        return None if reply is None else Lease(run_id, owner, int(reply[0]), float(reply[1]))

    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        keys = self.keys.changing(lease.run_id)
        # lease_seconds=0: the lease expires now (owner kept), and claim_run sees it expired.
        args = [str(lease.token), lease.owner, k.fmt_float(lease_seconds)]
        if activity is not None:
            args.append(activity)
        what = f"renewing the lease of run {lease.run_id!r}"
        reply = await self._script(Call(what, keys, args, script="renew_lease"), lease.run_id)
        if reply[0] == 0:
            raise await self._lost(lease, reply[1])
        return self._record(lease.run_id, k.pairs(reply[1]))

    async def update_run(
        self,
        lease: Lease,
        status: RunStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        wake_at: float | None = None,
        release: bool = False,
        activity: str | None = None,
    ) -> None:
        keys = self.keys.changing(lease.run_id)
        optional = [result, error, None if wake_at is None else k.fmt_float(wake_at), activity]
        mask = "".join("0" if value is None else "1" for value in optional)
        args = [
            str(lease.token),
            self._ttl_ms() if status.is_final else 0,
            "1" if release else "0",
            status.value,
            mask,
            *(value or "" for value in optional),
        ]
        call = Call(f"updating run {lease.run_id!r}", keys, args, script="update_run")
        reply = await self._script(call, lease.run_id)
        if reply != 1:
            raise await self._lost(lease, reply[1])
        if status.is_final:
            self.wake_output_waiters(lease.run_id)  # its readers end (the script tells other processes)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        keys = self.keys.changing(run_id)
        args = [self._ttl_ms()]
        call = Call(f"cancelling run {run_id!r}", keys, args, script="request_cancel")
        reply = await self._script(call, run_id)
        if reply is None:
            return None
        run = self._record(run_id, k.pairs(reply))
        if run.status.is_final:
            self.wake_output_waiters(run_id)
        return run

    async def reset_run(self, run_id: str) -> RunRecord | None:
        call = Call(f"resetting run {run_id!r}", self.keys.changing(run_id), [], script="reset_run")
        reply = await self._script(call, run_id)
        return None if reply is None else self._record(run_id, k.pairs(reply))

    async def delete_run(self, run_id: str) -> bool:
        what = f"deleting run {run_id!r}"
        keys = self.keys.changing(run_id)
        keys += (self.keys.index, self.keys.ids)
        existed, workflow = await self._script(Call(what, keys, [run_id], script="delete_run"), run_id)
        if existed:
            self.wake_output_waiters(run_id)
            # Its workflow's index, which the script could not name: gone unless created again since.
            await self._run(self.prune_call(run_id, self._workflow_source(workflow)))
        return bool(existed)
