"""Per-step retry configuration and which errors a retry cannot fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from pydantic_core import PydanticSerializationError

from durable.backoff import BackoffStrategy
from durable.errors import NonRetryableError

__all__ = ["StepConfig", "TaskConfig", "default_non_retryable", "is_non_retryable", "resolve"]


class TaskConfig(TypedDict, total=False):
    """How a model-request or tool step is retried: ``TaskConfig(retries=5, backoff=exponential())``.

    A ``TypedDict`` so that the same value works as tool metadata
    (``@agent.tool(metadata={"durable": TaskConfig(retries=5)})``), which pydantic-ai requires to be a dict.
    """

    retries: int
    """Extra attempts after the first (so ``retries + 1`` in all)."""
    backoff: BackoffStrategy
    """Seconds to wait before retry ``k`` (``backoff(k)``)."""
    retry_on: tuple[type[BaseException], ...]
    """Only these exceptions are retried (default: every ``Exception`` not known to be permanent)."""
    timeout: float
    """Limit, in seconds, for each attempt."""
    non_retryable: tuple[type[BaseException], ...]
    """Exceptions never retried, because the same input fails the same way again (default:
    ``default_non_retryable()``: pydantic-ai's ``UserError``, ``UnexpectedModelBehavior`` and
    ``UsageLimitExceeded``, and pydantic's ``PydanticUserError``). ``()`` lets ``retry_on`` decide
    for those too. Refused requests (HTTP 4xx, an exhausted quota) and durable's own permanent
    errors are never retried either way."""


_KNOWN_KEYS = frozenset(TaskConfig.__annotations__)


@dataclass(frozen=True)
class StepConfig:
    """A ``TaskConfig`` with every field resolved."""

    retries: int
    backoff: BackoffStrategy | None
    retry_on: tuple[type[BaseException], ...] | None
    timeout: float | None
    non_retryable: tuple[type[BaseException], ...] | None = None
    """``None``: ``default_non_retryable()``."""


def resolve(config: Any, default_retries: int, default_backoff: BackoffStrategy | None) -> StepConfig:
    """Merge a (possibly partial) ``TaskConfig`` over the workflow's defaults, checking it."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise TypeError(f"a durable TaskConfig must be a dict (TaskConfig(...)), got {type(config).__name__}")
    unknown = set(config) - _KNOWN_KEYS
    if unknown:
        raise TypeError(f"unknown TaskConfig keys {sorted(unknown)}; known: {sorted(_KNOWN_KEYS)}")
    retries = config.get("retries", default_retries)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"TaskConfig retries must be an int >= 0, got {retries!r}")
    retry_on = config.get("retry_on")
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    timeout = config.get("timeout")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"TaskConfig timeout must be > 0, got {timeout!r}")
    non_retryable = config.get("non_retryable")
    if isinstance(non_retryable, type):
        non_retryable = (non_retryable,)
    if non_retryable is not None and not (
        isinstance(non_retryable, tuple)
        and all(isinstance(t, type) and issubclass(t, BaseException) for t in non_retryable)
    ):
        raise TypeError(
            f"TaskConfig non_retryable must be a tuple of exception classes, got {non_retryable!r}"
        )
    return StepConfig(
        retries=retries,
        backoff=config.get("backoff", default_backoff),
        retry_on=retry_on,
        timeout=timeout,
        non_retryable=non_retryable,
    )


def default_non_retryable() -> tuple[type[BaseException], ...]:
    """Errors a retry cannot fix, as pydantic-ai's Prefect and Temporal integrations see them: a
    mistake in the program or its configuration, a model answer the agent cannot use, a usage limit."""
    from pydantic import PydanticUserError
    from pydantic_ai.exceptions import UnexpectedModelBehavior, UsageLimitExceeded, UserError

    return (UserError, PydanticUserError, UnexpectedModelBehavior, UsageLimitExceeded)


# HTTP statuses that mean the request itself was refused: sending it again gets the same answer.
_REJECTED_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 413, 415, 422})
_QUOTA_MARKERS = ("insufficient_quota", "quota exceeded", "exceeded your current quota", "billing")


def is_non_retryable(
    exc: BaseException, non_retryable: tuple[type[BaseException], ...] | None = None
) -> bool:
    """Whether a failed attempt is permanent: one of ``non_retryable`` (default
    ``default_non_retryable()``), a value that cannot be serialised, a refused request or an
    exhausted quota. Retrying those only bills again."""
    from pydantic_ai.exceptions import ModelHTTPError, UnexpectedModelBehavior

    never = default_non_retryable() if non_retryable is None else non_retryable
    if isinstance(exc, (NonRetryableError, PydanticSerializationError, *never)):
        return True
    if isinstance(exc, ModelHTTPError):
        if exc.status_code in _REJECTED_STATUSES:
            return True
        if exc.status_code == 429:
            text = f"{exc.body!r} {exc.message}".lower()
            return any(marker in text for marker in _QUOTA_MARKERS)
        return False
    # A response the model will give again for the same input (e.g. a content filter refusal).
    return type(exc).__name__ == "ContentFilterError" and isinstance(exc, UnexpectedModelBehavior)


class PermanentStepError(NonRetryableError):
    """Carries a permanent error through durable's retry loop, which never retries a
    ``NonRetryableError``; the original is re-raised to pydantic-ai once the step gave up."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original
