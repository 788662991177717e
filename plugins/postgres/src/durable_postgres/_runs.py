"""Runs and their leases in the Postgres store: create (alone or batched), read, claim, renew,
update (alone or batched), cancel, reset and delete a run, each one statement over ``_sql``'s.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from durable.batching import WriteBatcher
from durable.errors import LeaseLost, StoreError
from durable.store import Lease, RunRecord, RunStatus
from durable_postgres._batching import (
    Created,
    RunUpdate,
    firsts,
    json_rows,
    outcome_of,
    run_row,
    update_row,
)
from durable_postgres._calls import PostgresCalls, affected
from durable_postgres._conns import PER_CALL, Conns

if TYPE_CHECKING:
    from durable_postgres._conns import Conn


def _leaves_entry(status: RunStatus, release: bool) -> bool:
    """Whether an owner's update takes the run out of its ``runs_live`` entry: it finished, or it
    parked (on a signal: out of the table; in a sleep: into the sleepers' range)."""
    return status.is_final or (status is RunStatus.WAITING and release)


def _as_granted(run: RunRecord, granted: float | None) -> RunRecord:
    """The created run as stored: its lease expiry is the one the server granted (``_sql.granted``)."""
    return run if granted == run.lease_expires_at else replace(run, lease_expires_at=granted)


def _same_creation(stored: RunRecord, run: RunRecord) -> bool:
    """Whether ``stored`` is ``run`` as its creation wrote it (the lease expiry may be the server's)."""
    return replace(stored, lease_expires_at=run.lease_expires_at) == run


class PostgresRuns(PostgresCalls):
    """The runs part of ``PostgresStore``: the ``Store`` calls that write or read one run."""

    _creates: WriteBatcher[RunRecord, Created] | None
    _updates: WriteBatcher[RunUpdate, None] | None

    if TYPE_CHECKING:

        def _took_out(self, count: int) -> None: ...

    async def create_run(self, run: RunRecord) -> Created:
        creates = self._creates
        if creates is None:  # not open: _call says so
            return await self._create_alone(run)
        return await creates.submit(run)

    async def _create_alone(self, run: RunRecord, conns: Conns = PER_CALL) -> Created:
        async def retry(conn: Conn) -> Created:
            stored, created = await self._create_run(conn, run)
            # Every field equal (creation time included) means the lost first attempt inserted it.
            return stored, created or _same_creation(stored, run)

        return await self._call(
            f"create run {run.run_id!r}", lambda conn: self._create_run(conn, run), retry, conns
        )

    async def _create_run(self, conn: Conn, run: RunRecord) -> Created:
        row = await conn.fetchrow(self._sql["create_run"], *run_row(run), self.clock())
        assert row is not None
        if row["created"]:
            return _as_granted(run, row["granted"]), True
        if row["run_id"] is not None:
            return self._run(row[2:]), False
        # A concurrent creator committed after this statement's snapshot was taken.
        existing = await conn.fetchrow(self._sql["get_run"], run.run_id)
        if existing is None:
            raise StoreError(f"{self!r}: run {run.run_id!r} vanished while it was being created")
        return self._run(existing), False

    async def _create_batch(
        self, conn: Conn, runs: list[RunRecord], *, retrying: bool
    ) -> list[Created | BaseException]:
        """Insert the first run of each id in one statement; read the others' stored runs in one more.

        ``retrying`` after a lost connection: a stored run equal to the first caller's in every
        field is the one the lost attempt inserted, so that caller created it (as in ``create_run``).
        """
        first = firsts(runs, lambda run: run.run_id)
        rows = await conn.fetch(
            self._sql["create_run_batch"], json_rows([run_row(runs[i]) for i in first.values()]), self.clock()
        )
        created = {row[0]: row[1] for row in rows}
        mine = [first[run.run_id] == index and run.run_id in created for index, run in enumerate(runs)]
        wanted = list({run.run_id for run, done in zip(runs, mine, strict=True) if not done})
        stored = {}
        if wanted:
            stored = {row[0]: self._run(row) for row in await conn.fetch(self._sql["get_runs"], wanted)}
        outcomes: list[Created | BaseException] = []
        for index, run in enumerate(runs):
            found = stored.get(run.run_id)
            if mine[index]:
                outcomes.append((_as_granted(run, created[run.run_id]), True))
            elif found is not None:
                ours = retrying and first[run.run_id] == index and _same_creation(found, run)
                outcomes.append((found, ours))
            else:  # deleted since it conflicted: as a lone call would, create it
                outcomes.append(await outcome_of(self._create_run(conn, run)))
        return outcomes

    async def get_run(self, run_id: str) -> RunRecord | None:
        sql = self._sql["get_run"]
        row = await self._call(f"read run {run_id!r}", lambda conn: conn.fetchrow(sql, run_id))
        return None if row is None else self._run(row)

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        claim_id = secrets.token_hex(8)

        async def op(conn: Conn) -> Lease | None:
            row = await conn.fetchrow(self._sql["claim"], run_id, owner, float(lease_seconds), claim_id)
            return None if row is None else Lease(run_id, owner, row[0], row[1])

        async def retry(conn: Conn) -> Lease | None:
            row = await conn.fetchrow(self._sql["claimed"], run_id, claim_id)
            if row is not None:
                return Lease(run_id, owner, row[0], row[1])
            return await op(conn)

        return await self._call(f"claim run {run_id!r}", op, retry)

    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        async def op(conn: Conn) -> RunRecord:
            row = await conn.fetchrow(
                self._sql["renew"], lease.run_id, lease.token, lease.owner, float(lease_seconds), activity
            )
            if row is None:
                raise await self._stale(conn, lease)
            return self._run(row)

        return await self._call(f"renew the lease of run {lease.run_id!r}", op)

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
        update = RunUpdate(lease, status, result, error, wake_at, release, activity)
        updates = self._updates
        if updates is None:  # not open: _call says so
            await self._update_alone(update)
        else:
            await updates.submit(update)
        if _leaves_entry(status, release):
            self._took_out(1)
        if status.is_final:
            self.wake_output_waiters(lease.run_id)  # readers of its streams end

    async def _update_alone(self, update: RunUpdate, conns: Conns = PER_CALL) -> None:
        await self._call(
            f"update run {update.lease.run_id!r}", lambda conn: self._update_run(conn, update), conns=conns
        )

    async def _update_run(self, conn: Conn, update: RunUpdate) -> None:
        lease, sql = update.lease, self._sql["update_release" if update.release else "update"]
        args = (
            lease.run_id, lease.token, update.status.value, update.result, update.error, update.wake_at,
            update.activity,
        )  # fmt: skip
        if affected(await conn.execute(sql, *args)) == 0:
            raise await self._stale(conn, lease)

    async def _update_batch(self, conn: Conn, updates: list[RunUpdate]) -> list[BaseException | None]:
        """Update the first item of each run in one statement; give the others what a lone call gives.

        It sets values, nothing counts up: ``_call`` may repeat it after a lost connection.
        """
        first = firsts(updates, lambda update: update.lease.run_id)
        rows = await conn.fetch(
            self._sql["update_run_batch"], json_rows([update_row(updates[i]) for i in first.values()])
        )
        updated = {row[0] for row in rows}
        stale = [run_id for run_id in first if run_id not in updated]
        tokens = {row[0]: row[1] for row in await conn.fetch(self._sql["tokens"], stale)} if stale else {}
        outcomes: list[BaseException | None] = []
        for index, update in enumerate(updates):
            lease = update.lease
            if first[lease.run_id] != index:  # a later update of a run in the statement: after it
                outcomes.append(await outcome_of(self._update_run(conn, update)))
            elif lease.run_id in updated:
                outcomes.append(None)
            else:
                outcomes.append(LeaseLost.stale(lease.run_id, lease.token, tokens.get(lease.run_id)))
        return outcomes

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        row = await self._call(
            f"cancel run {run_id!r}", lambda conn: conn.fetchrow(self._sql["cancel"], run_id)
        )
        if row is None:
            return await self.get_run(run_id)  # unknown, or a status no release writes: corrupt
        run = self._run(row)
        if run.status is RunStatus.CANCELLED:
            self._took_out(1)
            self.wake_output_waiters(run_id)
        return run

    async def reset_run(self, run_id: str) -> RunRecord | None:
        sql = self._sql["reset"]
        row = await self._call(f"reset run {run_id!r}", lambda conn: conn.fetchrow(sql, run_id))
        # Only failed and cancelled runs are reset; any other is returned as it is.
        return await self.get_run(run_id) if row is None else self._run(row)

    async def delete_run(self, run_id: str) -> bool:
        tag = await self._call(
            f"delete run {run_id!r}", lambda conn: conn.execute(self._sql["delete"], run_id)
        )
        deleted = affected(tag) == 1
        if deleted:
            self._took_out(1)
            self.wake_output_waiters(run_id)
        return deleted
