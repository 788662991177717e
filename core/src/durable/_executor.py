"""``Executor``: what executing runs needs from a ``Workflow``, and nothing else.

The runner and workers take this small object rather than the whole ``Workflow``: its store,
the identity its leases are taken under, the lease length, the workflows it can execute and
the plugins that observe it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from durable.errors import ConfigurationError

if TYPE_CHECKING:
    from durable._plugins import PluginManager
    from durable.context import RunContext
    from durable.store import Store
    from durable.workflow import Workflow, WorkflowFunction


@dataclass(eq=False)
class Executor:
    workflow: Workflow
    """The application it executes for (``RunContext.workflow``, for user code)."""
    store: Callable[[], Awaitable[Store]]
    """The opened store (opened on first use)."""
    owner: str
    """Identity every lease of this executor is taken under (``host:pidns:pid:random``)."""
    lease_seconds: float
    workflows: Mapping[str, WorkflowFunction[Any, Any]]
    """The workflows this code defines, by name: the only runs it may execute."""
    plugins: PluginManager | None
    active: dict[str, RunContext] = field(default_factory=dict)
    """Runs executing in this process, by id (``cancel()`` stops them at once)."""

    def workflow_of(self, run_id: str, name: str) -> WorkflowFunction[Any, Any]:
        """The workflow function of a stored run; ``ConfigurationError`` if this code lacks it."""
        wfn = self.workflows.get(name)
        if wfn is None:
            raise ConfigurationError(
                f"run {run_id!r} belongs to workflow {name!r}, which this Workflow does not define "
                f"(defined: {', '.join(sorted(self.workflows)) or 'none'})",
                run_id=run_id,
            )
        return wfn
