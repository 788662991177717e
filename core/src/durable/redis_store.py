"""``from durable.redis_store import RedisStore``, as in the original library (plugin ``durable-redis``)."""

from __future__ import annotations

from typing import Any

__all__ = ["RedisStore"]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from durable._plugins import import_store_class

        return import_store_class(name)
    raise AttributeError(f"module 'durable.redis_store' has no attribute {name!r}")
