"""``DurableAgent``: an existing pydantic-ai agent whose runs are durable runs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from typing import Any, NoReturn

from pydantic import TypeAdapter
from pydantic_ai import Agent, RunContext
from pydantic_ai.agent import AbstractAgent, EventStreamHandler, WrapperAgent
from pydantic_ai.capabilities import AbstractCapability, RequestInput
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, UserContent
from pydantic_ai.models import Model
from pydantic_ai.output import OutputDataT
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import AgentDepsT, DeferredToolRequests, DeferredToolResults, Tool

from durable import RunRecord, TaskFunction, Workflow
from durable.context import current_run
from durable.errors import ConfigurationError, UnknownRunError
from durable.store import StepRecord
from durable_pydantic_ai._aliases import Aliases
from durable_pydantic_ai._call import CALL, PROMPT_ADAPTER, Call, refuse_unrecordable, stored_inputs
from durable_pydantic_ai._capability import DurableCapability, ResumeToken, escape_key_part
from durable_pydantic_ai._config import TaskConfig, resolve
from durable_pydantic_ai._events import EVENTS_STREAM
from durable_pydantic_ai._inputs import DepsFactory, OutputTypes, RunRecorder, output_data_type, output_name
from durable_pydantic_ai._registry import register
from durable_pydantic_ai._stream_result import DurableStreamedRunResult, LiveEvents
from durable_pydantic_ai._streaming import LIVE, iter_in_run, journal_streams, run_stream
from durable_pydantic_ai._tools import find_plain_tool, run_plain_tool

__all__ = ["ApprovalHandler", "DurableAgent"]

ApprovalHandler = Callable[
    [RunContext[Any], DeferredToolRequests, ResumeToken], Awaitable[DeferredToolResults | None]
]
"""Called once per approval wait (its answer is journaled): answer at once, or hand the token to
whoever decides and return ``None`` to wait for ``wf.complete(token.run_id, token.signal, ...)``."""


class DurableAgent(WrapperAgent[AgentDepsT, OutputDataT]):
    """Wraps an agent so that each ``run`` is a durable run of ``wf``.

    Every model request, tool call and event-stream dispatch is its own step: after a crash, the
    same ``run_id`` replays the finished requests from the store (no model call is repeated) and
    re-executes only what had not finished. A finished run returns its stored result.

    What is recorded with a run, and what a worker needs to finish it: ``_inputs``. In short,
    every argument that is data is recorded (the model by its alias in ``models``, the output type
    by its name in ``output_types``, settings, limits, instructions, metadata); the deps never are
    (only what ``record_deps`` keeps of them), and a process without the caller rebuilds them with
    ``deps_factory(run_id, recorded)``. A run needing what cannot be rebuilt is refused before any
    model request, with ``RunArgumentsMissing``, and stays resumable.

    Run ids: ``run_id=`` names the run; without it, inside an enclosing durable run the agent run
    is a child run with an id derived from the parent's (deterministic on replay), and outside
    one a fresh id is generated (so it cannot be resumed unless you pass one).

    Deferred tools (``requires_approval=True``, ``CallDeferred``, external tools) wait for durable
    signal ``approval_signal`` (``wf.complete(run_id, "approval", {"approvals": {call_id: True}})``);
    pass ``handle_deferred=False`` to end the run with ``DeferredToolRequests`` instead.

    Streaming: ``async with durable_agent.run_stream(...) as result`` streams text and output as the
    model produces them; a run that streams (``run_stream``, an event stream handler,
    ``stream_events=True``) also writes its events to its durable stream ``events_stream``
    (``"events"``; item format: ``durable_pydantic_ai._events``), for ``wf.read_stream(run_id, "events")``
    in any process. A run keeps the mode its journal started with (``model.request`` or
    ``model.request_stream`` steps).

    Renames: ``aliases={"old": "new"}`` maps an old agent name, toolset id or tool name to the current
    one, so runs recorded under the old name replay; ``added_tools=[...]`` names tools added since
    runs in flight were recorded (``_aliases``).

    A pydantic-ai ``WrapperAgent``: ``model``, ``toolsets``, ``output_type``, ``override``,
    ``run_stream_events`` and ``run_stream`` work; ``iter`` works inside an enclosing durable run
    only (``_streaming`` says why); ``realtime`` is refused with ``ConfigurationError``.
    """

    def __init__(
        self,
        agent: AbstractAgent[AgentDepsT, OutputDataT],
        wf: Workflow,
        *,
        name: str | None = None,
        model_task_config: TaskConfig | None = None,
        tool_task_config: TaskConfig | None = None,
        mcp_task_config: TaskConfig | None = None,
        event_stream_handler_task_config: TaskConfig | None = None,
        event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
        models: Mapping[str, Model] | None = None,
        output_types: Sequence[Any] | Mapping[str, Any] | None = None,
        deps_factory: DepsFactory | None = None,
        record_deps: Callable[[AgentDepsT], Any] | bool = False,
        approval_signal: str = "approval",
        on_approval_request: ApprovalHandler | None = None,
        handle_deferred: bool = True,
        aliases: Mapping[str, str] | None = None,
        added_tools: Sequence[str] = (),
        stream_events: bool = False,
        events_stream: str | None = EVENTS_STREAM,
    ) -> None:
        super().__init__(agent)
        agent_name = name or agent.name
        if not agent_name:
            raise ConfigurationError(
                "DurableAgent needs a name: it identifies the agent's runs and persisted step names, so two "
                "agents must not share one. Pass Agent(..., name='...') or "
                "DurableAgent(agent, wf, name='...')"
            )
        if not agent_name.isprintable():
            raise ConfigurationError(f"DurableAgent name {agent_name!r} must be printable")
        self._name = agent_name
        self.workflow = wf
        self.aliases = Aliases(agent_name, aliases, added_tools)
        self._stream_events = stream_events
        self._events_stream = events_stream
        self._models: dict[str, Model] = dict(models or {})
        self._capability_options: dict[str, Any] = {
            "name": agent_name,
            "model_task_config": model_task_config,
            "tool_task_config": tool_task_config,
            "mcp_task_config": mcp_task_config,
            "event_stream_handler_task_config": event_stream_handler_task_config,
            "models": models,
            "aliases": self.aliases,
        }
        self._check_bindable(event_stream_handler)
        self._event_stream_handler = event_stream_handler
        self.approval_signal = approval_signal
        self._on_approval_request = on_approval_request
        self._handle_deferred = handle_deferred
        self._recorder = RunRecorder(
            agent_name,
            agent.model,
            self._models,
            OutputTypes(agent_name, agent.output_type, output_types),
            agent.deps_type,
            deps_factory,
            record_deps,
        )
        self._overrides: ContextVar[Mapping[str, Any] | None] = ContextVar(
            f"durable_agent_overrides:{agent_name}", default=None
        )
        self._adapters: dict[Any, TypeAdapter[Any]] = {}
        self.workflow_name = f"pydantic_ai.{escape_key_part(agent_name)}"
        self._run_workflow = register(self, self._run_body)
        # Runs started under an old name are runs of workflow pydantic_ai.<old>: resumed by this agent.
        self._old_workflow_names = [
            f"pydantic_ai.{escape_key_part(old)}" for old in self.aliases.names(agent_name)[1:]
        ]
        for old_name in self._old_workflow_names:
            register(self, self._run_body, workflow_name=old_name)
        tool_config = resolve(tool_task_config, wf.default_retries, wf.default_backoff)
        self._tool_call_task: TaskFunction[[str, dict[str, Any]], Any] = wf.task(
            name=f"{escape_key_part(agent_name)}.tool_call",
            retries=tool_config.retries,
            backoff=tool_config.backoff,
            retry_on=tool_config.retry_on,
            timeout=tool_config.timeout,
        )(self._run_tool)

    def _check_bindable(self, event_stream_handler: EventStreamHandler[Any] | None) -> None:
        """Bind the capability once, so that what would fail every run fails here: no model, the
        reserved ``models={'default': ...}`` key, a leaf toolset (function, MCP) without an ``id``."""
        try:
            DurableCapability(
                self.workflow, event_stream_handler=event_stream_handler, **self._capability_options
            ).for_agent(self.wrapped)
        except UserError as exc:
            raise ConfigurationError(f"DurableAgent {self._name!r}: {exc}") from None

    # -- the agent's properties --------------------------------------------------------------

    @property
    def name(self) -> str | None:
        return self._name

    @name.setter
    def name(self, value: str | None) -> None:
        raise ConfigurationError(
            f"DurableAgent {self._name!r}: the name identifies the agent's runs and step names and cannot "
            "change; build another DurableAgent(agent, wf, name=...) for another name"
        )

    @property
    def event_stream_handler(self) -> EventStreamHandler[AgentDepsT] | None:
        return self._event_stream_handler or self.wrapped.event_stream_handler

    async def __aenter__(self) -> DurableAgent[AgentDepsT, OutputDataT]:
        await self.wrapped.__aenter__()
        return self

    # -- running -----------------------------------------------------------------------------

    async def run(  # type: ignore[override]
        self,
        user_prompt: str | Sequence[UserContent] | None = None,
        *,
        output_type: Any = None,
        conversation: Any = None,
        message_history: Sequence[ModelMessage] | None = None,
        deferred_tool_results: DeferredToolResults | None = None,
        conversation_id: str | None = None,
        run_id: str | None = None,
        model: Model | str | None = None,
        instructions: Any = None,
        deps: Any = None,
        model_settings: Any = None,
        usage_limits: Any = None,
        cancellation_token: Any = None,
        timeout: float | None = None,
        usage: Any = None,
        metadata: Any = None,
        retries: Any = None,
        infer_name: bool = True,
        toolsets: Sequence[Any] | None = None,
        event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
        capabilities: Sequence[AbstractCapability[AgentDepsT]] | None = None,
        workspace: Any = None,
        spec: Any = None,
    ) -> AgentRunResult[Any]:
        """Run the agent as durable run ``run_id`` (or resume it, or return its stored result).

        The arguments are pydantic-ai's. Those that are data are recorded with the run, so a
        worker or ``resume`` finishes it as called; the rest (deps, callables, capabilities)
        come from this call, or, for the deps, from ``deps_factory`` in a process without it.
        """
        call = self._prepare(
            run_id,
            user_prompt,
            message_history,
            {
                "output_type": output_type,
                "deferred_tool_results": deferred_tool_results,
                "conversation_id": conversation_id,
                "model": model,
                "instructions": instructions,
                "deps": deps,
                "model_settings": model_settings,
                "usage_limits": usage_limits,
                "timeout": timeout,
                "usage": usage,
                "metadata": metadata,
                "retries": retries,
                "toolsets": toolsets,
                "workspace": workspace,
                "spec": spec,
            },
            conversation=conversation,
            cancellation_token=cancellation_token,
            event_stream_handler=event_stream_handler,
            capabilities=capabilities,
        )
        call.live = LIVE.get()
        LIVE.set(None)  # this run's: a run it starts (a tool's agent) streams to no one
        if run_id is None and current_run() is None:
            run_id = self.run_id_for_new_run()
        token = CALL.set(call)
        try:
            data = await self._run_workflow.call(run_id, (), call.inputs)
        finally:
            CALL.reset(token)
        result: AgentRunResult[Any] = self._result_adapter(call.output_spec).validate_python(data)
        return result

    def run_sync(  # type: ignore[override]
        self, user_prompt: str | Sequence[UserContent] | None = None, **kwargs: Any
    ) -> AgentRunResult[Any]:
        """``run`` in a new event loop, for synchronous code (never from inside a running loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(user_prompt, **kwargs))
        raise ConfigurationError(
            f"DurableAgent {self._name!r}: run_sync was called inside a running event loop (async code, a "
            "notebook, an async web handler); it would need a second loop for the run's store. There, use "
            "`await durable_agent.run(...)`"
        )

    async def start(
        self,
        user_prompt: str | Sequence[UserContent] | None = None,
        *,
        run_id: str | None = None,
        message_history: Sequence[ModelMessage] | None = None,
        **arguments: Any,
    ) -> str:
        """Record a pending run for a worker (``durable worker``) and return its id at once.

        Takes ``run``'s arguments. A worker has only what is recorded, so a run whose arguments
        it could not rebuild (deps without ``deps_factory``, a callable, a capability) is refused
        here. Idempotent for the same id and arguments; ``wait_for(run_id)`` gets the result.
        """
        for live in ("event_stream_handler", "capabilities"):
            if arguments.get(live):
                raise ConfigurationError(
                    f"DurableAgent {self._name!r}.start: {live}= belongs to a caller that runs the agent, "
                    f"and a worker runs this one; give it to DurableAgent(...) or the Agent, or use run()"
                )
        conversation = arguments.pop("conversation", None)
        cancellation_token = arguments.pop("cancellation_token", None)
        arguments.pop("infer_name", None)
        call = self._prepare(
            run_id,
            user_prompt,
            message_history,
            arguments,
            conversation=conversation,
            cancellation_token=cancellation_token,
        )
        options = call.inputs["options"] or {}
        needs = list(options.get("needs", ()))
        if "deps" in options and not self._recorder.rebuilds_deps:
            needs.insert(0, "deps")
        if needs:
            raise ConfigurationError(
                f"DurableAgent {self._name!r}.start: a worker runs this run and would need "
                f"{', '.join(needs)}, which cannot be recorded (give DurableAgent a deps_factory for the "
                "deps); run it with run(...) instead"
            )
        from durable import _runner
        from durable._workflow_function import check_run_id

        wfn = self._run_workflow
        run_id = _runner.caller_run_id(check_run_id(run_id or self.run_id_for_new_run(), wfn.name), wfn.name)
        return await _runner.enqueue(self.workflow.executor, wfn, run_id, call.inputs)

    async def resume(self, run_id: str) -> AgentRunResult[Any]:
        """``wf.resume(run_id)`` for a run of this agent, in this process, as an ``AgentRunResult``.

        The run continues from its journal with its recorded arguments and deps from
        ``deps_factory``; a completed run returns its result."""
        spec = await self._recorded_output(run_id)
        data = await self.workflow.resume(run_id)
        result: AgentRunResult[Any] = self._result_adapter(spec).validate_python(data)
        return result

    async def wait_for(self, run_id: str, *, timeout: float | None = None) -> AgentRunResult[Any]:
        """``wf.wait_for(run_id)`` for a run of this agent (a worker executes it), as an
        ``AgentRunResult``."""
        spec = await self._recorded_output(run_id)
        data = await self.workflow.wait_for(run_id, timeout=timeout)
        result: AgentRunResult[Any] = self._result_adapter(spec).validate_python(data)
        return result

    def run_id_for_new_run(self) -> str:
        return f"{self._name}-{uuid.uuid4().hex}"

    # -- what pydantic-ai offers and a durable run cannot be ----------------------------------

    def run_stream(  # type: ignore[override]
        self,
        user_prompt: str | Sequence[UserContent] | None = None,
        *,
        run_id: str | None = None,
        output_type: Any = None,
        **kwargs: Any,
    ) -> AbstractAsyncContextManager[DurableStreamedRunResult[Any]]:
        """``async with durable_agent.run_stream(prompt, run_id=...) as result``: ``run``'s arguments;
        ``result.stream_text()`` / ``stream_output()`` / ``stream_events()`` yield while the model
        produces (requests replayed from the journal at once), ``await result.get_output()`` ends it.

        Each model request is a ``model.request_stream`` step with its full response; its events
        also go to the run's durable stream ``events_stream``. Leaving the block waits for the run;
        an exception in it cancels the run, which stays resumable (``run_stream`` again, ``resume``,
        a worker)."""
        spec = self.wrapped.output_type if output_type is None else output_type
        return run_stream(
            self.run,
            self.run_id_for_new_run,
            spec,
            user_prompt,
            run_id,
            {"output_type": output_type, **kwargs},
        )

    def iter(  # type: ignore[override]
        self, user_prompt: str | Sequence[UserContent] | None = None, **kwargs: Any
    ) -> AbstractAsyncContextManager[Any]:
        """pydantic-ai's ``iter``, inside an enclosing durable run only (a ``@wf.workflow`` body): the
        loop is then workflow code and each model request and tool call is a step of that run.
        Outside one: ``ConfigurationError`` (``_streaming`` says why)."""
        extra = list(kwargs.pop("capabilities", None) or ())
        handler = kwargs.pop("event_stream_handler", None)

        def iterate() -> Any:
            return self.wrapped.iter(
                user_prompt,
                **kwargs,
                capabilities=[*extra, *self._capabilities(handler, [], None)],
            )

        return iter_in_run(self._name, iterate)

    def realtime(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ConfigurationError(
            "DurableAgent.realtime is not durable: a realtime session is a live connection that cannot be "
            "replayed. Open it on the plain agent (durable_agent.wrapped.realtime(...)), outside durable runs"
        )

    @contextmanager
    def override(self, **overrides: Any) -> Iterator[None]:
        """``agent.override(...)``, with ``model=`` also naming an alias of ``models``.

        A run started under an override of its model records that model; under any other
        override (deps, instructions, ...) it records that it needs it, so only a process under
        the same override resumes it."""
        passed = {key: value for key, value in overrides.items() if not (key == "spec" and value is None)}
        model = passed.get("model")
        if isinstance(model, str) and model in self._models:
            passed["model"] = self._models[model]
        active = {**(self._overrides.get() or {}), **overrides}
        token = self._overrides.set(active)
        try:
            with self.wrapped.override(**passed):
                yield
        finally:
            self._overrides.reset(token)

    # -- deferred tools ----------------------------------------------------------------------

    async def signal(self, name: str, *, timeout: float | None = None, poll: float | None = None) -> Any:
        """``wf.signal(name)`` of the agent's Workflow: wait durably for external input (a human
        approval) inside a durable run. ``poll`` is accepted for python-durable 0.2 code and ignored
        (see ``Workflow.signal``)."""
        return await self.workflow.signal(name, timeout=timeout, poll=poll)

    async def approve(
        self,
        run_id: str,
        approvals: Mapping[str, bool | Any] | None = None,
        *,
        calls: Mapping[str, Any] | None = None,
        delivery_id: str = "",
    ) -> bool:
        """Answer run ``run_id``'s pending deferred tool calls (``{tool_call_id: True/False}``;
        ``calls={tool_call_id: result}`` for external and deferred tools)."""
        results = DeferredToolResults(approvals=dict(approvals or {}), calls=dict(calls or {}))
        payload = TypeAdapter(DeferredToolResults).dump_python(results, mode="json")
        return await self.workflow.complete(run_id, self.approval_signal, payload, delivery_id=delivery_id)

    async def resolve(self, token: ResumeToken | str, results: DeferredToolResults) -> bool:
        """Answer the wait that handed out ``token``."""
        parsed = ResumeToken.parse(token) if isinstance(token, str) else token
        payload = TypeAdapter(DeferredToolResults).dump_python(results, mode="json")
        return await self.workflow.complete(
            parsed.run_id, parsed.signal, payload, delivery_id=parsed.delivery_id
        )

    # -- tools -------------------------------------------------------------------------------

    def _agent(self) -> Agent[Any, Any]:
        if not isinstance(self.wrapped, Agent):
            raise ConfigurationError(
                f"{type(self.wrapped).__name__} has no tool decorators; register tools on it"
            )
        return self.wrapped

    def tool(self, *args: Any, **kwargs: Any) -> Any:
        """``agent.tool`` of the wrapped agent: the tool's calls are steps of the durable run.

        Called with a tool's name, ``await durable.tool(tool_name, tool_args, step_id=None)`` is
        python-durable 0.2's durable tool call: it runs the agent's tool ``tool_name`` (one that
        takes no ``RunContext``) with the arguments ``tool_args`` as a checkpointed step of the
        current run, retried as ``tool_task_config`` says; outside a run it just calls the tool.
        """
        if (args and isinstance(args[0], str)) or "tool_name" in kwargs:
            return self._call_tool(*args, **kwargs)
        return self._agent().tool(*args, **kwargs)

    def tool_plain(self, *args: Any, **kwargs: Any) -> Any:
        """``agent.tool_plain`` of the wrapped agent."""
        return self._agent().tool_plain(*args, **kwargs)

    async def _call_tool(
        self, tool_name: str, tool_args: Mapping[str, Any] | None = None, *, step_id: str | None = None
    ) -> Any:
        self._find_tool(tool_name)  # an unknown tool fails here, not as a failed (and retried) step
        arguments = dict(tool_args or {})
        if step_id is None:
            return await self._tool_call_task(tool_name, arguments)
        return await self._tool_call_task.with_step_id(step_id)(tool_name, arguments)

    async def _run_tool(self, tool_name: str, tool_args: dict[str, Any]) -> Any:
        return await run_plain_tool(self._find_tool(tool_name), tool_args)

    def _find_tool(self, tool_name: str) -> Tool[Any]:
        return find_plain_tool(self._name, self.wrapped.toolsets, tool_name)

    # -- internals ---------------------------------------------------------------------------

    def _prepare(
        self,
        run_id: str | None,
        user_prompt: str | Sequence[UserContent] | None,
        message_history: Sequence[ModelMessage] | None,
        arguments: dict[str, Any],
        *,
        conversation: Any = None,
        cancellation_token: Any = None,
        event_stream_handler: EventStreamHandler[Any] | None = None,
        capabilities: Sequence[AbstractCapability[Any]] | None = None,
    ) -> Call:
        """The stored inputs and the caller's arguments of one call."""
        refuse_unrecordable(self._name, conversation, cancellation_token)
        live = {key: value for key, value in arguments.items() if value is not None}
        effective = dict(live)
        overrides = self._overrides.get() or {}
        for key in ("model", "deps"):
            if key in overrides:
                effective[key] = overrides[key]
        overridden = sorted(key for key in overrides if key not in ("model", "deps", "name"))
        options = self._recorder.record(run_id, {**effective, "capabilities": capabilities}, overridden)
        inputs = stored_inputs(user_prompt, message_history, options)
        live["user_prompt"] = user_prompt
        live["message_history"] = message_history
        return Call(
            workflow_name=self.workflow_name,
            inputs=inputs,
            kwargs=live,
            output_spec=self.wrapped.output_type if live.get("output_type") is None else live["output_type"],
            event_stream_handler=event_stream_handler,
            capabilities=list(capabilities or ()),
        )

    async def _run_body(self, prompt: Any, message_history: Any, options: Any) -> Any:
        """The durable run's body: the wrapped agent's run, with the caller's arguments when the
        caller runs it, else with the recorded ones (refused before any model request if they
        are not enough)."""
        ctx = current_run()
        assert ctx is not None
        call = CALL.get()
        if call is not None and call.workflow_name == self.workflow_name:
            CALL.set(None)  # consumed: a nested run of another agent must not take it
            kwargs = dict(call.kwargs)
            handler, extra, live = call.event_stream_handler, call.capabilities, call.live
        else:
            kwargs = await self._recorder.restore(ctx.run_id, options or {})
            kwargs["user_prompt"] = PROMPT_ADAPTER.validate_python(prompt)
            kwargs["message_history"] = (
                None if message_history is None else ModelMessagesTypeAdapter.validate_python(message_history)
            )
            handler, extra, live = None, [], None
        spec = kwargs.get("output_type")
        stream = self._streams(ctx.journal.values(), live is not None)
        result = await self.wrapped.run(
            **kwargs,
            infer_name=False,
            capabilities=self._capabilities(handler, extra, ctx.run_id, stream=stream, live=live),
        )
        return self._result_adapter(self.wrapped.output_type if spec is None else spec).dump_python(
            result, mode="json"
        )

    async def _recorded_output(self, run_id: str) -> Any:
        """The output spec run ``run_id`` was started with, from its record."""
        run: RunRecord | None = await self.workflow.get_run(run_id)
        if run is None:
            raise UnknownRunError(f"no run {run_id!r} in {self.workflow!r}", run_id=run_id)
        if run.workflow != self.workflow_name and run.workflow not in self._old_workflow_names:
            raise ConfigurationError(
                f"run {run_id!r} is a run of workflow {run.workflow!r}, not of DurableAgent {self._name!r} "
                f"({self.workflow_name!r})",
                run_id=run_id,
            )
        name, declared = output_name(json.loads(run.inputs).get("options"))
        if not declared:
            raise ConfigurationError(
                f"run {run_id!r} was started with output type {name!r}, which DurableAgent {self._name!r} "
                "does not declare, so its result cannot be rebuilt here: declare it "
                "(DurableAgent(..., output_types=[...])), or call "
                f"run(..., output_type=..., run_id={run_id!r})",
                run_id=run_id,
            )
        return self._recorder.output_types.spec_of(run_id, name)

    def _result_adapter(self, spec: Any) -> TypeAdapter[Any]:
        key = id(spec)
        adapter = self._adapters.get(key)
        if adapter is None:
            data_type = output_data_type(spec)
            adapter = TypeAdapter(AgentRunResult[data_type])  # type: ignore[valid-type]
            self._adapters[key] = adapter
        return adapter

    def _streams(self, journal: Iterable[StepRecord], asked: bool) -> bool:
        recorded = journal_streams(
            journal, [escape_key_part(name) for name in self.aliases.names(self._name)]
        )
        return (asked or self._stream_events) if recorded is None else recorded

    def _capabilities(
        self,
        handler: EventStreamHandler[Any] | None,
        extra: list[Any],
        pydantic_run_id: str | None,
        *,
        stream: bool = False,
        live: LiveEvents | None = None,
    ) -> list[AbstractCapability[Any]]:
        capabilities: list[AbstractCapability[Any]] = list(extra)
        if self._handle_deferred:
            capabilities.append(RequestInput(ask=self._ask, name=self.approval_signal))
        capabilities.append(
            DurableCapability(
                self.workflow,
                event_stream_handler=handler or self._event_stream_handler,
                pydantic_run_id=pydantic_run_id,
                stream=stream,
                events_stream=self._events_stream,
                live=live if stream else None,
                **self._capability_options,
            )
        )
        return capabilities

    async def _ask(
        self, ctx: RunContext[Any], requests: DeferredToolRequests, token: str
    ) -> DeferredToolResults | None:
        if self._on_approval_request is None:
            return None
        return await self._on_approval_request(ctx, requests, ResumeToken.parse(token))

    def __repr__(self) -> str:
        return f"<DurableAgent {self._name!r} on {self.workflow!r}>"
