"""``WorkflowFunction``: a function decorated with ``@wf.workflow``; each call runs or resumes one
durable run, whose id its template (or its arguments' digest) gives."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from durable import _codec, _keys, _queues, _runner
from durable.context import current_run
from durable.errors import ConfigurationError, SerializationError

if TYPE_CHECKING:
    from durable._schedules import Schedule
    from durable.workflow import Workflow

__all__ = ["WorkflowFunction", "check_run_id"]

P = ParamSpec("P")
R = TypeVar("R")

MAX_RUN_ID_LENGTH = 1024


def check_run_id(run_id: object, workflow: str) -> str:
    if not isinstance(run_id, str) or not run_id:
        raise ConfigurationError(f"workflow {workflow!r}: run id must be a non-empty str, got {run_id!r}")
    problem = _keys.id_problem(run_id, MAX_RUN_ID_LENGTH)
    if problem is not None:
        raise ConfigurationError(f"workflow {workflow!r}: run id {_keys.shown(run_id)} {problem}")
    return run_id


class WorkflowFunction(Generic[P, R]):
    """A function decorated with ``@wf.workflow``: each call runs or resumes one durable run."""

    queue: str | None = None
    """The queue its started runs are enqueued on (``queue=``; ``None``: ``default``)."""
    schedule: Schedule | None = None
    """Its cron schedule (``schedule=``): workers start one run per tick."""

    def __init__(
        self,
        workflow: Workflow,
        fn: Callable[P, Awaitable[R]],
        name: str,
        id_template: str | None,
        timeout: float | None = None,
    ):
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"@workflow {name!r}: {fn!r} must be an 'async def' function (it awaits its steps; "
                "its tasks may be plain 'def' functions, run in threads, and sync code calls it with "
                f"{name}.run_sync(...))"
            )
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"@workflow {name!r}: timeout must be > 0, got {timeout}")
        self.workflow = workflow
        self.fn = fn
        self.name = _keys.check_task_name(name)
        self.id_template = id_template
        self.timeout = timeout
        self.signature = inspect.signature(fn)
        parameters = self.signature.parameters.values()
        self._positional_names: tuple[str, ...] | None = (
            tuple(p.name for p in parameters)
            if all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in parameters)
            else None
        )
        """The parameter names, where every argument passed by position is all ``_bind`` needs to
        know: no defaults, no keyword-only, positional-only or variadic parameters."""
        functools.update_wrapper(self, fn)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.call(None, args, kwargs)

    async def run(self, run_id: str, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run (or resume) the workflow under an explicit run id."""
        return await self.call(run_id, args, kwargs)

    async def start(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Record a pending run for a worker to execute and return its id at once.

        Idempotent: starting the same run id with the same inputs again is a no-op.
        ``await wf.wait_for(run_id)`` gets the result. On a queue (``queue=``), the run waits
        for the queue's limits to let a worker claim it.
        """
        return await _queues.start(self, args, kwargs)

    def options(
        self,
        *,
        priority: int = 0,
        delay: float = 0.0,
        partition_key: str | None = None,
        debounce: float | None = None,
        debounce_key: str | None = None,
    ) -> _queues.StartOptions[P]:
        """``fn.options(...).start(...)``: a start on the workflow's queue with ``priority`` (lower
        first, FIFO within one), ``delay`` (seconds before it may start), ``partition_key`` (what
        ``partition_concurrency`` counts), or ``debounce`` (seconds; starts with the same
        ``debounce_key``, the run id by default, collapse into one run with the last inputs)."""
        options = _queues.Options(priority, delay, partition_key, debounce, debounce_key)
        return _queues.StartOptions(self, options)

    def run_sync(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run (or resume) the workflow from synchronous code and return its result: the call
        ``await my_workflow(...)`` makes, on the Workflow's own event loop (``Workflow.run_sync``)."""
        return self.workflow.run_sync(self.call(None, args, kwargs))

    def run_id_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The run id a call with these arguments would use."""
        return self._run_id(self._bind(args, kwargs))

    def invoke(self, arguments: dict[str, Any]) -> Awaitable[R]:
        """Call the function with bound arguments (as ``_bind`` returns or stored inputs decode to)."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        hints = _codec._type_hints(self.fn)
        for name, param in self.signature.parameters.items():
            if name not in arguments:
                continue
            value = _codec.coerce(arguments[name], hints.get(name, Any))
            if param.kind is param.VAR_POSITIONAL:
                args.extend(value)
            elif param.kind is param.VAR_KEYWORD:
                kwargs.update(value)
            elif param.kind is param.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[name] = value
        return self.fn(*args, **kwargs)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        names = self._positional_names
        if names is not None and not kwargs and len(args) == len(names):
            return dict(zip(names, args, strict=True))  # what Signature.bind gives, for a fifth of its cost
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"workflow {self.name!r}: {exc}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def _run_id(self, arguments: dict[str, Any]) -> str:
        if self.id_template is None:
            try:
                return f"{self.name}-{_codec.digest(arguments)}"
            except SerializationError as exc:
                raise SerializationError(
                    f"workflow {self.name!r}: its arguments cannot be digested into a run id: {exc}"
                ) from exc
        try:
            # Only the bound parameters fill the template: a dict argument cannot inject fields.
            run_id = self.id_template.format_map(arguments)
        except (KeyError, IndexError, AttributeError) as exc:
            raise ConfigurationError(
                f"workflow {self.name!r}: id template {self.id_template!r} refers to {exc} which is not "
                f"a parameter of {self.name}{self.signature}"
            ) from None
        return check_run_id(run_id, self.name)

    async def call(
        self,
        run_id: str | None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> R:
        """Run or resume a run; the full form of ``__call__`` and ``run``.

        If another live executor owns the run, wait up to ``timeout`` seconds for its
        outcome (``wait=True``) or raise ``RunInProgress`` at once (``wait=False``).
        """
        arguments = self._bind(args, kwargs or {})
        parent = current_run()
        if parent is not None and run_id is None:
            # Called from a workflow: a child run, checkpointed as a step of the parent.
            result: R = await _runner.run_child(parent, self, arguments)
            return result
        run_id = self._run_id(arguments) if run_id is None else check_run_id(run_id, self.name)
        run_id = _runner.caller_run_id(run_id, self.name)
        value: R = await _runner.start_or_resume(
            self.workflow.executor, self, run_id, arguments, wait=wait, timeout=timeout
        )
        return value

    def __repr__(self) -> str:
        return f"<durable workflow {self.name!r}>"
