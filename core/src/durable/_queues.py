"""Named queues: ``wf.queue(...)``, ``@wf.workflow(queue=...)`` and ``fn.options(...).start()``.

A queue's limits live in the code (``Queue``); a run's place in it (``QueuedRun``) lives in the
store, beside the run, written by ``Store.enqueue_run``. Workers claim a queue's runs with
``Store.claim_queued``, passing the limits, and the store refuses a claim that would exceed them,
atomically (docs/QUEUES.md). Only stores declaring ``Capability.QUEUES`` keep queues.

Runs of workflows on no queue keep the original path (``create_run`` + ``due_runs``), on every
store; workers call that path the queue ``default``. Declaring ``wf.queue("default", ...)`` puts
every workflow without ``queue=`` on a real queue of that name, with its limits.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec

from durable import _keys, _runner
from durable._lifecycle import Actor, require
from durable._records import Enqueued, QueuedRun, QueueLimits, RunStatus
from durable.errors import ConfigurationError, RunConflictError, UnknownStoreError
from durable.store import DEFAULT_QUEUE, Capability, Store, redact_url

if TYPE_CHECKING:
    from durable._executor import Executor
    from durable.workflow import Workflow, WorkflowFunction

__all__ = ["DEFAULT_QUEUE", "Queue", "StartOptions", "declare", "queue_of", "require_queues", "start"]

P = ParamSpec("P")

MAX_QUEUE_NAME = 200


@dataclass(frozen=True)
class Queue:
    """A named queue and its limits (``wf.queue(...)`` returns it; ``queue=`` takes it or its name).

    ``concurrency``: runs of the queue executing at once across every process sharing the store.
    ``worker_concurrency``: at most this many in one worker process. ``rate_limit=(n, seconds)``:
    at most ``n`` runs of the queue start in any window of ``seconds``, across all processes.
    ``partition_concurrency``: at most this many at once per ``partition_key``, ``concurrency``
    staying the total. ``None`` is no limit.
    """

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: tuple[int, float] | None = None
    partition_concurrency: int | None = None

    @property
    def limits(self) -> QueueLimits:
        """What the store enforces at every claim (``worker_concurrency`` is the worker's own)."""
        return QueueLimits(self.concurrency, self.partition_concurrency, self.rate_limit)


def _count(value: object, what: str, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{where}: {what} must be an int >= 1 or None, got {value!r}")
    return value


def declare(
    wf: Workflow,
    name: str,
    *,
    concurrency: int | None,
    worker_concurrency: int | None,
    rate_limit: tuple[int, float] | None,
    partition_concurrency: int | None,
) -> Queue:
    """Check and register ``wf.queue(name, ...)``; the same declaration twice returns the same queue."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"wf.queue(): the name must be a non-empty str, got {name!r}")
    where = f"queue {_keys.shown(name)}"
    problem = _keys.id_problem(name, MAX_QUEUE_NAME)
    if problem is not None:
        raise ConfigurationError(f"{where}: the name {problem}")
    rate: tuple[int, float] | None = None
    if rate_limit is not None:
        try:
            n, seconds = rate_limit
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{where}: rate_limit must be (runs, seconds), like (50, 60.0), got {rate_limit!r}"
            ) from None
        count = _count(n, "rate_limit's run count", where)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < math.inf:
            raise ConfigurationError(f"{where}: rate_limit's window must be seconds > 0, got {seconds!r}")
        assert count is not None
        rate = (count, float(seconds))
    queue = Queue(
        name,
        concurrency=_count(concurrency, "concurrency", where),
        worker_concurrency=_count(worker_concurrency, "worker_concurrency", where),
        rate_limit=rate,
        partition_concurrency=_count(partition_concurrency, "partition_concurrency", where),
    )
    queues = queues_of(wf)
    if name in queues and queues[name] != queue:
        raise ConfigurationError(f"{where} is declared twice with other limits: {queues[name]} and {queue}")
    require_queues(wf, f"wf.queue({name!r})")
    queues[name] = queue
    return queue


def queues_of(wf: Workflow) -> dict[str, Queue]:
    """The queues ``wf`` declares, by name (kept on the Workflow, made on first use)."""
    queues: dict[str, Queue] = wf.__dict__.setdefault("_queues", {})
    return queues


def resolve(wf: Workflow, queue: str | Queue | None, workflow: str) -> str | None:
    """The queue name a ``@wf.workflow(queue=...)`` names, checked: declared on ``wf``."""
    if queue is None:
        return None
    declared = queues_of(wf)
    if isinstance(queue, Queue):
        if declared.get(queue.name) != queue:
            raise ConfigurationError(
                f"@workflow {workflow!r}: queue {queue.name!r} was not declared on {wf!r}"
            )
        return queue.name
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError(
            f"@workflow {workflow!r}: queue must be a queue's name or a Queue, got {queue!r}"
        )
    if queue not in declared and queue != DEFAULT_QUEUE:
        raise ConfigurationError(
            f"@workflow {workflow!r}: queue {queue!r} is not declared; declare it first with "
            f"wf.queue({queue!r}, ...) (declared: {', '.join(sorted(declared)) or 'none'})"
        )
    require_queues(wf, f"@workflow {workflow!r} (queue={queue!r})")
    return queue


def queue_of(wfn: WorkflowFunction[Any, Any]) -> Queue | None:
    """The declared queue a workflow's runs are enqueued on, or ``None`` (the original path)."""
    return queues_of(wfn.workflow).get(wfn.queue or DEFAULT_QUEUE)


def require_queues(target: Workflow | Store, what: str) -> None:
    """Raise ``ConfigurationError`` naming the store if it does not declare ``queues``.

    A ``Workflow`` whose store is a URL is judged by its backend's declared capabilities (no
    driver is imported); an unknown scheme is left for opening the store to report.
    """
    from durable.workflow import Workflow

    if isinstance(target, Workflow):
        store = target._store
        if store is not None:
            capabilities, shown = frozenset(store.capabilities), repr(store)
        else:
            url = target._store_url or ""
            try:
                from urllib.parse import urlsplit

                backend = target.plugins.backends()[urlsplit(url).scheme.lower()][0]
            except (KeyError, UnknownStoreError):
                return
            capabilities, shown = backend.capabilities, f"{backend.name} store {redact_url(url)}"
    else:
        capabilities, shown = frozenset(target.capabilities), repr(target)
    if Capability.QUEUES not in capabilities:
        raise ConfigurationError(
            f"{what} needs a store with the {Capability.QUEUES!r} capability, and the {shown} does not "
            f"declare it (its capabilities: {', '.join(sorted(capabilities)) or 'none'}); use one that "
            "does (memory:// here; docs/QUEUES.md), or leave queues out to use workers as before"
        )


@dataclass(frozen=True)
class Options:
    """What ``fn.options(...)`` set for one start."""

    priority: int = 0
    delay: float = 0.0
    partition_key: str | None = None
    debounce: float | None = None
    debounce_key: str | None = None

    def check(self, workflow: str) -> Options:
        where = f"workflow {workflow!r}: options()"
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise ConfigurationError(
                f"{where}: priority must be an int (lower runs first), got {self.priority!r}"
            )
        for what, value in (("delay", self.delay), ("debounce", self.debounce)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise ConfigurationError(f"{where}: {what} must be seconds >= 0, got {value!r}")
        if self.debounce is not None and self.debounce <= 0:
            raise ConfigurationError(f"{where}: debounce must be seconds > 0, got {self.debounce!r}")
        if self.debounce is not None and self.delay:
            raise ConfigurationError(
                f"{where}: debounce and delay cannot be combined: a debounced run starts debounce "
                "seconds after the last start"
            )
        if self.debounce_key is not None and self.debounce is None:
            raise ConfigurationError(f"{where}: debounce_key needs debounce=SECONDS")
        for what, text in (("partition_key", self.partition_key), ("debounce_key", self.debounce_key)):
            if text is not None:
                if not isinstance(text, str) or not text:
                    raise ConfigurationError(f"{where}: {what} must be a non-empty str, got {text!r}")
                _keys.check_id(text, f"{where}: {what}")
        return self


class StartOptions(Generic[P]):
    """``fn.options(priority=..., delay=..., partition_key=..., debounce=..., debounce_key=...)``:
    a ``start()`` with those settings. Each needs the workflow to be on a queue."""

    def __init__(self, wfn: WorkflowFunction[P, Any], options: Options) -> None:
        self.wfn = wfn
        self.settings = options.check(wfn.name)

    async def start(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """As ``fn.start(...)``, with these options; returns the run id (a debounced start
        returns the id of the run it collapsed into)."""
        return await start(self.wfn, args, kwargs, self.settings)

    def __repr__(self) -> str:
        return f"<durable start options of {self.wfn.name!r}: {self.settings}>"


async def start(
    wfn: WorkflowFunction[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: Options | None = None,
) -> str:
    """``fn.start(...)``: a pending run for a worker, on the workflow's queue if it has one."""
    arguments = wfn._bind(args, kwargs)
    run_id = _runner.caller_run_id(wfn._run_id(arguments), wfn.name)
    return await start_with_id(wfn, run_id, arguments, options)


async def start_with_id(
    wfn: WorkflowFunction[Any, Any], run_id: str, arguments: dict[str, Any], options: Options | None
) -> str:
    """Record a pending run of ``wfn`` under ``run_id``; idempotent for the same inputs."""
    ex = wfn.workflow.executor
    queue = queue_of(wfn)
    if queue is None:
        if options is not None and options != Options():
            raise ConfigurationError(
                f"workflow {wfn.name!r} is on no queue: priority, delay, partition_key and debounce "
                f"need one (@wf.workflow(queue=...), or wf.queue({DEFAULT_QUEUE!r}, ...) for every "
                "workflow without queue=)"
            )
        return await _runner.enqueue(ex, wfn, run_id, arguments)
    return await enqueue(ex, wfn, queue, run_id, arguments, options or Options())


async def enqueue(
    ex: Executor,
    wfn: WorkflowFunction[Any, Any],
    queue: Queue,
    run_id: str,
    arguments: Mapping[str, Any],
    options: Options,
) -> str:
    store = await ex.store()
    require_queues(store, f"workflow {wfn.name!r} on queue {queue.name!r}")
    key = options.debounce_key
    if options.debounce is not None:
        key = key or run_id
        # A window's run is a new execution: its id is the call's own plus a token, and later
        # starts within the window return it.
        run_id = f"{run_id}~{secrets.token_hex(4)}"
    fresh = _runner.new_run(ex, wfn, run_id, dict(arguments), claimed=False)
    now = fresh.created_at  # workflow time, as not_before is compared with it
    wait = options.debounce if options.debounce is not None else options.delay
    entry = QueuedRun(
        run_id=run_id,
        queue=queue.name,
        priority=options.priority,
        partition_key=options.partition_key,
        not_before=now + wait,
        enqueued_at=now,
        debounce_key=key if options.debounce is not None else None,
    )
    require(run_id, None, RunStatus.PENDING, Actor.CALLER)
    run, outcome = await store.enqueue_run(fresh, entry)
    if outcome is Enqueued.REPLACED:
        require(run.run_id, RunStatus.PENDING, RunStatus.PENDING, Actor.CALLER)
    elif outcome is Enqueued.EXISTS:
        if options.debounce is not None and run.run_id != run_id:
            raise RunConflictError(
                f"debounce key {key!r} on queue {queue.name!r} is held by pending run {run.run_id!r} of "
                f"workflow {run.workflow!r}, not {wfn.name!r}: use another debounce_key",
                run_id=run.run_id,
            )
        _runner.check_same_run(run, wfn.name, fresh.inputs_digest)
    return run.run_id
