"""Store URLs for tests that need queues: every store of this repository that declares
``Capability.QUEUES``, each a fresh store (a temporary SQLite file, an isolated Postgres schema
or Redis key prefix from the store's own ``isolated_url``, dropped after).

A store whose backend does not declare the capability is skipped with that reason (the Postgres
store until its queues land); a server store whose plugin is missing skips too, unless
``DURABLE_TEST_STRICT=1``; a missing server skips or fails as the contract suite decides
(``server_url``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from isolated_stores import installed_backend, isolated_url

from durable.store import Capability

QUEUE_STORES = ("memory", "sqlite", "postgres", "redis")
SHARED_QUEUE_STORES = ("sqlite", "postgres", "redis")
"""The stores several processes may share (``multi-process``)."""


def queue_store_url(name: str, tmp_path: Path, label: str) -> Iterator[str]:
    """Yield a fresh store URL of backend ``name``, or skip; clean it up after."""
    backend = installed_backend(name)
    if Capability.QUEUES not in backend.capabilities:
        pytest.skip(f"the {name} store does not declare Capability.QUEUES ({Capability.QUEUES!r})")
    if name == "memory":
        yield "memory://"
        return
    if name == "sqlite":
        yield f"sqlite:///{tmp_path / f'{label}.db'}"
        return
    with isolated_url(name, label) as url:
        yield url
