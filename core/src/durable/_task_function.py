"""``TaskFunction``: a function decorated with ``@wf.task``, checkpointed as a step inside a run."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from durable import _codec, _keys, _sync
from durable._engine import StepPolicy, call_with_retries, execute_step, unreadable_step
from durable._records import StepStatus
from durable.context import RunContext, _current, _scope
from durable.errors import SerializationError

if TYPE_CHECKING:
    from durable.workflow import Workflow

__all__ = ["TaskFunction"]

P = ParamSpec("P")
R = TypeVar("R")


class TaskFunction(Generic[P, R]):
    """A function decorated with ``@wf.task``: checkpointed inside a run, plain outside. A plain
    ``def`` runs in the Workflow's thread pool (``durable._sync``); calling it gives an awaitable
    either way."""

    def __init__(self, workflow: Workflow, fn: Callable[P, Any], name: str, policy: StepPolicy):
        self.is_async = _sync.check_function(fn, f"@task {name!r}")
        self.workflow = workflow
        self.fn = fn
        self._body: Callable[..., Awaitable[R]] = fn if self.is_async else workflow.threads.body(fn)
        self.name = _keys.check_task_name(name)
        self.policy = policy
        self._annotation: Any = None
        self._parameters: tuple[tuple[str, ...], frozenset[str]] | None = None
        functools.update_wrapper(self, fn)

    @property
    def return_annotation(self) -> Any:
        if self._annotation is None:  # resolved late: forward references may be defined after the task
            self._annotation = _codec.return_annotation(self.fn)
        return self._annotation

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        step_id = kwargs.pop("step_id", None) if kwargs else None
        ctx = _current.get()
        if ctx is None:
            return self._call_plain(args, kwargs)
        # The key is taken now, at call time, so asyncio.gather replays in call order.
        base = self.name if step_id is None else _keys.task_base(self.name, step_id)  # type: ignore[arg-type]
        key = ctx.keys.next_key(_scope.get(), base)  # ctx.next_key, inlined: every call takes a key
        return self._call_in_run(ctx, key, args, kwargs)

    def with_step_id(self, step_id: str) -> Callable[P, Coroutine[Any, Any, R]]:
        """``task.with_step_id("item-3")(x)`` is ``task(x, step_id="item-3")``, fully typed
        (type checkers reject the ``step_id=`` keyword on the task's own signature)."""

        def call(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
            return self(*args, **kwargs, step_id=step_id)  # type: ignore[arg-type]

        return call

    async def _call_plain(self, args: Any, kwargs: Any) -> R:
        return await call_with_retries(lambda: self._body(*args, **kwargs), self.policy, self.name)

    async def _call_in_run(self, ctx: RunContext, key: str, args: Any, kwargs: Any) -> R:
        annotation = self._annotation or self.return_annotation
        try:
            args_digest = (
                self._bound_digest(args, kwargs) if kwargs else _codec.digest_call(args, kwargs, self.name)
            )
        except SerializationError as exc:  # refused before the body runs
            raise SerializationError(
                f"task {self.name!r} (run {ctx.run_id!r}, step {key!r}): its arguments cannot be "
                f"digested: {exc}",
                run_id=ctx.run_id,
                step_key=key,
            ) from exc
        recorded = ctx.journal.get(key)
        if recorded is not None:
            if recorded.args_digest != args_digest:  # other arguments, or a call the last release recorded
                args_digest = _codec.recorded_digest(recorded.args_digest, args_digest, args, kwargs)
            elif recorded.task == self.name and recorded.status is StepStatus.COMPLETED:
                # The common case of a resumed run, kept short; execute_step checks every other case.
                try:
                    result: R = _codec.loads(recorded.result, annotation)  # type: ignore[arg-type]
                except _codec.Unreadable as exc:
                    raise unreadable_step(ctx, key, exc) from exc
                except SerializationError as exc:
                    raise self._unreadable(ctx, key, exc) from exc
                return result
        try:
            return await execute_step(
                ctx,
                key,
                self.name,
                args_digest,
                lambda: self._body(*args, **kwargs),
                self.policy,
                lambda value: _codec.dumps(value, annotation),
                lambda text: _codec.loads(text, annotation),
            )
        except _codec.WrongType as exc:  # a recorded result the annotation refuses
            raise self._unreadable(ctx, key, exc) from exc

    def _bound_digest(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The digest of a call with keyword arguments, bound to the parameters first: ``f(1)`` and
        ``f(x=1)`` are one call. As ``Signature.bind`` gives them (defaults are not filled in: the
        arguments passed are digested), but without its cost where every parameter can be named."""
        if self._parameters is None:
            parameters = inspect.signature(self.fn).parameters.values()
            nameable = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters)
            self._parameters = (
                tuple(p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD) if nameable else (),
                frozenset(p.name for p in parameters) if nameable else frozenset(),
            )
        positional, names = self._parameters
        if names and len(args) <= len(positional) and kwargs.keys() <= names:
            bound, rest = list(args), dict(kwargs)
            if not any(name in rest for name in positional[: len(args)]):
                for name in positional[len(args) :]:
                    if name not in rest:
                        break
                    bound.append(rest.pop(name))
                return _codec.digest_call(tuple(bound), rest, self.name)
        try:
            call = inspect.signature(self.fn).bind(*args, **kwargs)
        except TypeError:  # the call itself raises it, when the body is called
            return _codec.digest_call(args, kwargs, self.name)
        return _codec.digest_call(call.args, call.kwargs, self.name)

    def _unreadable(self, ctx: RunContext, key: str, exc: SerializationError) -> SerializationError:
        return SerializationError(
            f"task {self.name!r} (run {ctx.run_id!r}, step {key!r}): its recorded result cannot be read "
            f"as {_codec._type_name(self._annotation)}: {exc}",
            run_id=ctx.run_id,
            step_key=key,
        )

    def __repr__(self) -> str:
        return f"<durable task {self.name!r}>"
