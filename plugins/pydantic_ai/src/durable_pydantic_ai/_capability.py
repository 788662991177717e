"""The pydantic-ai durability capability backed by durable's step journal.

pydantic-ai's ``BaseDurabilityCapability`` owns the agent machinery (which model requests, tool
calls and event dispatches become durable units, and their JSON encoding); this module supplies
the engine side: each unit is one ``RunContext.step`` of the enclosing durable run.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from pydantic import JsonValue, TypeAdapter
from pydantic_ai import RunContext
from pydantic_ai.agent import EventStreamHandler
from pydantic_ai.capabilities import AbstractCapability, WrapRunHandler
from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    CallableOperationBackend,
    DurabilityEngineSpec,
    DurableOperationBackend,
    DurableOperationId,
    DurableOperationNamer,
    EventStreamHandlerId,
    ExternalEventError,
    ExternalEventWaiter,
    JournalOperationNamer,
    ModelRequestId,
    RoleBasedOperationConfig,
    ToolsetCallToolId,
    ToolsetValidateToolArgumentsId,
    conversation_id_from_run_id,
    external_event_scope,
    record_durable_unit,
    replay_scope,
)
from pydantic_ai.durable_exec._base import construction_toolsets
from pydantic_ai.durable_exec._operation_names import DurableInvocationName
from pydantic_ai.durable_exec._runtime_toolsets import reject_unsupported_runtime_toolsets
from pydantic_ai.messages import AgentStreamEvent
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import AgentDepsT
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_ai.toolsets._capability_owned import CapabilityOwnedToolset
from pydantic_ai.usage import RunUsage
from pydantic_core import to_jsonable_python

from durable import Workflow
from durable.context import RunContext as DurableRunContext
from durable.context import current_run
from durable.errors import DurableError, SerializationError, SignalTimeout
from durable_pydantic_ai._aliases import Aliases
from durable_pydantic_ai._config import PermanentStepError, StepConfig, TaskConfig, is_non_retryable, resolve
from durable_pydantic_ai._events import EventWriter, is_unit_event
from durable_pydantic_ai._steps import current_step_key, run_step
from durable_pydantic_ai._stream_result import LiveEvents

__all__ = ["TOOL_CONFIG_KEY", "DurableCapability", "ResumeToken", "escape_key_part"]

TOOL_CONFIG_KEY = "durable"
"""Tool metadata key for per-tool step configuration: ``metadata={"durable": TaskConfig(...)}``
(or ``False`` to run the tool without a step of its own)."""

# durable's step keys use these characters for structure (see durable._keys); user-chosen names
# (agent, toolset, tool) are escaped so that no name can produce another name's key.
_KEY_ESCAPES = {"%": "%25", "#": "%23", "/": "%2F", "@": "%40", ":": "%3A"}


def escape_key_part(text: str) -> str:
    return "".join(_KEY_ESCAPES.get(ch, ch) for ch in text)


class DurableKeyNamer(DurableOperationNamer):
    """pydantic-ai's journal naming convention, made safe for durable's step-key grammar.

    The names are compatibility data: a changed name strands runs recorded under the old one.
    ``{agent}__model.request``, ``{agent}__function_toolset__{id}.call_tool@{tool}``,
    ``{agent}__event_stream_handler``, ... (the ``:label`` of the journal namer becomes ``@label``).
    """

    def __init__(self, agent_name: str, default_model_id: str | None) -> None:
        self._journal = JournalOperationNamer(agent_name, default_model_id=default_model_id or "default")

    def operation_name(self, operation_id: DurableOperationId) -> str:
        return escape_key_part(self._journal.operation_name(operation_id))

    def invocation_name(
        self, operation_id: DurableOperationId, *, label: str | None
    ) -> DurableInvocationName:
        name = self.operation_name(operation_id)
        if isinstance(operation_id, ToolsetCallToolId) and label is not None:
            name = f"{name}@{escape_key_part(label)}"
        return DurableInvocationName(name)


def _tool_call_parts(cache_key: tuple[object, ...]) -> tuple[str | None, Any, RunContext[Any] | None]:
    """The tool name, arguments and run context carried by a tool operation's cache identity."""
    name = next((part for part in cache_key if isinstance(part, str)), None)
    args = next((part for part in cache_key if isinstance(part, dict)), None)
    ctx = next((part for part in cache_key if isinstance(part, RunContext)), None)
    return name, args, ctx


_USAGE_MARK = "durable_pydantic_ai:usage"
"""Key of a tool step's recorded value that carries the usage its call added to ``ctx.usage``
(``{_USAGE_MARK: usage, "value": payload}``); a step whose tool added none stores the bare payload."""
_USAGE_ADAPTER: TypeAdapter[RunUsage] = TypeAdapter(RunUsage)


class _ToolUsage:
    """What a tool call adds to its run's usage (an agent it delegates to with ``usage=ctx.usage``),
    measured per call and recorded with the call's checkpoint, so a replay adds it again.

    Each attempt gets its own copy of the run's usage as ``ctx.usage`` (the call's own context, a
    copy pydantic-ai makes per tool call), so calls running in parallel do not count each other's
    usage; what the copy gained is added to the run's usage when the attempt ends.
    """

    def __init__(self, ctx: RunContext[Any]) -> None:
        self._ctx = ctx
        self.added = RunUsage()

    async def measure(self, body: Callable[[], Awaitable[object]]) -> object:
        shared = self._ctx.usage
        start = copy.copy(shared)
        own = copy.copy(shared)
        self._ctx.usage = own
        try:
            return await body()
        finally:
            self._ctx.usage = shared
            delta = own - start
            shared.incr(delta)
            self.added.incr(delta)

    def wrap(self, payload: object) -> object:
        if not (self.added.has_values() or self.added.requests or self.added.tool_calls):
            return payload
        return {_USAGE_MARK: _USAGE_ADAPTER.dump_python(self.added, mode="json"), "value": payload}

    def unwrap(self, recorded: object, *, replayed: bool) -> object:
        if not (isinstance(recorded, dict) and recorded.keys() == {_USAGE_MARK, "value"}):
            return recorded
        if replayed:
            self._ctx.usage.incr(_USAGE_ADAPTER.validate_python(recorded[_USAGE_MARK]))
        return recorded["value"]


class _DurableStepBackend(CallableOperationBackend[TaskConfig]):
    """Runs each pydantic-ai durable unit as one checkpointed step of the current durable run."""

    def __init__(self, owner: DurableCapability[Any], config: RoleBasedOperationConfig[TaskConfig]) -> None:
        super().__init__(namer=DurableKeyNamer(owner.name, owner.default_model_id), config=config)
        self._owner = owner

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: TaskConfig,
    ) -> object:
        ctx = current_run()
        if ctx is None:
            # Only reachable when pydantic-ai routes a unit outside a durable run: nothing to record.
            return await body()
        owner = self._owner
        step = owner.step_config(config)
        names = self._names(operation_id, name, cache_key)
        digests: list[Any] = [None]
        usage: _ToolUsage | None = None
        call: str | None = None
        if isinstance(operation_id, ToolsetCallToolId | ToolsetValidateToolArgumentsId):
            tool_name, args, tool_ctx = _tool_call_parts(cache_key)
            call_id = None if tool_ctx is None else tool_ctx.tool_call_id
            # The call id comes from the (journaled) model response, so it is the same on replay;
            # keying on it makes parallel tool calls independent of the order they get scheduled in.
            if call_id:
                call = f"({escape_key_part(call_id)})"
                names = [f"{each}{call}" for each in names]
            arguments = to_jsonable_python(args, fallback=repr)
            tools = [tool_name] if tool_name is None else owner.aliases.names(tool_name)
            digests = [[tool, arguments] for tool in tools]
            if isinstance(operation_id, ToolsetCallToolId) and call_id and tool_ctx is not None:
                usage = _ToolUsage(tool_ctx)
        elif isinstance(operation_id, ModelRequestId):
            # Until it returns: a request that fails mid-stream is replayed partially by pydantic-ai
            # before its error; those events are not the run's (its retry or resume streams again).
            owner.last_request = None
            parameters = next((part for part in cache_key if isinstance(part, ModelRequestParameters)), None)
            tools = [] if parameters is None else [t.name for t in parameters.function_tools]
            outputs = [] if parameters is None else [t.name for t in parameters.output_tools]
            if owner.live is not None:
                owner.live.output_tools.update(outputs)
            model = [operation_id.model_id, operation_id.streaming]
            # The tool list is part of the request: a run recorded with other tools (a tool renamed
            # without an alias, one added without added_tools) is reported at its first model
            # request. Requests recorded before the tool list was digested (model and streaming
            # only) still replay.
            digests = [[*model, listed, sorted(outputs)] for listed in owner.aliases.tool_lists(tools)]
            digests.append(model)
        elif isinstance(operation_id, EventStreamHandlerId):
            digests = ["event"]

        executed = False

        async def attempt() -> object:
            nonlocal executed
            executed = True
            try:
                if usage is None:
                    return await body()
                return usage.wrap(await usage.measure(body))
            except Exception as exc:
                if is_non_retryable(exc, step.non_retryable) and not isinstance(exc, DurableError):
                    raise PermanentStepError(exc) from exc
                raise

        try:
            key, value = await run_step(ctx, names, digests, attempt, step, call=call)
        except PermanentStepError as exc:
            raise exc.original from None
        record_durable_unit(executed=executed)
        if isinstance(operation_id, ModelRequestId):
            owner.last_request = (key, not executed)
            value = owner.aliases.rewrite_response(value)
        return value if usage is None else usage.unwrap(value, replayed=not executed)

    def _names(self, operation_id: DurableOperationId, name: str, cache_key: tuple[object, ...]) -> list[str]:
        """The unit's current name, then each name an alias says it was recorded under."""
        aliases = self._owner.aliases
        if not aliases:
            return [name]
        tool_name = _tool_call_parts(cache_key)[0] if isinstance(operation_id, ToolsetCallToolId) else None
        names = [name]
        for agent_name in aliases.names(self._owner.name or ""):
            namer = DurableKeyNamer(agent_name, self._owner.default_model_id)
            for variant in aliases.operation_ids(operation_id):
                labels = [None] if tool_name is None else aliases.names(tool_name)
                for label in labels:
                    candidate = namer.invocation_name(variant, label=label).operation_name
                    if candidate not in names:
                        names.append(candidate)
        return names


_ONCE = StepConfig(retries=0, backoff=None, retry_on=None, timeout=None)
"""The agent's own bookkeeping steps (an approval's ask, the run's start time): not retried."""


class ResumeToken:
    """What an approval request hands out: which run waits, and for which delivery of which signal.

    ``str(token)`` is JSON; ``ResumeToken.parse(text)`` reads it back. Deliver the answer with
    ``wf.complete(token.run_id, token.signal, payload, delivery_id=token.delivery_id)``.
    """

    __slots__ = ("index", "run_id", "signal")

    def __init__(self, run_id: str, signal: str, index: int) -> None:
        self.run_id = run_id
        self.signal = signal
        self.index = index

    @property
    def delivery_id(self) -> str:
        return f"{self.signal}#{self.index}"

    def __str__(self) -> str:
        return json.dumps({"run_id": self.run_id, "signal": self.signal, "index": self.index})

    def __repr__(self) -> str:
        return f"ResumeToken(run_id={self.run_id!r}, signal={self.signal!r}, index={self.index})"

    @classmethod
    def parse(cls, text: str) -> ResumeToken:
        data = json.loads(text)
        return cls(str(data["run_id"]), str(data["signal"]), int(data["index"]))


class _SignalWaiter(ExternalEventWaiter):
    """pydantic-ai's external-event waits (approvals, ``RequestInput``) as durable signals.

    ``ask`` runs once in its own step (its answer is journaled); if it hands the token on instead of
    answering, the run waits for signal ``name`` with ``wf.signal``: the delivery is journaled too,
    so a replay neither asks again nor waits again, and a wait survives a restart of the process.
    """

    def __init__(self, owner: DurableCapability[Any]) -> None:
        self._owner = owner

    async def wait(
        self,
        name: str,
        *,
        ask: Callable[[str], Awaitable[JsonValue]],
        timeout: timedelta | None,
    ) -> JsonValue:
        ctx = current_run()
        if ctx is None:  # pragma: no cover - the waiter is installed only inside a durable run
            raise ExternalEventError("durable approval waits need an enclosing durable run")
        # The n-th wait on a name receives the n-th delivery (durable's signal contract).
        token = ResumeToken(ctx.run_id, name, ctx.signal_counts.get(name, 0))
        ask_names = self._owner.agent_step_names(f"__external_event@{escape_key_part(name)}.ask")

        async def call_ask() -> JsonValue:
            return await ask(str(token))

        _, recorded = await run_step(ctx, ask_names, [[name, token.index]], call_ask, _ONCE)
        answer = cast(JsonValue, recorded)
        if answer is not None:
            return answer
        try:
            payload = await self._owner.workflow.signal(
                name, timeout=None if timeout is None else timeout.total_seconds()
            )
        except SignalTimeout as exc:
            raise ExternalEventError(str(exc)) from exc
        return cast(JsonValue, to_jsonable_python(payload))


class DurableCapability(BaseDurabilityCapability[AgentDepsT]):
    """Makes an agent durable on a ``durable.Workflow``: inside a durable run, every model request,
    tool call and event-stream dispatch is its own checkpointed step. Outside one it does nothing.

    ``Agent(..., name="assistant", capabilities=[DurableCapability(wf)])`` for agents run inside your
    own ``@wf.workflow``; ``DurableAgent`` attaches it for you and starts the run itself.

    ``aliases``: old agent names, toolset ids and tool names -> current ones (``_aliases``).
    ``stream=True`` streams every model request (``model.request_stream`` steps), as an event stream
    handler does; a run that streams appends its events to the durable stream ``events_stream`` if
    given (``_events``: the item format and why each is written once) and hands them to ``live``
    (a ``run_stream`` caller) as the model produces them.
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="durable",
        durable_unit_noun="step",
        durable_unit_plural="steps",
        durable_container_noun="workflow run",
        codec=JSON_CODEC,
        serialization_failure=lambda exc: SerializationError(f"a pydantic-ai value cannot be stored: {exc}"),
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        # Steps run in the run's own process and task, so an MCP session can live for the whole run.
        toolset_lifecycles={
            "function": "enter-always",
            "mcp": "enter-in-durable-unit",
            "dynamic": "enter-never",
        },
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        tool_call_result_upgrade_lenient=False,
        journal_discovery=True,
        # Tool steps are keyed by tool call id, so concurrent calls need no serialisation.
        sequential_tools_in_durable_context=False,
        tool_config_key=TOOL_CONFIG_KEY,
    )

    def __init__(
        self,
        workflow: Workflow,
        *,
        name: str | None = None,
        model_task_config: TaskConfig | None = None,
        tool_task_config: TaskConfig | None = None,
        mcp_task_config: TaskConfig | None = None,
        event_stream_handler_task_config: TaskConfig | None = None,
        event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
        models: Mapping[str, Model] | None = None,
        pydantic_run_id: str | None = None,
        aliases: Mapping[str, str] | Aliases | None = None,
        stream: bool = False,
        events_stream: str | None = None,
        live: LiveEvents | None = None,
    ) -> None:
        super().__init__(models=models, event_stream_handler=event_stream_handler, name=name)
        self.workflow = workflow
        self.aliases = aliases if isinstance(aliases, Aliases) else Aliases(name or "", aliases)
        """Old names (agent, toolset id, tool) -> current ones: see ``_aliases``."""
        self._stream = stream or live is not None
        self.events = None if events_stream is None else EventWriter(events_stream)
        """Writes the run's events to its durable stream ``events_stream`` when the run streams."""
        self.live = live
        """The ``run_stream`` caller's channel, when it runs the run in this process."""
        self.last_request: tuple[str, bool] | None = None
        """The step key of the last model request and whether it was replayed from the journal."""
        self._model_config: TaskConfig = dict(model_task_config or {})  # type: ignore[assignment]
        self._tool_config: TaskConfig = dict(tool_task_config or {})  # type: ignore[assignment]
        self._mcp_config: TaskConfig = dict(mcp_task_config or tool_task_config or {})  # type: ignore[assignment]
        self._event_config: TaskConfig = dict(event_stream_handler_task_config or {})  # type: ignore[assignment]
        self._pydantic_run_id = pydantic_run_id
        for config in (self._model_config, self._tool_config, self._mcp_config, self._event_config):
            self.step_config(config)  # fail at construction, not at the first step

    def agent_step_names(self, suffix: str) -> list[str]:
        """The names of one of the agent's own steps (``{agent}{suffix}``), current name first."""
        return [f"{escape_key_part(name)}{suffix}" for name in self.aliases.names(self.name or "")]

    # -- engine hooks ------------------------------------------------------------------------

    @property
    def in_durable_context(self) -> bool:
        return current_run() is not None

    def step_config(self, config: TaskConfig | None) -> StepConfig:
        return resolve(config, self.workflow.default_retries, self.workflow.default_backoff)

    def get_durable_operation_backend(self) -> DurableOperationBackend[TaskConfig]:
        def tool_config(
            operation_id: DurableOperationId, tool: object | None, tool_name: str
        ) -> TaskConfig | Literal[False]:
            kind = getattr(operation_id, "toolset_kind", "function")
            if tool is not None and _is_durable_task_tool(tool):
                # A @durable_tool checkpoints itself as a task with its own retries.
                return False
            resolved = self._build_resolve_tool_config(self._toolset_base_config(kind))(
                cast(ToolsetTool[Any] | None, tool), tool_name
            )
            return cast(TaskConfig | Literal[False], resolved)

        return _DurableStepBackend(
            self,
            RoleBasedOperationConfig(
                model=self._model_config,
                event=self._event_config,
                capability=self._tool_config,
                tool=self._tool_config,
                resolve_tool=tool_config,
            ),
        )

    def _reject_runtime_toolsets(self, toolset: AbstractToolset[AgentDepsT]) -> None:
        """pydantic-ai's guard against executing toolsets added after binding, minus the ones bound.

        The base accepts only the toolsets the agent was *constructed* with. ``DurableAgent`` binds this
        capability at the start of every run (a per-run capability), and that bind wraps every toolset
        the agent has then (``agent.toolsets``), including a ``DynamicToolset`` registered with
        ``@agent.toolset`` after construction: its tool calls are steps like any other, so rejecting it
        would refuse a toolset that is durable. Anything the bind did not wrap is still rejected.
        """
        if not self.in_durable_context or self._agent is None:
            return
        known: set[int] = set()
        bound = [*construction_toolsets(self._agent), *(w.wrapped for w in self._toolsets_by_id.values())]
        for agent_toolset in bound:
            agent_toolset.apply(lambda leaf: known.add(id(leaf)))
        runtime: list[AbstractToolset[AgentDepsT]] = []

        def collect(leaf: AbstractToolset[AgentDepsT]) -> None:
            # A CapabilityOwnedToolset is packaging; the toolset inside it is judged on its own.
            if id(leaf) not in known and not isinstance(leaf, CapabilityOwnedToolset):
                runtime.append(leaf)

        toolset.apply(collect)
        reject_unsupported_runtime_toolsets(
            runtime,
            unsupported_kinds=self.engine_spec.unsupported_runtime_toolset_kinds,
            engine=self.engine_name,
            tool_config_key=self.engine_spec.tool_config_key,
        )

    def _toolset_base_config(self, kind: Any) -> Any:
        return self._mcp_config if kind == "mcp" else self._tool_config

    def _normalize_unit_config(self, config: Any) -> Any:
        self.step_config(config)  # a bad per-tool TaskConfig fails loudly, naming the keys
        return config

    # -- streaming -----------------------------------------------------------------------------

    @property
    def has_wrap_run_event_stream(self) -> bool:
        # True makes pydantic-ai stream each model request (``model.request_stream`` steps): only
        # for runs that stream, so other runs keep their ``model.request`` step names.
        return super().has_wrap_run_event_stream or (self._stream and self.in_durable_context)

    def _publishing(self) -> bool:
        """Whether this run's events go anywhere: it streams, in a durable run, to a caller or a stream."""
        return (
            (self.live is not None or self.events is not None)
            and self.in_durable_context
            and self.has_wrap_run_event_stream
        )

    def _model_stream_event_handler(self) -> EventStreamHandler[AgentDepsT] | None:
        """The live model stream, inside the request's step: each event goes to the caller and to
        the durable stream as the model produces it, then to the run's own handler, if any."""
        inner = super()._model_stream_event_handler()
        if not self._publishing():
            return inner
        live, events = self.live, self.events

        async def publishing(
            run_ctx: RunContext[AgentDepsT], stream: AsyncIterable[AgentStreamEvent]
        ) -> None:
            ctx, key = current_run(), current_step_key()

            async def tee() -> AsyncIterator[AgentStreamEvent]:
                index = 0
                async for event in stream:
                    # The final result event is the run body's (it comes again there, in order).
                    if key is not None and is_unit_event(event):
                        if live is not None:
                            live.put_unit_event(key, index, event)
                        if events is not None and ctx is not None:
                            await events.unit_event(ctx, key, index, event)
                    index += 1
                    yield event

            published = tee()
            if inner is not None:
                await inner(run_ctx, published)
            async for _ in published:  # what the handler left: the caller and the stream want it all
                pass

        return publishing

    async def wrap_run_event_stream(
        self, ctx: RunContext[AgentDepsT], *, stream: AsyncIterable[AgentStreamEvent]
    ) -> AsyncIterable[AgentStreamEvent]:
        """The run's events in its body: the tool calls and results (and every event of a model
        request replayed from the journal) go to the caller and the durable stream."""
        events = super().wrap_run_event_stream(ctx, stream=stream)
        run = current_run()
        if run is None or not self._publishing():
            async for event in events:
                yield event
            return
        writer = self.events
        try:
            async for event in events:
                replayed = self.last_request is not None and self.last_request[1]
                if is_unit_event(event):
                    # Streamed live from the request's step already, unless the step was replayed
                    # (then its events were written to the durable stream by the run that made it).
                    if replayed and self.live is not None:
                        self.live.put(event)
                elif self.last_request is not None:
                    if self.live is not None:
                        self.live.put(event)
                    if writer is not None:
                        await writer.run_event(run, self.last_request[0], event)
                yield event
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    def get_default_run_id(self) -> str | None:
        ctx = current_run()
        if ctx is None:
            return None
        if self._pydantic_run_id is not None:
            return self._pydantic_run_id
        # Taken in call order like a step key, so the n-th agent run of a durable run gets the
        # same pydantic-ai run id on every replay.
        return f"{ctx.run_id}/{ctx.next_key(escape_key_part(self.name) + '__run')}"

    def get_default_conversation_id(self, run_id: str) -> str | None:
        return conversation_id_from_run_id(run_id) if self.in_durable_context else None

    async def get_run_start_time(self, run_id: str) -> datetime | None:
        ctx = current_run()
        if ctx is None:
            return None

        async def now() -> float:
            return time.time()

        # Journaled so that a resumed run keeps the deadline of its first attempt.
        _, started = await run_step(ctx, self.agent_step_names("__run_start_time"), [None], now, _ONCE)
        return datetime.fromtimestamp(started, UTC)

    async def wrap_run(self, ctx: RunContext[AgentDepsT], *, handler: WrapRunHandler) -> AgentRunResult[Any]:
        if not self.in_durable_context:
            return await handler()
        with replay_scope(), external_event_scope(_SignalWaiter(self)):
            result = await super().wrap_run(ctx, handler=handler)
        run = current_run()
        if self.events is not None and run is not None and self._publishing():
            await self.events.run_result(run, str(ctx.run_id), result.output)
        return result

    def for_agent(self, agent: Any) -> AbstractCapability[AgentDepsT]:
        if not (self.name or agent.name):
            raise ValueError(
                "a durable agent needs a name: it prefixes the agent's persisted step names. "
                "Pass Agent(..., name='...') or DurableAgent(agent, wf, name='...')"
            )
        return super().for_agent(agent)


def _is_durable_task_tool(tool: object) -> bool:
    call = getattr(tool, "call_func", None)
    function = getattr(getattr(call, "__self__", None), "function", None)
    return getattr(function, "__durable_task__", None) is not None


def durable_run_context() -> DurableRunContext | None:
    return current_run()
