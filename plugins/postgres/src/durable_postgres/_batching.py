"""Concurrent calls of one kind sharing a statement: what each kind sends, and how a batch is cut.

Checkpoints, run creations and run updates that arrive while one of their kind is in flight
share the next statement (``durable.batching.WriteBatcher``); a lone call is still sent at once,
alone. Each batch statement takes one JSON parameter (``json_rows``) and gives every call the
outcome its lone call would have given.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeAlias, TypeVar

from durable.errors import StoreError, StoreUnavailable
from durable.store import Lease, RunRecord, RunStatus, StepRecord
from durable_postgres._conns import Conns

if TYPE_CHECKING:
    from durable_postgres._conns import Conn

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")
K = TypeVar("K", str, tuple[str, str])

SaveItem: TypeAlias = tuple[Lease, StepRecord]
"""One ``save_step`` call waiting in the step batcher."""
Created: TypeAlias = tuple[RunRecord, bool]
"""What ``create_run`` returns: the stored run, and whether this call created it."""

# Measured on scenario B/C of benchmarks/run.py: a second flush in flight was no faster (it
# splits the waiting checkpoints into smaller batches), nor were smaller batches.
BATCH = 500
"""Most calls one flush of a batcher (steps, run creations, run updates) carries."""
BATCH_CHARS = 1 << 20
"""Inputs, results and errors one batch statement carries at most (large ones go in several)."""
FLUSHES_IN_FLIGHT = 1
"""Flushes of each batcher in flight at once."""


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """One ``update_run`` call waiting in the update batcher."""

    lease: Lease
    status: RunStatus
    result: str | None
    error: str | None
    wake_at: float | None
    release: bool
    activity: str | None


@dataclass(frozen=True, slots=True)
class Batching(Generic[I, R]):
    """How one kind of store call is made alone, and how several of them share a statement."""

    what: Callable[[list[I]], str]
    """Names a batch in errors: ``save 5 steps of 3 runs``."""
    alone: Callable[[I, Conns], Awaitable[R]]
    """The lone call, retried on a connection from the given source."""
    together: Callable[[Conn, list[I]], Awaitable[list[R | BaseException]]]
    """Several calls on one connection: one outcome per item, as the lone call gives it."""
    weight: Callable[[I], int]
    """The characters of an item's large values (its statement parameter grows with them)."""
    retry: Callable[[Conn, list[I]], Awaitable[list[R | BaseException]]] | None = None
    """Instead of ``together`` after a connection was lost mid-statement, if it must find out
    what the lost attempt did."""


class Caller(Protocol):
    """``PostgresStore._call``: an operation on a pooled connection, with retries."""

    async def __call__(
        self,
        what: str,
        op: Callable[[Conn], Awaitable[T]],
        retry_op: Callable[[Conn], Awaitable[T]] | None = ...,
        conns: Conns = ...,
    ) -> T: ...


async def flush(call: Caller, kind: Batching[I, R], conns: Conns, items: list[I]) -> list[R | BaseException]:
    """A batcher's flush: one outcome per item, as the lone call gives it."""
    if len(items) == 1:
        return [await kind.alone(items[0], conns)]  # its error goes to its caller
    # Chunks go in order: a later call of the same run or key sees what an earlier one wrote.
    chunks = [
        await _flush_chunk(call, kind, conns, chunk) for chunk in by_size(items, BATCH_CHARS, kind.weight)
    ]
    return [outcome for chunk in chunks for outcome in chunk]


async def _flush_chunk(
    call: Caller, kind: Batching[I, R], conns: Conns, items: list[I]
) -> list[R | BaseException]:
    if len(items) == 1:
        return [await outcome_of(kind.alone(items[0], conns))]
    retry = kind.retry
    try:
        return await call(
            kind.what(items),
            lambda conn: kind.together(conn, items),
            None if retry is None else lambda conn: retry(conn, items),
            conns,
        )
    except StoreUnavailable as exc:
        return [exc] * len(items)
    except StoreError:
        # The server refused the statement (a value PostgreSQL cannot store, say): make each
        # call alone, so that only the item at fault gets the error.
        return [await outcome_of(kind.alone(item, conns)) for item in items]


async def outcome_of(call: Awaitable[R]) -> R | BaseException:
    """The call's result, or the ``StoreError`` (``LeaseLost``, ...) that belongs to this item alone.

    Other errors (a lost connection) propagate: they concern the whole batch, which is retried.
    """
    try:
        return await call
    except StoreError as exc:
        return exc


def by_size(items: list[I], limit: int, weight: Callable[[I], int]) -> Iterator[list[I]]:
    """``items`` in order, in chunks whose ``weight`` adds up to at most ``limit`` characters
    (a larger item goes alone): one statement's parameter must not grow with the batch unbounded."""
    chunk: list[I] = []
    size = 0
    for item in items:
        heavy = weight(item)
        if chunk and size + heavy > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += heavy
    if chunk:
        yield chunk


def firsts(items: list[I], key: Callable[[I], K]) -> dict[K, int]:
    """The index of the first item of each key, in key order.

    One statement may write a key only once. In key order, so that concurrent batches writing
    the same keys take them in one order where the plan follows the input; a deadlock left
    anyway is rolled back by the server and retried by ``_call``.
    """
    first: dict[K, int] = {}
    for index, item in enumerate(items):
        first.setdefault(key(item), index)
    return dict(sorted(first.items()))


def json_rows(rows: list[list[Any]]) -> str:
    """The parameter of a batch statement: a JSON array with one array per item.

    One JSON text costs the client far less than an array per column (asyncpg looks up the
    type of a typed array on every new connection, and checks every element). JSON numbers
    are exact: a float is written in its shortest exact form. NaN and infinities are not
    JSON: they fail the batch, whose items are then written alone.
    """
    return json.dumps(rows, ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":"))


def step_weight(item: SaveItem) -> int:
    return len(item[1].result or "") + len(item[1].error or "")


def run_weight(run: RunRecord) -> int:
    return (
        len(run.inputs) + len(run.result or "") + len(run.error or "") + len(run.activity or "")
        + len(run.context or "")
    )  # fmt: skip


def update_weight(update: RunUpdate) -> int:
    return len(update.result or "") + len(update.error or "") + len(update.activity or "")


def run_row(run: RunRecord) -> list[Any]:
    return [
        run.run_id, run.workflow, run.status.value, run.inputs, run.inputs_digest, run.created_at,
        run.updated_at, run.result, run.error, run.owner, run.lease_token, run.lease_expires_at,
        run.wake_at, run.deadline, run.parent_run_id, run.cancel_requested, run.activity, run.version,
        run.context,
    ]  # fmt: skip


def update_row(update: RunUpdate) -> list[Any]:
    lease = update.lease
    return [
        lease.run_id, lease.token, update.status.value, update.result, update.error, update.wake_at,
        update.release, update.activity,
    ]  # fmt: skip


def step_row(lease: Lease, step: StepRecord) -> list[Any]:
    return [
        lease.run_id, step.key, step.task, step.args_digest, step.status.value, step.result,
        step.error, step.attempts, step.started_at, step.finished_at, step.version, lease.token,
    ]  # fmt: skip
