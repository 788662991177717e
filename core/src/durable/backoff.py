"""Retry delays. A strategy maps the retry number (1 for the first retry) to seconds."""

from __future__ import annotations

from collections.abc import Callable

BackoffStrategy = Callable[[int], float]
"""``strategy(k)`` is the wait in seconds before retry ``k`` (k = 1, 2, ...)."""

__all__ = ["BackoffStrategy", "constant", "exponential", "linear"]


def exponential(base: float = 2.0, max: float = 60.0) -> BackoffStrategy:
    """``base ** k`` capped at ``max``: ``exponential(base=2)`` waits 2s, 4s, 8s, 16s, ..."""
    if base <= 0 or max < 0:
        raise ValueError(f"exponential(base={base}, max={max}): base must be > 0 and max >= 0")

    def delay(retry: int) -> float:
        try:
            return float(min(base**retry, max))
        except OverflowError:  # a very late retry of a long-lived task
            return float(max)

    return delay


def linear(start: float = 1.0, step: float = 1.0) -> BackoffStrategy:
    """``start + step * (k - 1)``: ``linear(start=2, step=3)`` waits 2s, 5s, 8s, ..."""
    if start < 0 or step < 0:
        raise ValueError(f"linear(start={start}, step={step}): both must be >= 0")

    def delay(retry: int) -> float:
        return float(start + step * (retry - 1))

    return delay


def constant(seconds: float = 1.0) -> BackoffStrategy:
    """The same wait before every retry: ``constant(5)`` waits 5s, 5s, 5s."""
    if seconds < 0:
        raise ValueError(f"constant({seconds}): seconds must be >= 0")

    def delay(retry: int) -> float:
        return float(seconds)

    return delay
