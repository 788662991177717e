"""What a worker serves: its queues, the limits it claims them with, and its schedules.

A worker serves queue names (``--queue``, ``queues=``; by default every queue its code declares
and ``default``). For a declared queue it calls ``Store.claim_queued`` with the queue's limits,
and keeps at most ``worker_concurrency`` of its runs in this process; ``default``, unless
declared, is the original path (``due_runs`` + ``claim_run``). Runs without a queue entry (a
fork, a run started before its workflow had a queue) go by their workflow's queue in the code.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from durable._queues import DEFAULT_QUEUE, Queue, queues_of, require_queues
from durable.errors import ConfigurationError

if TYPE_CHECKING:
    from durable._records import Lease, RunRecord
    from durable.store import Store
    from durable.workflow import Workflow, WorkflowFunction

__all__ = ["Dispatch"]


class Dispatch:
    """A worker's queues (``names``), claimed in turn so that none starves the others."""

    def __init__(self, wf: Workflow, queues: Iterable[str] | None) -> None:
        declared = queues_of(wf)
        if queues is None:
            names = [*sorted(declared), *([] if DEFAULT_QUEUE in declared else [DEFAULT_QUEUE])]
        else:
            names = list(dict.fromkeys(queues))
            if not names or not all(isinstance(name, str) for name in names):
                raise ConfigurationError(
                    f"worker of {wf!r}: queues must name at least one queue, got {queues!r}"
                )
            unknown = [name for name in names if name not in declared and name != DEFAULT_QUEUE]
            if unknown:
                raise ConfigurationError(
                    f"worker of {wf!r}: queue {', '.join(map(repr, unknown))} is not declared in this code "
                    f"(declared: {', '.join(sorted(declared)) or 'none'}; {DEFAULT_QUEUE!r} is every "
                    "workflow without queue=)"
                )
        self.names = tuple(names)
        self.queues = [declared[name] for name in names if name in declared]
        self._workflows = wf.executor.workflows
        self.running: collections.Counter[str] = collections.Counter()
        """Runs of each queue executing in this process."""
        self._turn = 0

    # Read at each use: workflows may be declared after the worker is made.
    @property
    def workflows(self) -> frozenset[str]:
        return frozenset(self._workflows)

    @property
    def unqueued(self) -> frozenset[str]:
        """Workflows whose runs without a queue entry this worker takes from ``due_runs``."""
        return frozenset(name for name, wfn in self._workflows.items() if _queue_name(wfn) in self.names)

    @property
    def scheduled(self) -> list[WorkflowFunction[Any, Any]]:
        """Scheduled workflows of the queues it serves: its ``Scheduler`` starts their ticks."""
        return [w for w in self._workflows.values() if w.schedule and _queue_name(w) in self.names]

    async def claim(
        self, store: Store, now: float, free: int, owner: str, lease_seconds: float
    ) -> list[tuple[RunRecord, Lease, str]]:
        """Claim up to ``free`` runs from the queues, each within its limits; with the queue's name."""
        if not self.queues:
            return []
        require_queues(store, f"a worker of queue {self.queues[0].name!r}")
        claimed: list[tuple[RunRecord, Lease, str]] = []
        self._turn = (self._turn + 1) % len(self.queues)
        for queue in self.queues[self._turn :] + self.queues[: self._turn]:
            wanted = self._room(queue, free - len(claimed))
            if wanted <= 0:
                continue
            taken = await store.claim_queued(
                queue.name, now, owner, lease_seconds, queue.limits, limit=wanted, workflows=self.workflows
            )
            claimed.extend((run, lease, queue.name) for run, lease in taken)
            self.running[queue.name] += len(taken)
        return claimed

    def _room(self, queue: Queue, free: int) -> int:
        if queue.worker_concurrency is None:
            return free
        return min(free, queue.worker_concurrency - self.running[queue.name])

    def finished(self, queue: str | None) -> None:
        if queue is not None:
            self.running[queue] -= 1


def _queue_name(wfn: WorkflowFunction[Any, Any]) -> str:
    return wfn.queue or DEFAULT_QUEUE
