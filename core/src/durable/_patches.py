"""Patches: changing a workflow's code while runs recorded by the old code are still in flight.

``if await wf.patched("new-pricing"):`` takes the new branch in a run that reaches this point
for the first time, and records that it did (a marker step ``durable:patch@new-pricing``). A run
whose journal already holds steps past this point, recorded without the marker, was written by
the old code: it takes the old branch, and nothing is recorded. Which branch a run took is
therefore fixed once, and every later replay takes the same one.

Once no run that took the old branch remains (``durable replay`` tells), the old branch is
deleted and the call becomes ``wf.deprecate_patch("new-pricing")``: the new branch always, and
runs whose journal holds the marker still replay. Later still the call is deleted too.

"Past this point" is judged by step keys: the journal holds a step this execution has not
reached yet (neither its key nor the key of a step it is nested in has been taken). Markers
the body never asks for (a fork's origin, a version) do not count.
"""

from __future__ import annotations

from durable import _codec, _keys
from durable._engine import StepPolicy, execute_step
from durable.context import RunContext, current_run
from durable.errors import ConfigurationError, NondeterminismError

__all__ = ["PATCH_TASK", "UNASKED_TASKS", "deprecate_patch", "patched"]

PATCH_TASK = "durable:patch"
FORK_TASK = "durable:fork"
VERSION_TASK = "durable:version"
UNASKED_TASKS = frozenset({FORK_TASK, VERSION_TASK})
"""Tasks of journal entries no workflow body asks for: written beside the body's steps."""


def _require_run(what: str, name: object) -> RunContext:
    ctx = current_run()
    if ctx is None:
        raise ConfigurationError(f"{what} must be called inside a workflow run")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"run {ctx.run_id!r}: {what}: a patch name must be a non-empty str, got {name!r}",
            run_id=ctx.run_id,
        )
    return ctx


def went_past(ctx: RunContext) -> bool:
    """Whether the run's journal holds a step of the body this execution has not reached yet."""
    keys = ctx.keys
    return any(step.task not in UNASKED_TASKS and not keys.reached(key) for key, step in ctx.journal.items())


async def _take_new_branch() -> bool:
    return True


async def patched(name: str) -> bool:
    """``True`` for the new code: in a run reaching this point for the first time (recorded), and
    in one that recorded it before; ``False`` in a run the old code took past this point."""
    ctx = _require_run(f"wf.patched({name!r})", name)
    key = ctx.next_key(_keys.system_base("patch", name))
    recorded = ctx.journal.get(key)
    if recorded is not None and recorded.task != PATCH_TASK:
        raise NondeterminismError(
            ctx.run_id, key, recorded=f"task {recorded.task!r}", called=f"patch {name!r}"
        )
    if recorded is None and went_past(ctx):
        return False
    # Recorded before: True again. First time here: record the marker (a replay check stops here).
    taken: bool = await execute_step(
        ctx, key, PATCH_TASK, _codec.digest(name), _take_new_branch, StepPolicy(), _codec.dumps, _codec.loads
    )
    return taken


def deprecate_patch(name: str) -> None:
    """The cleanup of ``patched(name)`` once no run that took the old branch remains: the new
    branch is the only one, nothing is recorded, and runs that recorded the patch still replay."""
    ctx = _require_run(f"wf.deprecate_patch({name!r})", name)
    ctx.next_key(_keys.system_base("patch", name))  # as patched() took it: later keys stay the same
