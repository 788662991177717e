"""Every error durable raises derives from ``DurableError``.

Each message names the run, step key, task or store at fault, so a log line is
enough to find the problem; ``run_id`` and ``step_key`` carry the same as attributes
(``None`` where the error is about no run or no step).
"""

from __future__ import annotations

import time


class DurableError(Exception):
    """Base class of all durable errors."""

    run_id: str | None = None
    """The run at fault, if any."""
    step_key: str | None = None
    """The step at fault (its key in the run's journal), if any."""

    def __init__(self, *args: object, run_id: str | None = None, step_key: str | None = None) -> None:
        super().__init__(*args)
        if run_id is not None:
            self.run_id = run_id
        if step_key is not None:
            self.step_key = step_key


class ConfigurationError(DurableError, ValueError):
    """Bad arguments to ``Workflow``, ``task`` or ``workflow`` (caught at decoration time)."""


class NondeterminismError(DurableError):
    """A replay reached a checkpoint recorded for a different task or different arguments."""

    def __init__(self, run_id: str, key: str, recorded: str, called: str) -> None:
        self.key, self.recorded, self.called = key, recorded, called
        super().__init__(
            f"run {run_id!r}, step {key!r}: the journal recorded {recorded}, "
            f"but the workflow now calls {called}. The workflow code or its inputs changed "
            "since this run started; restore the old code to finish the run, or start a new run id.",
            run_id=run_id,
            step_key=key,
        )


class SerializationError(DurableError, TypeError):
    """A value cannot be encoded to (or decoded from) a checkpoint."""


class RunConflictError(DurableError):
    """A run id was called with a different workflow or different inputs than it was started with."""


class RunInProgress(DurableError):
    """Another live executor owns the run, and the caller chose not to wait."""

    def __init__(self, run_id: str, owner: str | None, lease_expires_at: float | None) -> None:
        self.owner, self.lease_expires_at = owner, lease_expires_at
        left = max(0.0, (lease_expires_at or 0.0) - time.time())
        until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(lease_expires_at or 0.0))
        super().__init__(
            f"run {run_id!r} is being executed by {owner!r} (its lease runs until {until}, "
            f"{left:.1f} s from now, and is renewed while it runs); call again later or with wait=True",
            run_id=run_id,
        )


class RunCancelled(DurableError):
    """The run was cancelled; ``resume()`` it to continue."""


class RunParked(DurableError):
    """The run is waiting (signal or sleep) and released its process; a worker resumes it when due."""

    def __init__(self, run_id: str, wake_at: float | None) -> None:
        self.wake_at = wake_at
        when = (
            "when its signal arrives"
            if wake_at is None
            else "at " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wake_at))
        )
        super().__init__(f"run {run_id!r} is parked; a worker resumes it {when}", run_id=run_id)


class RunTimeout(DurableError, TimeoutError):
    """The run passed the deadline set by ``@wf.workflow(timeout=...)``."""


class RunFailed(DurableError):
    """Waiting for a run that another executor finished with a failure."""

    error: object = None
    """The run's stored ``ErrorInfo`` (type, message, traceback), if it has one."""


class WaitTimeout(DurableError, TimeoutError):
    """``wf.wait_for(run_id, timeout=...)`` gave up before the run finished (the run goes on)."""

    status: object = None
    """The run's ``RunStatus`` when the wait gave up (``interrupted`` where its owner is gone)."""


class StepTimeout(DurableError, TimeoutError):
    """An attempt of a task took longer than its ``timeout``."""


class LifecycleError(DurableError):
    """A status change ``durable._lifecycle`` does not allow: a bug in durable or in a store."""


class UnknownRunError(DurableError, LookupError):
    """No run with that id exists in the store."""


class SignalTimeout(DurableError, TimeoutError):
    """``wf.signal(name, timeout=...)`` expired before a delivery arrived."""


class NonRetryableError(DurableError):
    """Raise (or subclass) from a task to fail it at once, without further retries."""


class StoreError(DurableError):
    """A store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; the operation may succeed if tried again."""


class StoreCorrupted(StoreError):
    """The file or schema is not a durable store, is damaged, or is from a newer version; or one
    stored record cannot be read (``run_id`` and ``field`` say which)."""

    store: str | None = None
    """The store at fault (its name or file), where known."""
    field: str | None = None
    """The field of the record that cannot be read, where one record is at fault."""


class StoreNotFound(StoreError, LookupError):
    """``Store.open(create=False)`` found no data to open (no such file, schema or key prefix):
    the store is named in the message, and nothing was created."""


class LeaseLost(StoreError):
    """A write carried a fencing token that is no longer the run's current one.

    Another executor took the run over (this one was paused, partitioned or too slow
    to renew its lease); nothing was written.
    """

    @classmethod
    def stale(cls, run_id: str, token: int, current: int | None) -> LeaseLost:
        """The error a store raises for a fenced write with an old token (``current`` is the
        run's token now, ``None`` if the run is gone)."""
        return cls(
            f"run {run_id!r}: lease token {token} is stale (current: {current}); "
            "another executor owns the run, nothing was written",
            run_id=run_id,
        )


class UnknownStoreError(DurableError, ValueError):
    """No installed plugin handles a store URL's scheme."""


class PluginError(DurableError):
    """A plugin is invalid or conflicts with another plugin."""
