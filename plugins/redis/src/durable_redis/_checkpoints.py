"""Checkpoints as ``save_steps`` script calls; concurrent ones of one run merged into one call.

A batch of calls from many callers is sent as one pipeline. Each script call may touch only
one run's keys, so checkpoints are merged per run and lease token, in submission order: one
script call stores them all atomically, and its reply is split so that each caller reads its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from durable.store import Lease, StepRecord
from durable_redis import _keys as k
from durable_redis._calls import Call, copy_error


def checkpoint(keys: k.KeySpace, lease: Lease, steps: Sequence[StepRecord]) -> Call:
    """The ``save_steps`` call storing ``steps`` under ``lease``.

    ``ARGV`` is the token, then key and encoded value of each step. The reply is ``1`` when every
    step was stored, ``{1, kept...}`` when some was not (see ``stored_steps``), or
    ``{0, current_token}`` for a stale token.
    """
    args = [str(lease.token)]
    for step in steps:
        args += [step.key, k.encode_step(step)]
    return Call(
        f"checkpointing run {lease.run_id!r}",
        keys.run_keys(lease.run_id)[:2],
        args,
        script="save_steps",
        group=(lease.run_id, lease.token),
    )


def merged(calls: Sequence[Call]) -> Call:
    """One call doing what ``calls`` (one call, or checkpoints of one group) do, in order."""
    if len(calls) == 1:
        return calls[0]
    args = calls[0].args[:1]  # the token
    for call in calls:
        args += call.args[1:]
    return replace(calls[0], args=args)


def own_replies(reply: Any, calls: Sequence[Call]) -> list[Any]:
    """What each of ``calls`` would have been answered alone, from their merged call's ``reply``."""
    if len(calls) == 1:
        return [reply]
    if isinstance(reply, Exception):
        return [copy_error(reply) for _ in calls]
    if reply == 1 or reply[0] == 0:  # every step stored, or a stale token: nothing stored
        return [reply for _ in calls]
    kept = reply[1:]
    replies: list[Any] = []
    for call in calls:
        count = len(call.args) // 2  # the token, then two arguments per step
        replies.append([1, *kept[:count]])
        kept = kept[count:]
    return replies


def stored_steps(steps: Sequence[StepRecord], kept: Sequence[str]) -> list[StepRecord]:
    """What is stored after the script answered ``kept`` for ``steps``: ``''`` means this write
    was stored, anything else is the completed step that an earlier writer left in place."""
    return [
        step if value == "" else k.decode_step(step.run_id, step.key, value)
        for step, value in zip(steps, kept, strict=True)
    ]
