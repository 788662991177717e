"""Concurrent checkpoints grouped into one ``save_steps`` script call per run and lease.

A batch of checkpoints from many callers is sent as one pipeline. Each script call may touch
only one run's keys (one hash slot, as Redis Cluster requires), so the batch is grouped by
run; the calls of one run under one lease token are merged, in submission order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from durable.store import Lease, StepRecord
from durable_redis import _keys as k

Checkpoint = tuple[Lease, tuple[StepRecord, ...]]
"""One caller's write: steps of the lease's run, stored atomically."""


@dataclass
class RunWrite:
    """The checkpoints of one run under one lease token: one ``save_steps`` script call."""

    lease: Lease
    members: list[int] = field(default_factory=list)
    """Indexes of the batch's checkpoints merged into this call, in order."""
    steps: list[StepRecord] = field(default_factory=list)

    def args(self) -> list[str]:
        """The script's ``ARGV``: token, then key and encoded value of each step."""
        args = [str(self.lease.token)]
        for step in self.steps:
            args += [step.key, k.encode_step(step)]
        return args


def group_by_run(batch: Sequence[Checkpoint]) -> list[RunWrite]:
    """One ``RunWrite`` per (run, lease token), in order of first appearance."""
    writes: dict[tuple[str, int], RunWrite] = {}
    for index, (lease, steps) in enumerate(batch):
        write = writes.setdefault((lease.run_id, lease.token), RunWrite(lease))
        write.members.append(index)
        write.steps.extend(steps)
    return list(writes.values())


def stored_steps(steps: Sequence[StepRecord], kept: Sequence[str]) -> list[StepRecord]:
    """What is stored after the script answered ``kept`` for ``steps``: ``''`` means this write
    was stored, anything else is the completed step that an earlier writer left in place."""
    return [
        step if value == "" else k.decode_step(step.run_id, step.key, value)
        for step, value in zip(steps, kept, strict=True)
    ]
