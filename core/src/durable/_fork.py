"""Forking a run from one of its steps: a new run that repeats none of the steps before it.

``fork(store, run_id, from_step=KEY)`` creates a run of the same workflow with the same inputs
whose journal holds the original's checkpoints that come before ``KEY`` in journal order (not
those nested inside ``KEY``), so that executing it replays them and executes ``KEY`` and what
follows. The original is only read. The fork's journal also holds the system step
``durable:fork``, whose result says where it came from (``{"run_id", "from_step", "copied"}``).

Deliveries the copied signal waits consumed are copied too (the n-th wait on a name receives the
n-th delivery, so the fork's later waits wait for new deliveries, as the original's did then).

Lifecycle (``durable._lifecycle``): the caller creates the fork as a direct call does, running
and owning it (token 1), writes its journal under that lease, then parks it due at once, releasing
the lease: any worker of its workflow (or ``wf.resume``) executes it from there.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from durable import _clock, _codec, _keys, _lifecycle
from durable._decode import corruption
from durable._lifecycle import Actor
from durable._patches import FORK_TASK
from durable._records import Lease, RunRecord, RunStatus, StepRecord, StepStatus
from durable.errors import ConfigurationError, UnknownRunError
from durable.store import Store

if TYPE_CHECKING:
    from durable._plugins import PluginManager

__all__ = ["FORK_KEY", "ForkOrigin", "fork", "fork_origin"]

FORK_KEY = _keys.system_base("fork")


@dataclass(frozen=True)
class ForkOrigin:
    """Where a forked run came from (its ``durable:fork`` step)."""

    run_id: str
    from_step: str
    copied: int
    """How many checkpoints were copied from it."""


def fork_origin(steps: list[StepRecord]) -> ForkOrigin | None:
    """The origin recorded in a run's journal, or ``None`` for a run that is not a fork."""
    for step in steps:
        if step.key == FORK_KEY and step.task == FORK_TASK and step.result is not None:
            try:
                data = json.loads(step.result)
                return ForkOrigin(str(data["run_id"]), str(data["from_step"]), int(data["copied"]))
            except (ValueError, KeyError, TypeError):
                return None
    return None


def _inside(key: str, scope: str) -> bool:
    return key.startswith(scope + "/")


async def fork(
    store: Store,
    run_id: str,
    *,
    from_step: str,
    new_run_id: str | None,
    owner: str,
    lease_seconds: float,
    plugins: PluginManager | None = None,
) -> RunRecord:
    """Create the fork of ``run_id`` from step ``from_step`` and return its record (parked, due).
    ``plugins`` give its ``context`` (``durable_run_context``: the forking caller's trace)."""
    from durable._runner import caller_run_id

    original = await store.get_run(run_id)
    if original is None:
        raise UnknownRunError(f"cannot fork: no run {run_id!r} in {store!r}", run_id=run_id)
    if original.status is RunStatus.CORRUPT:
        raise corruption(original)
    steps = await store.load_steps(run_id)
    keys = [step.key for step in steps]
    if from_step not in keys:
        shown = ", ".join(repr(k) for k in keys[:20]) + (" ..." if len(keys) > 20 else "")
        raise ConfigurationError(
            f"cannot fork run {run_id!r} from step {from_step!r}: its journal holds no such step "
            f"(it holds {shown or 'no steps'})",
            run_id=run_id,
            step_key=from_step,
        )
    from durable._streams import OUTPUT_TASKS

    before = steps[: keys.index(from_step)]
    # Event and stream writes are not copied: the fork's replay writes them to its own run.
    kept = [
        s for s in before
        if not _inside(s.key, from_step) and s.key != FORK_KEY and s.task not in OUTPUT_TASKS
    ]  # fmt: skip

    fork_id = new_run_id if new_run_id is not None else f"{run_id}.fork-{secrets.token_hex(4)}"
    where = f"run {run_id!r}: the fork's id"
    fork_id = caller_run_id(_keys.check_id(fork_id, where), original.workflow)
    now = _clock.now()  # workflow time; the lease is on the wall clock, as the store judges it
    deadline = None
    if original.deadline is not None:  # the same time limit, counted from the fork's creation
        deadline = now + (original.deadline - original.created_at)
    record = RunRecord(
        run_id=fork_id,
        workflow=original.workflow,
        status=RunStatus.RUNNING,
        inputs=original.inputs,
        inputs_digest=original.inputs_digest,
        created_at=now,
        updated_at=now,
        owner=owner,
        lease_token=1,
        lease_expires_at=time.time() + lease_seconds,
        deadline=deadline,
        version=original.version,  # the fork continues the original's run, not a new start
        context=None if plugins is None else plugins.run_context(original.workflow, fork_id),
    )
    _lifecycle.require(fork_id, None, RunStatus.RUNNING, Actor.CALLER)
    stored, created = await store.create_run(record)
    if not created:
        raise ConfigurationError(
            f"cannot fork run {run_id!r} as {fork_id!r}: a run with that id exists already "
            f"({stored.workflow}, {stored.status.value}); pass another new_run_id",
            run_id=fork_id,
        )
    lease = Lease(fork_id, owner, 1, record.lease_expires_at or 0.0)
    origin = {"run_id": run_id, "from_step": from_step, "copied": len(kept)}
    marker = StepRecord(
        fork_id, FORK_KEY, FORK_TASK, _codec.digest(None), StepStatus.COMPLETED,
        json.dumps(origin), None, 1, now, now,
    )  # fmt: skip
    copies = [replace(s, run_id=fork_id) for s in kept]
    await store.save_steps(lease, [*copies, marker])
    await _copy_deliveries(store, run_id, fork_id, kept)
    _lifecycle.require(fork_id, RunStatus.RUNNING, RunStatus.WAITING, Actor.OWNER)
    await store.update_run(lease, RunStatus.WAITING, wake_at=_clock.now(), release=True)
    forked = await store.get_run(fork_id)
    if forked is None:
        raise UnknownRunError(f"the fork {fork_id!r} of run {run_id!r} was deleted meanwhile", run_id=fork_id)
    return forked


async def _copy_deliveries(store: Store, run_id: str, fork_id: str, kept: list[StepRecord]) -> None:
    """Deliver to the fork what the copied signal waits consumed: the first n deliveries of each
    name the fork's journal holds n waits of."""
    from durable._waits import SIGNAL_TASK

    waits: dict[str, int] = {}
    for step in kept:
        if step.task == SIGNAL_TASK:
            part = step.key.rpartition("/")[2]
            base, sep, number = part.rpartition("#")
            if not (sep and number.isdigit()):
                base = part
            name = _unescape(base.partition("@")[2])
            waits[name] = waits.get(name, 0) + 1
    for name, count in waits.items():
        for delivery in (await store.list_signals(run_id, name))[:count]:
            await store.send_signal(fork_id, name, delivery.delivery_id, delivery.payload)


_UNESCAPES = {"%23": "#", "%2F": "/", "%40": "@", "%25": "%"}


def _unescape(text: str) -> str:
    """The inverse of ``_keys.escape``."""
    return re.sub("%(?:23|2F|40|25)", lambda m: _UNESCAPES[m.group()], text)
