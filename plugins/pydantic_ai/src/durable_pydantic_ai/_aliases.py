"""Renaming an agent, a toolset or a tool without stranding the runs recorded under the old name.

The persisted step names (``{agent}__model.request``,
``{agent}__function_toolset__{id}.call_tool@{tool}(...)``) are compatibility data.
``DurableAgent(..., aliases={"old": "new"})`` says that ``new`` (the agent's name, a toolset
``id`` or a tool name) was called ``old``: a run whose journal holds a step under the old name
replays it (nothing executed again), new runs record under the new name, and the recorded model
responses that call tool ``old`` call ``new`` when they are replayed. Once no run recorded under
``old`` remains (``durable replay`` without the alias says), the alias can go.

A model request's digest holds the names of the tools it offered, so a changed tool list is an
incompatible run. ``added_tools=["audit"]`` declares tools added since runs in flight were
recorded: their requests, recorded without them, still replay (a recorded response cannot have
called a tool it was not offered). It can go when ``aliases`` can.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from durable.errors import ConfigurationError

__all__ = ["Aliases"]


class Aliases:
    """Old name -> current name, for agent names, toolset ids and tool names alike."""

    def __init__(
        self, owner: str, mapping: Mapping[str, str] | None, added_tools: Iterable[str] = ()
    ) -> None:
        self._added = frozenset(added_tools)
        self._new_of: dict[str, str] = {}
        self._old_of: dict[str, list[str]] = {}
        for old, new in (mapping or {}).items():
            if not (isinstance(old, str) and isinstance(new, str) and old and new) or old == new:
                raise ConfigurationError(
                    f"DurableAgent {owner!r}: aliases maps an old name to the current one (two different "
                    f"non-empty strings), got {old!r}: {new!r}"
                )
            self._new_of[old] = new
            self._old_of.setdefault(new, []).append(old)
        for old, new in self._new_of.items():
            if new in self._new_of:
                raise ConfigurationError(
                    f"DurableAgent {owner!r}: aliases {old!r} -> {new!r} -> {self._new_of[new]!r}: map every "
                    f"old name to the current one ({old!r}: {self._new_of[new]!r})"
                )

    def __bool__(self) -> bool:
        """Whether any name has an alias (then units have more than one candidate name)."""
        return bool(self._new_of)

    def names(self, current: str) -> list[str]:
        """``current`` and the names it had before, current first."""
        return [current, *self._old_of.get(current, ())]

    def operation_ids(self, operation_id: Any) -> list[Any]:
        """The operation id, then the same with each old id of its toolset."""
        toolset_id = getattr(operation_id, "toolset_id", None)
        if not isinstance(toolset_id, str):
            return [operation_id]
        return [dataclasses.replace(operation_id, toolset_id=name) for name in self.names(toolset_id)]

    def tool_lists(self, names: list[str]) -> list[list[str]]:
        """A current tool list, then as a run recorded before the renames and additions had it."""
        current = sorted(names)
        before = sorted(self._old_of.get(name, [name])[0] for name in names if name not in self._added)
        return [current, before] if before != current else [current]

    def rewrite_response(self, payload: Any) -> Any:
        """A recorded model response (its JSON) whose tool calls name old tools, with current names."""
        if not self._new_of or not isinstance(payload, dict):
            return payload
        if isinstance(payload.get("response"), dict):  # pydantic-ai's StreamedActivityResult (< 2.60)
            return {**payload, "response": self.rewrite_response(payload["response"])}
        parts = payload.get("parts")
        if not isinstance(parts, list):
            return payload
        renamed = [
            {**part, "tool_name": self._new_of[part["tool_name"]]}
            if isinstance(part, dict) and part.get("tool_name") in self._new_of
            else part
            for part in parts
        ]
        return {**payload, "parts": renamed}
