"""durable: make any async workflow resumable after a crash with one decorator.

wf = Workflow("my-app")              # SQLite file durable.db by default

@wf.task
async def fetch(url: str) -> dict: ...

@wf.workflow(id="pipeline-{source}")
async def pipeline(source: str) -> None:
    await fetch(f"https://example.com/{source}")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable._queues import Queue
from durable._worker import Worker
from durable.backoff import BackoffStrategy, constant, exponential, linear
from durable.context import RunContext, current_run
from durable.errors import (
    ConfigurationError,
    DurableError,
    LeaseLost,
    LifecycleError,
    NondeterminismError,
    NonRetryableError,
    PluginError,
    RunCancelled,
    RunConflictError,
    RunFailed,
    RunInProgress,
    RunParked,
    RunTimeout,
    SerializationError,
    SignalTimeout,
    StepTimeout,
    StoreCorrupted,
    StoreError,
    StoreUnavailable,
    UnknownRunError,
    UnknownStoreError,
    WaitTimeout,
)
from durable.hookspecs import hookimpl
from durable.store import QueuedRun, RunQuery, RunRecord, RunStatus, SignalRecord, StepRecord, Store
from durable.workflow import TaskFunction, Workflow, WorkflowFunction

if TYPE_CHECKING:
    from durable_memory import InMemoryStore
    from durable_postgres import PostgresStore
    from durable_redis import RedisStore
    from durable_sqlite import SQLiteStore

__version__ = "0.3.0"

__all__ = [
    "BackoffStrategy",
    "ConfigurationError",
    "DurableError",
    "InMemoryStore",
    "LeaseLost",
    "LifecycleError",
    "NonRetryableError",
    "NondeterminismError",
    "PluginError",
    "PostgresStore",
    "Queue",
    "QueuedRun",
    "RedisStore",
    "RunCancelled",
    "RunConflictError",
    "RunContext",
    "RunFailed",
    "RunInProgress",
    "RunParked",
    "RunQuery",
    "RunRecord",
    "RunStatus",
    "RunTimeout",
    "SQLiteStore",
    "SerializationError",
    "SignalRecord",
    "SignalTimeout",
    "StepRecord",
    "StepTimeout",
    "Store",
    "StoreCorrupted",
    "StoreError",
    "StoreUnavailable",
    "TaskFunction",
    "UnknownRunError",
    "UnknownStoreError",
    "WaitTimeout",
    "Worker",
    "Workflow",
    "WorkflowFunction",
    "constant",
    "current_run",
    "exponential",
    "hookimpl",
    "linear",
]

_LAZY_PYDANTIC_AI = ("DurableAgent", "TaskConfig", "durable_tool", "durable_pipeline")


def __getattr__(name: str) -> Any:
    # Stores and the pydantic-ai integration live in plugin distributions: import on first use,
    # so `import durable` needs nothing but the core.
    from durable._plugins import STORE_CLASSES, import_store_class

    if name in STORE_CLASSES:
        return import_store_class(name)
    if name in _LAZY_PYDANTIC_AI:
        from durable import pydantic_ai

        return getattr(pydantic_ai, name)
    raise AttributeError(f"module 'durable' has no attribute {name!r}")
