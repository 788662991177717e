"""Store URLs for tests that need queues: every store of this repository that declares
``Capability.QUEUES``, each a fresh store (a temporary SQLite file, an isolated Postgres schema
or Redis key prefix from the store's own ``isolated_url``, dropped after).

A store whose backend does not declare the capability is skipped with that reason (the Postgres
store until its queues land); a server store whose plugin is missing skips too, unless
``DURABLE_TEST_STRICT=1``; a missing server skips or fails as the contract suite decides
(``server_url``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable._plugins import get_plugin_manager
from durable.store import Capability

QUEUE_STORES = ("memory", "sqlite", "postgres", "redis")
SHARED_QUEUE_STORES = ("sqlite", "postgres", "redis")
"""The stores several processes may share (``multi-process``)."""
SERVERS = {"postgres": "postgresql://postgres@127.0.0.1:5432/test", "redis": "redis://127.0.0.1:6379/0"}


def queue_store_url(name: str, tmp_path: Path, label: str) -> Iterator[str]:
    """Yield a fresh store URL of backend ``name``, or skip; clean it up after."""
    try:
        backend = get_plugin_manager().backend_named(name)
    except Exception as exc:
        if os.environ.get("DURABLE_TEST_STRICT") == "1":
            raise
        pytest.skip(f"the {name} store is not installed: {exc}")
    if Capability.QUEUES not in backend.capabilities:
        pytest.skip(f"the {name} store does not declare Capability.QUEUES ({Capability.QUEUES!r})")
    if name == "memory":
        yield "memory://"
        return
    if name == "sqlite":
        yield f"sqlite:///{tmp_path / f'{label}.db'}"
        return
    from durable_contract_tests import server_url

    base = server_url(name, SERVERS[name])
    token = f"{label}_{uuid.uuid4().hex[:10]}"
    url = backend.isolated_url(base, token) if backend.isolated_url else base
    try:
        yield url
    finally:
        drop = backend.drop_isolated
        if drop is not None:

            async def dropped() -> None:
                await drop(url)

            asyncio.run(dropped())
