"""Names for messages: how a type or a value is shown in an error, and annotations read safely."""

from __future__ import annotations

import typing
from collections.abc import Callable
from functools import lru_cache
from typing import Any


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp).replace("typing.", "")


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{_type_name(type(value))} {text}"


@lru_cache(maxsize=512)
def _type_hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=False)
    except Exception:
        return {}


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The declared return type of ``fn`` (``Any`` when absent or unresolvable)."""
    return _type_hints(fn).get("return", Any)
