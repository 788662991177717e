"""The run lifecycle: every state a run can be in, every transition, and who may make it.

Everything that changes a run's status follows this module: the engine and the runner (as the
run's owner), workers, ``start()``, ``cancel()``, ``resume()`` and the stores' claims and due-run
queries. ``TRANSITIONS`` is the whole state machine; a status change not listed there is a bug,
and ``require`` raises ``LifecycleError`` for it before anything is written.

::

                 start()               claim (executor)
     (none) ─────────────► pending ─────────────────────┐
        │                                               ▼
        └─── a direct call (its caller owns it) ───► running ── the owner ends it ──► completed
                                                     │   ▲                           failed
                         wait (owner) ┌──────────────┘   │ claim (executor):         cancelled
                                      ▼                  │ due, or interrupted
                                   waiting ──────────────┘
        parked: due when its wake time comes or a signal is delivered

     interrupted  a running or waiting run with no live owner (reported, not stored)
     corrupt      a record that cannot be read (reported, not stored; durable._decode):
                  no transition enters or leaves it, workers skip it
     cancel       (caller) pending, waiting, interrupted or failed ──► cancelled at once;
                  a run with a live owner is stopped by that owner at its next await
     resume       (caller) failed or cancelled ──► pending, then claimed
     claim        (executor) also takes a failed run: calling a failed run again retries it
     fork         (caller) creates a new run owning it, as a direct call does, copies the journal
                  before a step into it, then parks it due at once (waiting, wake time now)
     enqueue      (caller) start() on a queue: pending, with its queue entry (priority, partition,
                  not-before time); a queue claim takes it, within the queue's limits, once
                  its not-before time has come (a delay)
     debounce     (caller) a start within a pending debounced run's window: pending ──► pending,
                  with the new inputs and a later not-before time
     tick         (caller) a schedule's tick: pending (enqueued, on a queue), under an id made from
                  the tick's time, so however many schedulers see it, one run is created

``interrupted`` is never written: it is how a stored ``running`` or ``waiting`` run reads when
its owner holds no live lease (crashed, paused past its lease, its caller cancelled it, or a
worker shut down), until an executor claims it again (``reported``).

Actors: ``caller`` is any process using the API or CLI (``start``, ``cancel``, ``resume``);
``executor`` is any process taking a run nobody holds a live lease on (a worker, ``resume()``,
a direct call of the run id); ``owner`` is the executor whose lease token is the run's current
one: its writes are fenced by that token (``Store`` raises ``LeaseLost`` otherwise).

What each transition writes is stated on the ``Store`` method that makes it (``by``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from durable._records import RunRecord, RunStatus
from durable.errors import LifecycleError

__all__ = [
    "CLAIMABLE",
    "DUE_STATUSES",
    "FINISHED",
    "TRANSITIONS",
    "Actor",
    "LifecycleError",
    "Transition",
    "allowed",
    "is_due",
    "is_interrupted",
    "reported",
    "require",
]

P, R, W = RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING
C, F, X = RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED


class Actor(StrEnum):
    CALLER = "caller"
    """Any process using the API or CLI."""
    EXECUTOR = "executor"
    """Any process taking a run whose lease nobody holds (a worker, ``resume()``, a direct call)."""
    OWNER = "owner"
    """The executor holding the run's current lease token."""


@dataclass(frozen=True)
class Transition:
    source: RunStatus | None
    """The stored status before (``None``: the run does not exist yet)."""
    target: RunStatus
    actor: Actor
    by: str
    """The ``Store`` method that makes it."""
    why: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition(None, P, Actor.CALLER, "create_run", "start(): recorded for a worker"),
    Transition(None, R, Actor.CALLER, "create_run", "a direct call creates the run owning it (token 1)"),
    *(
        Transition(s, R, Actor.EXECUTOR, "claim_run", f"claim a {s} run nobody holds a live lease on")
        for s in (P, R, W, F)
    ),
    Transition(R, R, Actor.OWNER, "renew_lease", "heartbeat; lease_seconds=0 gives the lease back"),
    Transition(W, W, Actor.OWNER, "renew_lease", "heartbeat of an in-process wait, or giving it back"),
    Transition(R, W, Actor.OWNER, "update_run", "wait for a signal or sleep (park: release the lease)"),
    Transition(W, R, Actor.OWNER, "update_run", "an in-process signal wait returns"),
    Transition(W, W, Actor.OWNER, "update_run", "mark a parked run due (a delivery raced the park)"),
    *(Transition(s, t, Actor.OWNER, "update_run", f"the run ends {t}") for s in (R, W) for t in (C, F, X)),
    *(Transition(s, X, Actor.CALLER, "request_cancel", "cancel a run nobody executes") for s in (P, R, W, F)),
    Transition(X, P, Actor.CALLER, "reset_run", "resume() a cancelled run"),
    Transition(F, P, Actor.CALLER, "reset_run", "resume() a failed run"),
    # fork(): the same changes as a direct call's creation and a park, made for a new run.
    Transition(None, R, Actor.CALLER, "create_run", "fork(): the new run, owned while its journal is copied"),
    Transition(R, W, Actor.OWNER, "update_run", "fork(): hand the copied run to any executor, due now"),
    # Queues (durable._queues) and schedules (durable._schedules).
    Transition(None, P, Actor.CALLER, "enqueue_run", "start() on a queue, delayed or not: run and entry"),
    Transition(P, P, Actor.CALLER, "enqueue_run", "debounce: a start in the window replaces inputs, times"),
    *(
        Transition(s, R, Actor.EXECUTOR, "claim_queued", f"a queue claim of a due {s} run, within limits")
        for s in (P, R, W)
    ),
    Transition(None, P, Actor.CALLER, "create_run", "a schedule's tick: its run, id from the tick time"),
    Transition(None, P, Actor.CALLER, "enqueue_run", "a schedule's tick on a queue"),
)

_ALLOWED = frozenset((t.source, t.target, t.actor) for t in TRANSITIONS)

CLAIMABLE = frozenset({P, R, W, F})
"""Statuses ``claim_run`` may take a run from, when nobody holds a live lease on it."""

DUE_STATUSES = frozenset({P, R, W})
"""Statuses a worker looks at for due runs (``is_due`` says which of them are due)."""

FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
"""Statuses a run never leaves by itself: the only ones ``prune`` deletes."""


def allowed(source: RunStatus | None, target: RunStatus, actor: Actor) -> bool:
    return (source, target, actor) in _ALLOWED


def require(run_id: str, source: RunStatus | None, target: RunStatus, actor: Actor) -> None:
    """Raise ``LifecycleError`` unless ``TRANSITIONS`` lists this change."""
    if (source, target, actor) not in _ALLOWED:
        before = "a new run" if source is None else source.value
        raise LifecycleError(
            f"run {run_id!r}: the {actor.value} may not change {before} to {target.value}", run_id=run_id
        )


def is_due(run: RunRecord, now: float) -> bool:
    """Whether a worker should claim ``run`` now; every store's due-run query returns exactly these.

    Nobody holds a live lease on it, and it is pending, interrupted (running, or waiting in
    process, with no live owner), or parked with its wake time reached (a durable sleep elapsed,
    or a signal delivered).
    """
    if run.status not in DUE_STATUSES or run.lease_is_live(now):
        return False
    if run.status is W:
        return run.owner is not None or (run.wake_at is not None and run.wake_at <= now)
    return True


def is_interrupted(run: RunRecord, now: float, owner_is_dead: bool = False) -> bool:
    """A stored running or waiting run whose executor is gone: no live lease (a parked run has no
    owner and is not interrupted), or an owner known to be dead."""
    if run.status is R:
        return not run.lease_is_live(now) or owner_is_dead
    if run.status is W:
        return run.owner is not None and (not run.lease_is_live(now) or owner_is_dead)
    return False


def reported(run: RunRecord, now: float | None = None, owner_is_dead: bool | None = None) -> RunRecord:
    """``run`` as users see it: ``interrupted`` where ``is_interrupted`` says so.

    ``owner_is_dead`` defaults to asking this host whether the owner's process is gone.
    """
    if run.status is not R and run.status is not W:
        return run
    if owner_is_dead is None:
        from durable._owner import is_dead_local_owner

        owner_is_dead = is_dead_local_owner(run.owner)
    now = time.time() if now is None else now
    if is_interrupted(run, now, owner_is_dead):
        return replace(run, status=RunStatus.INTERRUPTED)
    return run


def stored_statuses(statuses: frozenset[RunStatus]) -> frozenset[RunStatus]:
    """The stored statuses whose runs may be reported as one of ``statuses``."""
    found = set(statuses)
    if RunStatus.INTERRUPTED in found:
        found.discard(RunStatus.INTERRUPTED)
        found.update((R, W))
    return frozenset(found)


# -- activity: what a run is doing, as the core writes it into RunRecord.activity -------------


def in_flight(steps: dict[str, int]) -> str | None:
    """The activity of a run executing the steps ``{key: attempt}`` (``None`` if none)."""
    if not steps:
        return None
    return json.dumps({"steps": [{"key": key, "attempt": n} for key, n in steps.items()]})


def waiting_for_signal(name: str, timeout: float | None) -> str:
    return json.dumps({"signal": name, "timeout": timeout})


def sleeping_until(wake_at: float) -> str:
    return json.dumps({"sleep_until": wake_at})


def activity_of(run: RunRecord) -> dict[str, Any] | None:
    """The decoded activity, or ``None`` when there is none or it is not ours."""
    if not run.activity:
        return None
    try:
        data = json.loads(run.activity)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
