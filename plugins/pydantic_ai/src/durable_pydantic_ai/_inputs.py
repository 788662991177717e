"""What a ``DurableAgent`` run was called with: the arguments recorded with the run, and how a
process that has only the store (a worker, ``wf.resume``) gets them back.

A run's stored inputs are ``{"prompt", "message_history", "options"}``. ``options`` holds, as
JSON, every argument of ``agent.run`` that is data: the model by its name (an alias of
``DurableAgent(models=...)`` or a model name), the output type by its name among
``DurableAgent(output_types=...)``, ``model_settings``, ``usage_limits``, ``instructions``,
``metadata``, ``usage``, ``deferred_tool_results``, ``conversation_id``, ``retries``,
``timeout``, ``spec``, external toolsets, and what ``record_deps`` keeps of the deps. Arguments
that are not data (a callable, a capability object, an undeclared output type) are listed under
``"needs"``: only the caller can give them again, so a process without the caller refuses the
run, before any model request, instead of running it differently.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from pydantic import TypeAdapter
from pydantic_ai.models import Model
from pydantic_ai.output import NativeOutput, PromptedOutput, TextOutput, ToolOutput
from pydantic_ai.tools import DeferredToolResults, ToolDefinition
from pydantic_ai.toolsets import AbstractToolset, ExternalToolset
from pydantic_ai.usage import RunUsage, UsageLimits
from pydantic_core import to_jsonable_python

from durable.errors import ConfigurationError, SerializationError

__all__ = ["DepsFactory", "OutputTypes", "RunArgumentsMissing", "RunRecorder", "output_data_type"]

DepsFactory = Callable[[str, Any], Any]
"""``deps_factory(run_id, recorded)``: the deps of run ``run_id``, rebuilt in a process that does
not have the caller's (a worker, ``wf.resume``). ``recorded`` is what ``record_deps`` kept of the
caller's deps (``None`` without it). May be ``async``."""

_TOOL_DEFS: TypeAdapter[list[ToolDefinition]] = TypeAdapter(list[ToolDefinition])
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "usage_limits": TypeAdapter(UsageLimits),
    "usage": TypeAdapter(RunUsage),
    "deferred_tool_results": TypeAdapter(DeferredToolResults),
}
# Arguments recorded as they are when they are JSON data (and listed under "needs" otherwise).
_PLAIN = ("model_settings", "instructions", "metadata", "conversation_id", "retries", "timeout", "spec")
_NOT_DATA = object()


class RunArgumentsMissing(ConfigurationError):
    """A run needs arguments its caller gave that this process cannot rebuild (deps without a
    ``deps_factory``, a callable, a capability): it is refused before any model request and stays
    resumable, by its caller or by a process that can rebuild them."""

    def __init__(self, run_id: str, missing: Sequence[str]) -> None:
        self.missing = tuple(missing)
        others = [item for item in missing if item != "deps"]
        if not others:
            message = (
                f"run {run_id!r} needs deps: give DurableAgent a deps_factory, or resume it from the caller"
            )
        else:
            message = (
                f"run {run_id!r} needs {', '.join(missing)}, which its caller gave and which cannot be "
                f"recorded: resume it from the caller (run(..., run_id={run_id!r}) with the same arguments)"
            )
            if "deps" in missing:
                message += "; a deps_factory on DurableAgent rebuilds the deps"
        super().__init__(message, run_id=run_id)


def _json_data(value: Any) -> Any:
    """``value`` as JSON if it is JSON data that comes back equal, else ``_NOT_DATA``."""
    if callable(value):
        return _NOT_DATA
    try:
        data = to_jsonable_python(value)
    except Exception:
        return _NOT_DATA
    return data if data == value else _NOT_DATA


def _spec_name(spec: Any) -> str:
    """How an undeclared output type is shown (it is never looked up by this name)."""
    return str(getattr(spec, "__qualname__", None) or getattr(spec, "__name__", None) or type(spec).__name__)


class OutputTypes:
    """The output types a ``DurableAgent``'s runs may ask for, under the names recorded with runs.

    ``output_types=[Report, Invoice]`` names each class by its ``__name__``;
    ``output_types={"report": ToolOutput(Report), ...}`` names any output spec. The agent's own
    ``output_type`` needs no name (recorded as nothing). Names are compatibility data: a run
    recorded with a name this code no longer declares is refused before it runs.
    """

    def __init__(
        self, agent_name: str, default: Any, declared: Sequence[Any] | Mapping[str, Any] | None
    ) -> None:
        self.default = default
        self._by_name: dict[str, Any] = {}
        items: list[tuple[str, Any]]
        if declared is None:
            items = []
        elif isinstance(declared, Mapping):
            items = [(str(name), spec) for name, spec in declared.items()]
        else:
            items = []
            for spec in declared:
                if not isinstance(spec, type):
                    raise ConfigurationError(
                        f"DurableAgent {agent_name!r}: output type {spec!r} has no name to record with a "
                        "run; "
                        f"name it: output_types={{'name': {spec!r}, ...}}"
                    )
                items.append((spec.__name__, spec))
        for name, spec in items:
            if name in self._by_name:
                raise ConfigurationError(
                    f"DurableAgent {agent_name!r}: two output types are named {name!r} "
                    f"({self._by_name[name]!r} and {spec!r}); pass output_types={{name: type}} to tell "
                    "them apart"
                )
            self._by_name[name] = spec
        self._agent_name = agent_name

    def name_of(self, spec: Any) -> tuple[str | None, bool]:
        """``(name, declared)`` for a run's ``output_type`` (``None``: the agent's own)."""
        if spec is None or _same(spec, self.default):
            return None, True
        for name, declared in self._by_name.items():
            if _same(spec, declared):
                return name, True
        return _spec_name(spec), False

    def spec_of(self, run_id: str, name: str | None) -> Any:
        if name is None:
            return self.default
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigurationError(
                f"run {run_id!r} was started with output type {name!r}, which DurableAgent "
                f"{self._agent_name!r} does not declare (output_types: "
                f"{', '.join(sorted(self._by_name)) or 'none'}); declare it, or resume the run from its "
                "caller",
                run_id=run_id,
            ) from None


def _same(left: Any, right: Any) -> bool:
    if left is right:
        return True
    try:
        return bool(left == right)
    except Exception:
        return False


class RunRecorder:
    """Turns a run's arguments into the options recorded with it, and back."""

    def __init__(
        self,
        agent_name: str,
        default_model: Any,
        models: Mapping[str, Model],
        output_types: OutputTypes,
        deps_type: Any,
        deps_factory: DepsFactory | None,
        record_deps: Callable[[Any], Any] | bool,
    ) -> None:
        self._agent_name = agent_name
        self._default_model = default_model
        self._models = dict(models)
        self.output_types = output_types
        self._deps_type = deps_type
        self._deps_factory = deps_factory
        self._record_deps = record_deps
        self._deps_adapter: TypeAdapter[Any] | None = None
        if record_deps is True:
            if deps_type is type(None):
                raise ConfigurationError(
                    f"DurableAgent {agent_name!r}: record_deps=True records the deps as their type's data, "
                    "but the agent declares no deps_type: Agent(..., deps_type=MyDeps), or "
                    "record_deps=lambda deps: ..."
                )
            self._deps_adapter = TypeAdapter(deps_type)

    @property
    def rebuilds_deps(self) -> bool:
        """Whether a process without the caller can rebuild a run's deps."""
        return self._deps_factory is not None or self._deps_adapter is not None

    def model_name(self, model: Any) -> str | None:
        """The name a run's model is recorded under (``None``: the agent's own)."""
        if model is None or model is self._default_model:
            return None
        if isinstance(model, str):
            return model  # an alias of models=, or a model name any worker's infer_model builds
        for alias, registered in self._models.items():
            if registered is model:
                return alias
        raise ConfigurationError(
            f"DurableAgent {self._agent_name!r}: model {getattr(model, 'model_id', model)!r} is an "
            "instance that is not registered in DurableAgent(models=...), so a resumed run could not "
            "find it; register it there and pass its alias (run(model='alias'))"
        )

    def record(
        self, run_id: str | None, arguments: dict[str, Any], overridden: Sequence[str]
    ) -> dict[str, Any]:
        """The JSON options recorded with a run called with ``arguments`` (the ones not ``None``),
        under ``override(...)`` of ``overridden`` (keys other than the model and the name)."""
        options: dict[str, Any] = {}
        needs = [f"override({key}=...)" for key in overridden]
        name = self.model_name(arguments.get("model"))
        if name is not None:
            options["model"] = name
        output_name, declared = self.output_types.name_of(arguments.get("output_type"))
        if output_name is not None:
            options["output_type"] = output_name
            if not declared:
                needs.append("output_type")
        for key, adapter in _ADAPTERS.items():
            if arguments.get(key) is not None:
                options[key] = adapter.dump_python(arguments[key], mode="json")
        for key in _PLAIN:
            value = arguments.get(key)
            if value is None:
                continue
            data = _json_data(value)
            if data is _NOT_DATA:
                needs.append(key)
            else:
                options[key] = data
        if arguments.get("toolsets"):
            options["toolsets"] = [self._external(toolset) for toolset in arguments["toolsets"]]
        if arguments.get("capabilities"):
            needs.append("capabilities")
        if arguments.get("workspace") is not None:
            needs.append("workspace")
        if arguments.get("deps") is not None:
            # What rebuilds them is the resuming process's deps_factory (``restore``), not this one's.
            options["deps"] = self._deps_record(run_id, arguments["deps"])
        if needs:
            options["needs"] = sorted(set(needs))
        return options

    def _external(self, toolset: AbstractToolset[Any]) -> dict[str, Any]:
        if not isinstance(toolset, ExternalToolset):
            raise ConfigurationError(
                f"DurableAgent {self._agent_name!r}: run(toolsets=...) takes only ExternalToolsets "
                f"(their tools are answered outside the run); {type(toolset).__name__} would run its "
                "tools outside the run's journal: give it to the Agent when it is constructed"
            )
        return {"id": toolset.id, "tool_defs": _TOOL_DEFS.dump_python(toolset.tool_defs, mode="json")}

    def _deps_record(self, run_id: str | None, deps: Any) -> Any:
        if self._record_deps is False:
            return None
        try:
            kept = (
                self._deps_adapter.dump_python(deps, mode="json")
                if self._deps_adapter is not None
                else to_jsonable_python(self._record_deps(deps))  # type: ignore[operator]
            )
        except Exception as exc:
            raise SerializationError(
                f"DurableAgent {self._agent_name!r}"
                + ("" if run_id is None else f" run {run_id!r}")
                + f": record_deps could not record the deps as JSON: {exc}",
                run_id=run_id,
            ) from exc
        return kept

    async def restore(self, run_id: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of the wrapped agent's ``run`` for a run resumed from the store;
        raises ``RunArgumentsMissing`` (before anything runs) when it needs what only its caller had."""
        needs = list(options.get("needs", ()))
        if "deps" in options and not self.rebuilds_deps and "deps" not in needs:
            needs.append("deps")
        if needs:
            raise RunArgumentsMissing(run_id, sorted(set(needs)))
        kwargs: dict[str, Any] = {}
        if "model" in options:
            kwargs["model"] = options["model"]
        if "output_type" in options:
            kwargs["output_type"] = self.output_types.spec_of(run_id, options["output_type"])
        for key, adapter in _ADAPTERS.items():
            if key in options:
                kwargs[key] = adapter.validate_python(options[key])
        for key in _PLAIN:
            if key in options:
                kwargs[key] = options[key]
        if "toolsets" in options:
            kwargs["toolsets"] = [
                ExternalToolset(_TOOL_DEFS.validate_python(item["tool_defs"]), id=item["id"])
                for item in options["toolsets"]
            ]
        if "deps" in options:
            kwargs["deps"] = await self._rebuild_deps(run_id, options["deps"])
        return kwargs

    async def _rebuild_deps(self, run_id: str, recorded: Any) -> Any:
        if self._deps_factory is None:
            assert self._deps_adapter is not None
            return self._deps_adapter.validate_python(recorded)
        deps = self._deps_factory(run_id, recorded)
        if inspect.isawaitable(deps):
            deps = await deps
        if deps is None:
            raise ConfigurationError(
                f"run {run_id!r}: deps_factory returned None; an agent run never gets None for deps it was "
                "started with",
                run_id=run_id,
            )
        return deps


def output_name(options: Mapping[str, Any] | None) -> tuple[str | None, bool]:
    """``(output type name, declared)`` as recorded in a run's options."""
    if not options:
        return None, True
    return options.get("output_type"), "output_type" not in options.get("needs", ())


def output_data_type(spec: Any) -> Any:
    """The Python type of ``result.output`` for an output spec, to rebuild it from JSON."""
    if isinstance(spec, ToolOutput):
        return output_data_type(spec.output)
    if isinstance(spec, NativeOutput | PromptedOutput):
        return output_data_type(spec.outputs)
    if isinstance(spec, TextOutput):
        return str
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        members = tuple(output_data_type(item) for item in spec)
        return members[0] if len(members) == 1 else Union[members]  # noqa: UP007 - built at runtime
    if callable(spec) and not isinstance(spec, type) and getattr(spec, "__origin__", None) is None:
        # An output function: its return annotation is the output type.
        import inspect

        annotation = inspect.signature(spec).return_annotation
        return Any if annotation is inspect.Signature.empty else annotation
    return spec
