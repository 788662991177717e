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


def id_problem(text: str, limit: int | None = None) -> str | None:
    """Why ``text`` cannot name a run, step, signal or delivery in every store, or ``None``.

    NUL is refused (PostgreSQL cannot store it in text), and so are lone surrogates (no store
    can: UTF-8 has no encoding for them).
    """
    if limit is not None and len(text) > limit:
        return f"is longer than {limit} characters ({len(text)})"
    if "\x00" in text:
        return f"contains NUL (\\x00, at index {text.index(chr(0))}), which PostgreSQL cannot store"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (
                f"contains a lone surrogate ({text[exc.start]!r} at index {exc.start}), which UTF-8 "
                "cannot encode"
            )
    return None


def shown(text: str) -> str:
    """``text`` for an error message: quoted, and cut at 80 characters."""
    return repr(text) if len(text) <= 80 else repr(text[:80]) + "..."


def check_id(text: str, what: str) -> str:
    """``text`` if it can name a ``what`` (a signal name, a delivery id...) in every store."""
    if not isinstance(text, str):
        raise ConfigurationError(f"{what} must be a str, got {type(text).__name__}")
    problem = id_problem(text)
    if problem is not None:
        raise ConfigurationError(f"{what} {shown(text)} {problem}")
    return text


MAX_NAME_LENGTH = 200
"""The longest task or workflow name: every step key and listing row carries it."""


def check_task_name(name: str) -> str:
    """``name`` if it can name a task or workflow."""
    if not name or any(ch in name for ch in RESERVED) or not name.isprintable():
        raise ConfigurationError(
            f"task name {name!r} is not allowed: it must be non-empty, printable and contain none of "
            f"{' '.join(RESERVED)} (they structure step keys); pass name=... to @wf.task"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigurationError(
            f"name {shown(name)} is longer than {MAX_NAME_LENGTH} characters ({len(name)}); "
            "pass a shorter name=..."
        )
    return name


def escape(text: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def task_base(task: str, step_id: str | None) -> str:
    if step_id is None:
        return task
    if not isinstance(step_id, str):
        raise ConfigurationError(f"task {task!r}: step_id must be a str, got {type(step_id).__name__}")
    problem = id_problem(step_id)
    if problem is not None:  # refused at the call, before the body runs
        raise ConfigurationError(f"task {task!r}: step_id {shown(step_id)} {problem}")
    return f"{task}@{escape(step_id)}"


def system_base(kind: str, name: str | None = None) -> str:
    if name is None:
        return f"durable:{kind}"
    problem = id_problem(name)
    if problem is not None:
        raise ConfigurationError(f"{kind} name {shown(name)} {problem}")
    return f"durable:{kind}@{escape(name)}"


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

    def reached(self, key: str) -> bool:
        """Whether this execution has taken ``key``, or the key of a step it is nested in (whose
        recorded result replays without reaching the steps inside it)."""
        scope, _, part = key.rpartition("/")
        base, sep, number = part.rpartition("#")
        if not (sep and number.isdigit()):
            base, number = part, "0"
        if self._counts.get(scope, {}).get(base, 0) > int(number):
            return True
        return bool(scope) and self.reached(scope)
