"""One pydantic-ai durable unit as one step, under the name and digest its run recorded.

``RunContext.step`` takes the key of one name and compares one digest. A unit here may have been
recorded under an older name (a renamed agent, toolset or tool: ``aliases``) or with an older
digest (a model request recorded before the tool list was part of it), so this takes a key for
every candidate name, in the same order on every execution, and replays the one the journal holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

from durable import _codec
from durable._engine import StepPolicy, execute_step
from durable._keys import check_id
from durable.context import RunContext
from durable.errors import NondeterminismError
from durable_pydantic_ai._config import StepConfig

__all__ = ["current_step_key", "run_step"]

_STEP_KEY: ContextVar[str | None] = ContextVar("durable_pydantic_ai_step_key", default=None)


def current_step_key() -> str | None:
    """The key of the step whose body is running (a model request streaming its events), else None."""
    return _STEP_KEY.get()


async def run_step(
    ctx: RunContext,
    names: Sequence[str],
    digests: Sequence[Any],
    body: Callable[[], Awaitable[Any]],
    step: StepConfig,
    *,
    call: str | None = None,
) -> tuple[str, Any]:
    """Replay or execute the unit named ``names[0]`` (its current name): its key and value.

    Every name takes its key (so the n-th call of a name gets the same key on every execution,
    whichever name a run recorded); the first whose key the journal holds is the step, else the
    current one. ``digests[0]`` is the call's digest; a recorded step whose digest is one of the
    others (the same call as an older version described it) replays as well. Anything else
    recorded under the key is a ``NondeterminismError`` naming it, as for any step.

    ``call``: the ``(tool call id)`` ending a tool step's names. A tool call the journal recorded
    under another name of the same agent (a tool or toolset renamed without an alias) would run
    again, so it is a ``NondeterminismError`` naming the recorded step instead.
    """
    taken = [(ctx.next_key(check_id(name, f"run {ctx.run_id!r}: step name")), name) for name in names]
    key, task = next((pair for pair in taken if pair[0] in ctx.journal), taken[0])
    if call is not None and key not in ctx.journal:
        _refuse_renamed_call(ctx, key, names, call)
    texts = [_codec.digest(value) for value in digests]
    recorded = ctx.journal.get(key)
    digest = recorded.args_digest if recorded is not None and recorded.args_digest in texts else texts[0]

    async def keyed() -> Any:
        token = _STEP_KEY.set(key)
        try:
            return await body()
        finally:
            _STEP_KEY.reset(token)

    policy = StepPolicy(
        retries=step.retries, backoff=step.backoff, retry_on=step.retry_on, timeout=step.timeout
    )
    return key, await execute_step(ctx, key, task, digest, keyed, policy, _codec.dumps, _codec.loads)


def _refuse_renamed_call(ctx: RunContext, key: str, names: Sequence[str], call: str) -> None:
    agent = names[0].partition("__")[0]
    for recorded_key, recorded in ctx.journal.items():
        task = recorded.task
        if (
            task.endswith(call)
            and task not in names
            and task.startswith(f"{agent}__")
            and ".call_tool" in task
        ):
            raise NondeterminismError(
                ctx.run_id,
                recorded_key,
                recorded=f"tool call {call} as step {task!r}",
                called=f"it as {names[0]!r} (renamed? DurableAgent(..., aliases={{old: new}}))",
            )
