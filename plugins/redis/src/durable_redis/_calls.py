"""Store operations as calls to the store's one batcher.

Every Redis command a store operation sends is a ``Call``: a Lua script run on one run's keys
(and, for a script that changes a run, the index of live runs) or a plain command such as the
run index's ``ZADD``.
Calls submitted while another round trip is in flight are sent together in the next one, as a
non-transactional pipeline; each caller reads its own reply, as if it had sent its call alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rx
from redis.commands.core import AsyncScript


@dataclass(eq=False)
class Call:
    """One command: the Lua script ``script`` on ``keys`` with ``args``, or the plain command ``args``."""

    what: str
    """What the call does, for error messages ("creating run 'x'")."""
    keys: list[str]
    """The script's ``KEYS``: one run's, then the index of live runs if it changes the run; empty
    for a plain command."""
    args: list[Any]
    """The script's ``ARGV``, or the whole plain command."""
    script: str | None = None
    group: tuple[str, int] | None = None
    """Calls of one batch with the same group are merged into one (see ``_checkpoints``)."""
    retried: bool = False
    """Set when the call is sent again after a reply was lost: it may already have run."""

    @classmethod
    def plain(cls, what: str, *command: Any) -> Call:
        return cls(what, [], list(command))

    def command(self, scripts: Mapping[str, AsyncScript]) -> list[Any]:
        """The command as sent: EVALSHA of the loaded script, or the plain command."""
        if self.script is None:
            return self.args
        return ["EVALSHA", scripts[self.script].sha, len(self.keys), *self.keys, *self.args]


def grouped(calls: Sequence[Call]) -> list[list[int]]:
    """Indexes of ``calls`` by the call each is sent in, in order of first appearance: calls of
    one group share one, every other call is sent as it is."""
    groups: dict[object, list[int]] = {}
    for index, call in enumerate(calls):
        groups.setdefault(index if call.group is None else call.group, []).append(index)
    return list(groups.values())


def copy_error(error: Exception) -> Exception:
    """An exception like ``error`` for one caller alone (a raised exception collects the
    traceback of every task that raises it)."""
    try:
        copy = type(error)(*error.args)
    except Exception:  # a constructor with other arguments: share the original
        return error
    copy.__cause__ = error.__cause__
    return copy


def wrong_type(error: Exception) -> bool:
    """Whether ``error`` is a WRONGTYPE reply, also from inside a script."""
    return isinstance(error, rx.ResponseError) and "WRONGTYPE" in str(error)
