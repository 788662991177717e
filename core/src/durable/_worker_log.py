"""What ``durable worker`` logs: a line for each run it takes, finishes, fails or parks.

The lines come from the observer hooks (``durable.hookspecs``), implemented by plugins the
command registers while it runs, on the logger ``durable.worker``: INFO for each run taken and
how it ended (WARNING when it failed), DEBUG (``-v``) for every step attempt and outcome. The
engine itself logs a retried attempt (INFO) and a lost lease (WARNING) on ``durable``.
"""

from __future__ import annotations

import logging
import sys
import time

from durable.errors import LeaseLost
from durable.hookspecs import hookimpl

log = logging.getLogger("durable.worker")

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: int, *, libraries: int | None = None) -> None:
    """Log to stderr, unless the application configured logging itself: durable's loggers at
    ``level``, every other logger at ``libraries`` (default: ``level``, but not below INFO)."""
    others = max(level, logging.INFO) if libraries is None else libraries
    logging.basicConfig(level=others, format=FORMAT, stream=sys.stderr)
    logging.getLogger("durable").setLevel(level)


def _took(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _error(error: BaseException | None) -> str:
    if error is None:
        return "no error recorded"
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= 300 else text[:299] + "…"


class RunLog:
    """One line per run this process takes, one per way it ends."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    @hookimpl
    def durable_run_started(self, workflow: str, run_id: str, resumed: bool) -> None:
        self._started[run_id] = time.monotonic()
        if resumed:
            log.info("took run %r (workflow %r), resuming after its checkpoints", run_id, workflow)
        else:
            log.info("took run %r (workflow %r)", run_id, workflow)

    @hookimpl
    def durable_run_finished(
        self, workflow: str, run_id: str, status: str, error: BaseException | None
    ) -> None:
        started = self._started.pop(run_id, None)
        after = "" if started is None else f" after {_took(time.monotonic() - started)}"
        if status == "completed":
            log.info("run %r completed%s", run_id, after)
        elif isinstance(error, LeaseLost):
            pass  # the engine warns when it stops a run whose lease another executor took
        elif status == "failed":
            log.warning("run %r failed%s: %s", run_id, after, _error(error))
        elif status == "waiting":
            log.info("run %r parked%s: it waits for a signal or a wake time, holding no slot", run_id, after)
        elif status == "cancelled":
            log.info("run %r cancelled%s", run_id, after)
        elif status in ("interrupted", "running"):
            log.info("run %r interrupted%s: its lease is given back, any worker resumes it", run_id, after)
        else:
            log.info("run %r stopped%s (%s)", run_id, after, status)


class StepLog:
    """Every step attempt and outcome (``-v``; registered only then: it is called for every step)."""

    @hookimpl
    def durable_step_started(self, run_id: str, key: str, task: str, attempt: int) -> None:
        log.debug("run %r step %r (task %r): attempt %d started", run_id, key, task, attempt)

    @hookimpl
    def durable_step_finished(
        self, run_id: str, key: str, task: str, attempts: int, error: BaseException | None
    ) -> None:
        if error is None:
            log.debug("run %r step %r finished after %d attempt(s)", run_id, key, attempts)
        else:
            log.debug("run %r step %r failed after %d attempt(s): %s", run_id, key, attempts, _error(error))
