"""Step keys: where a step sits in a run, stable across replays.

Grammar (``/`` nests a step inside the step that called it)::

    key   = part ("/" part)*
    part  = base ["#" n]          n >= 1: the (n+1)-th call of the same base in one scope
    base  = task | task "@" escaped-step-id | "durable:" kind ["@" escaped-name]

Task names may not contain ``# @ / :`` and step ids are escaped, so an explicit
``step_id="t#1"`` can never equal the automatic key ``t#1``.
"""

from __future__ import annotations

from durable.errors import ConfigurationError

RESERVED = "#@/:"
_ESCAPES = {"%": "%25", "#": "%23", "/": "%2F", "@": "%40"}


def check_task_name(name: str) -> str:
    if not name or any(ch in name for ch in RESERVED) or not name.isprintable():
        raise ConfigurationError(
            f"task name {name!r} is not allowed: it must be non-empty, printable and contain none of "
            f"{' '.join(RESERVED)} (they structure step keys); pass name=... to @wf.task"
        )
    return name


def escape(text: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def task_base(task: str, step_id: str | None) -> str:
    if step_id is None:
        return task
    if not isinstance(step_id, str):
        raise ConfigurationError(f"task {task!r}: step_id must be a str, got {type(step_id).__name__}")
    return f"{task}@{escape(step_id)}"


def system_base(kind: str, name: str | None = None) -> str:
    return f"durable:{kind}" if name is None else f"durable:{kind}@{escape(name)}"


def make_key(scope: str, base: str, occurrence: int) -> str:
    part = base if occurrence == 0 else f"{base}#{occurrence}"
    return f"{scope}/{part}" if scope else part


class KeyCounter:
    """Counts calls per (scope, base) so the n-th call gets the same key on every replay.

    Keys are taken when a task is *called*, not when it starts running, so tasks
    started together with ``asyncio.gather`` get keys in call order.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = {}

    def next_key(self, scope: str, base: str) -> str:
        counts = self._counts.get(scope)
        if counts is None:  # not setdefault: it would build a dict on every call
            counts = self._counts[scope] = {}
        n = counts.get(base, 0)
        counts[base] = n + 1
        if not scope:  # the common case, spelled out: every task call takes a key
            return f"{base}#{n}" if n else base
        return make_key(scope, base, n)

    def reset_scope(self, scope: str) -> None:
        """Forget the counts inside a step before it is attempted again."""
        self._counts.pop(scope, None)
