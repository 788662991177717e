"""Code versions: ``Workflow(version=...)`` recorded in the journal of each run it executes.

A run records, the first time an executor with a version starts or resumes it, a system step
``durable:version@<version>`` whose result is the version: a run started by ``2026.12.1`` and
resumed by ``2026.12.2`` holds both, in the order they took it. The body never asks for these
steps, so they change nothing on replay. The run record holds the version that created it
(``RunRecord.version``, which ``list_runs(version=)`` filters by) and each checkpoint the version
that wrote it (``StepRecord.version``).
"""

from __future__ import annotations

from durable import _clock, _codec, _keys
from durable._patches import VERSION_TASK
from durable._records import StepRecord, StepStatus
from durable.context import RunContext
from durable.errors import ConfigurationError

__all__ = ["check_version", "record_version", "versions_of"]


def check_version(version: object, where: str) -> str | None:
    """``version`` if it can name a code version (``None``: no version)."""
    if version is None:
        return None
    if not isinstance(version, str) or not version:
        raise ConfigurationError(f"{where}: version must be a non-empty str, got {version!r}")
    problem = _keys.id_problem(version, _keys.MAX_NAME_LENGTH)
    if problem is not None:
        raise ConfigurationError(f"{where}: version {_keys.shown(version)} {problem}")
    return version


async def record_version(ctx: RunContext, version: str) -> None:
    """Record that ``version`` executes this run, unless its journal says so already."""
    key = _keys.system_base("version", version)
    if key in ctx.journal:
        return
    now = _clock.now()
    step = StepRecord(
        ctx.run_id, key, VERSION_TASK, _codec.digest(None), StepStatus.COMPLETED, _codec.dumps(version),
        None, 1, now, now, version,
    )  # fmt: skip
    store, lease = ctx.store, ctx.lease
    ctx.journal[key] = await ctx.write(lambda: store.save_step(lease, step))


def versions_of(steps: list[StepRecord]) -> list[str]:
    """The versions that executed a run, in the order they first did (from its journal)."""
    found = []
    for step in steps:
        if step.task == VERSION_TASK and step.result is not None:
            try:
                found.append(str(_codec.loads(step.result)))
            except Exception:
                continue
    return found
