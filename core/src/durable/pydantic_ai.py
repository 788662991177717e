"""``from durable.pydantic_ai import DurableAgent, ...``: re-exports the ``durable-pydantic-ai`` plugin."""

from __future__ import annotations

try:
    from durable_pydantic_ai import (
        DurableAgent,
        DurableStreamedRunResult,
        RunArgumentsMissing,
        TaskConfig,
        decode_event,
        durable_pipeline,
        durable_tool,
    )
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "durable.pydantic_ai needs the pydantic-ai plugin; install it with: "
        "pip install 'python-durable[pydantic-ai]'"
    ) from exc

__all__ = [
    "DurableAgent",
    "DurableStreamedRunResult",
    "RunArgumentsMissing",
    "TaskConfig",
    "decode_event",
    "durable_pipeline",
    "durable_tool",
]
