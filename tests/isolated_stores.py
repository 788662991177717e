"""A store of its own on a shared test server: the backend's ``isolated_url`` (a Postgres schema,
a Redis key prefix) of ``DURABLE_TEST_<NAME>_URL``, dropped after the test (``drop_isolated``).
A missing server skips or fails as the contract suite decides (``server_url``); a backend whose
plugin is not installed skips, unless ``DURABLE_TEST_STRICT=1``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from durable._plugins import get_plugin_manager
from durable.hookspecs import StoreBackend

SERVERS = {"postgres": "postgresql://postgres@127.0.0.1:5432/test", "redis": "redis://127.0.0.1:6379/0"}
"""An example URL of each server backend's test server, for the message of a missing one."""


def installed_backend(name: str) -> StoreBackend:
    """The backend ``name``, or a skip (a failure in strict mode) when its plugin is missing."""
    try:
        return get_plugin_manager().backend_named(name)
    except Exception as exc:
        if os.environ.get("DURABLE_TEST_STRICT") == "1":
            raise
        pytest.skip(f"the {name} store is not installed: {exc}")


@contextlib.contextmanager
def isolated_url(name: str, label: str) -> Iterator[str]:
    """A fresh URL of server backend ``name`` that no other test shares, its data dropped after."""
    from durable_contract_tests import server_url

    backend = installed_backend(name)
    base = server_url(name, SERVERS[name])
    url = backend.isolated_url(base, f"{label}_{uuid.uuid4().hex[:10]}") if backend.isolated_url else base
    try:
        yield url
    finally:
        drop = backend.drop_isolated
        if drop is not None:

            async def dropped() -> None:
                await drop(url)

            asyncio.run(dropped())


@contextlib.contextmanager
def store_url(name: str, directory: os.PathLike[str] | str, label: str) -> Iterator[str]:
    """A fresh URL of backend ``name``: ``memory://``, an SQLite file in ``directory``, or an
    ``isolated_url`` of a server backend (dropped after)."""
    if name == "memory":
        yield "memory://"
    elif name == "sqlite":
        yield f"sqlite:///{os.path.join(directory, label + '.db')}"
    else:
        with isolated_url(name, label) as url:
            yield url
