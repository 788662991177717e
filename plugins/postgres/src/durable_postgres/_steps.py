"""Checkpoints of the Postgres store: ``save_step`` (fenced by the run's lease token, first writer
wins; concurrent saves share a statement), ``save_steps`` (one transaction) and ``load_steps``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from asyncpg import Record

from durable._decode import decode_failure
from durable.batching import WriteBatcher
from durable.errors import LeaseLost, StoreError
from durable.store import Lease, StepRecord, StepStatus
from durable_postgres._batching import SaveItem, firsts, json_rows, outcome_of, step_row
from durable_postgres._calls import PostgresCalls, affected
from durable_postgres._conns import PER_CALL, Conns

if TYPE_CHECKING:
    from durable_postgres._conns import Conn

_STEP_STATUSES = frozenset(status.value for status in StepStatus)


class PostgresSteps(PostgresCalls):
    """The steps part of ``PostgresStore``."""

    _steps: WriteBatcher[SaveItem, StepRecord] | None

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._call(
            f"load the steps of run {run_id!r}", lambda conn: conn.fetch(self._sql["load_steps"], run_id)
        )
        return self._steps_of(run_id, rows)

    async def _save_step(self, conn: Conn, lease: Lease, step: StepRecord) -> StepRecord:
        values = step_row(lease, step)
        for _ in range(3):
            # The common case is this one statement: fencing check and first-writer-wins insert.
            if affected(await conn.execute(self._sql["save_step"], *values)) == 1:
                return step
            row = await conn.fetchrow(self._sql["stored_step"], lease.run_id, step.key)
            assert row is not None
            if row["token"] != lease.token:
                raise await self._stale(conn, lease)
            if row["key"] is not None:
                return self._step(row[1:])
            # The completed step vanished between the two statements (its run was deleted
            # and created again): try again.
        raise StoreError(f"{self!r}: step {step.key!r} of run {lease.run_id!r} kept changing while saved")

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        steps = self._steps
        if steps is None:  # not open: _call says so
            return await self._save_alone(lease, step)
        return await steps.submit((lease, step))

    async def _save_alone(self, lease: Lease, step: StepRecord, conns: Conns = PER_CALL) -> StepRecord:
        return await self._call(
            f"save step {step.key!r} of run {lease.run_id!r}",
            lambda conn: self._save_step(conn, lease, step),
            conns=conns,
        )

    @staticmethod
    def _steps_what(items: list[SaveItem]) -> str:
        return f"save {len(items)} steps of {len({lease.run_id for lease, _ in items})} runs"

    async def _save_batch(self, conn: Conn, items: list[SaveItem]) -> list[StepRecord | BaseException]:
        """Insert the first item of each (run, key) in one statement; settle the rest in one more.

        Idempotent, so ``_call`` may retry it after a lost connection: a row that the lost
        attempt stored is found by ``_settle`` and returned, as a retried lone save returns it.
        """
        first = firsts(items, lambda item: (item[0].run_id, item[1].key))
        batch = [step_row(*items[index]) for index in first.values()]
        rows = await conn.fetch(self._sql["save_step_batch"], json_rows(batch))
        outcomes: list[StepRecord | BaseException | None] = [None] * len(items)
        for run_id, key in rows:
            outcomes[first[(run_id, key)]] = items[first[(run_id, key)]][1]
        rest = [index for index, outcome in enumerate(outcomes) if outcome is None]
        if rest:
            await self._settle(conn, items, rest, outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    async def _settle(
        self,
        conn: Conn,
        items: list[SaveItem],
        rest: list[int],
        outcomes: list[StepRecord | BaseException | None],
    ) -> None:
        """Give the items at ``rest`` (not inserted) what ``_save_step`` would give each, in order.

        One statement reads their runs' tokens and stored steps: a stale token is that item's
        ``LeaseLost``, a completed step is returned (first writer wins). Anything else (a failed
        step to replace, a step that vanished) is rare and goes through ``_save_step``.
        """
        wanted = list(dict.fromkeys((items[index][0].run_id, items[index][1].key) for index in rest))
        rows = await conn.fetch(
            self._sql["stored_steps"], [run_id for run_id, _ in wanted], [key for _, key in wanted]
        )
        stored: dict[tuple[str, str], tuple[int | None, StepRecord | None]] = {}
        unreadable: dict[tuple[str, str], StoreError] = {}
        for row in rows:
            found = None
            try:
                found = None if row[4] is None else self._step(row[3:])
            except StoreError as exc:
                unreadable[(row[0], row[1])] = exc
            stored[(row[0], row[1])] = (row[2], found)
        for index in rest:
            lease, step = items[index]
            token, found = stored[(lease.run_id, step.key)]
            if token != lease.token:
                outcomes[index] = LeaseLost.stale(lease.run_id, lease.token, token)
            elif (lease.run_id, step.key) in unreadable:
                outcomes[index] = unreadable[(lease.run_id, step.key)]
            elif found is not None and found.status is StepStatus.COMPLETED:
                outcomes[index] = found
            else:
                outcomes[index] = await outcome_of(self._save_step(conn, lease, step))

    async def save_steps(self, lease: Lease, steps: Iterable[StepRecord]) -> list[StepRecord]:
        """Several checkpoints in one transaction: all are fenced, or none is written."""
        batch = list(steps)

        async def op(conn: Conn) -> list[StepRecord]:
            async with conn.transaction():
                return [await self._save_step(conn, lease, step) for step in batch]

        return await self._call(f"save {len(batch)} steps of run {lease.run_id!r}", op)

    # -- reading rows --------------------------------------------------------------

    def _steps_of(self, run_id: str, rows: list[Record]) -> list[StepRecord]:
        try:
            return StepRecord.from_rows(run_id, rows)
        except (ValueError, TypeError) as exc:
            # Only a status the core does not know fails here (every other column is typed).
            key = next((row[0] for row in rows if row[3] not in _STEP_STATUSES), "?")
            raise decode_failure(self._label, run_id, f"step {key!r}: status", exc) from exc

    def _step(self, row: Record | tuple[Any, ...]) -> StepRecord:
        try:
            return StepRecord.from_row(row)
        except (ValueError, TypeError) as exc:
            raise decode_failure(self._label, row[0], f"step {row[1]!r}: status", exc) from exc
