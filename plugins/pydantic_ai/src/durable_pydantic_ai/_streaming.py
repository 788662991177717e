"""``DurableAgent.run_stream`` and ``DurableAgent.iter``.

``run_stream`` runs the durable run in a task of the caller's process and hands the caller its
events as they happen (``_stream_result``): pydantic-ai's own ``run_stream`` cannot be the durable
run, because under a durability capability a model request's stream is consumed inside its step and
the caller only sees the finished response; this taps the stream inside the step instead.

``iter`` hands the caller pydantic-ai's ``AgentRun`` to drive node by node. It is durable only inside
an enclosing durable run (a ``@wf.workflow`` body): there the caller's loop is workflow code,
replayed on resume, and each model request and tool call is a step of that run. Outside one it is
refused: the durable extension point (``BaseDurabilityCapability``) journals units (model requests,
tool calls, event dispatches), not the graph's node transitions, and ``AgentRun.next(node)`` lets
the caller's own code choose the next node; a worker resuming the run could not replay choices made
by a caller that has gone, so the run would be neither resumable nor a run of this agent.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai.run import AgentRun, AgentRunResult

from durable.context import current_run
from durable.errors import ConfigurationError
from durable.store import StepRecord
from durable_pydantic_ai._inputs import output_data_type
from durable_pydantic_ai._stream_result import DurableStreamedRunResult, LiveEvents

__all__ = ["LIVE", "iter_in_run", "journal_streams", "run_stream"]

LIVE: ContextVar[LiveEvents | None] = ContextVar("durable_pydantic_ai_live", default=None)
"""The channel of a ``run_stream`` call, read by the ``run`` it starts (in its own task)."""


def journal_streams(journal: Iterable[StepRecord], agent_names: Sequence[str]) -> bool | None:
    """Whether a run's model requests stream, as its journal's first one did (``None``: it has none).

    The two modes have different step names (``model.request`` / ``model.request_stream``), so a
    run keeps its mode whoever resumes it (a worker for a run begun by ``run_stream``)."""
    prefixes = [f"{name}__model.request" for name in agent_names]
    for step in journal:
        task: str = step.task
        for prefix in prefixes:
            if task.startswith(prefix):
                return task[len(prefix) :].startswith("_stream")
    return None


def _output_adapter(spec: Any) -> Callable[[], TypeAdapter[Any] | None]:
    def adapter() -> TypeAdapter[Any] | None:
        data_type = output_data_type(spec)
        return None if data_type is str else TypeAdapter(data_type)

    return adapter


@asynccontextmanager
async def run_stream(
    run: Callable[..., Coroutine[Any, Any, AgentRunResult[Any]]],
    new_run_id: Callable[[], str],
    output_spec: Any,
    user_prompt: Any,
    run_id: str | None,
    kwargs: dict[str, Any],
) -> AsyncIterator[DurableStreamedRunResult[Any]]:
    """``run(user_prompt, run_id=run_id, **kwargs)`` in a task, its events going to the caller.

    Leaving the block waits for the run to end (it is the caller's run: nobody else executes it);
    an exception in the block cancels it, and the run stays resumable from its journal.
    """
    if run_id is None and current_run() is None:
        run_id = new_run_id()
    live = LiveEvents()
    context = contextvars.copy_context()
    context.run(LIVE.set, live)
    task: asyncio.Task[AgentRunResult[Any]] = asyncio.create_task(
        run(user_prompt, run_id=run_id, **kwargs), context=context
    )
    task.add_done_callback(lambda _: live.close())
    result: DurableStreamedRunResult[Any] = DurableStreamedRunResult(
        run_id, live, task, _output_adapter(output_spec)
    )
    try:
        yield result
    except BaseException:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    await task


def iter_in_run(
    agent_name: str, iterate: Callable[[], Any]
) -> AbstractAsyncContextManager[AgentRun[Any, Any]]:
    """``iterate()`` (the wrapped agent's ``iter`` with the durable capabilities), refused at once
    outside an enclosing durable run."""
    if current_run() is None:
        raise ConfigurationError(
            f"DurableAgent {agent_name!r}.iter drives the agent's graph from the caller's code, which a "
            "durable run can replay only when it is workflow code: call it inside a @wf.workflow body "
            "(each model request and tool call is then a step of that run), or use run() / run_stream() "
            "for a durable run of its own. pydantic-ai's durability capability journals model requests, "
            "tool calls and event dispatches, not the graph's node transitions that AgentRun.next(node) "
            "lets a caller choose"
        )
    cm: AbstractAsyncContextManager[AgentRun[Any, Any]] = iterate()
    return cm
