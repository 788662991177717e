"""A third-party durable store, packaged as a plugin: ``jsonfile:///relative.json`` or
``jsonfile:////absolute/path.json`` (the SQLite URL convention).

Installing the distribution registers it through the ``durable`` entry point group, so
``Workflow("app", db="jsonfile:///app.json")`` works, ``durable stores`` lists it, and
``pytest --pyargs durable_contract_tests --durable-store jsonfile`` checks it.
"""

from __future__ import annotations

from typing import Any

from durable.hookspecs import StoreBackend, hookimpl
from durable.store import Store
from durable_example_store._store import JsonFileStore

__all__ = ["JsonFileStore"]

SCHEME = "jsonfile"


def _isolated_url(base_url: str, token: str) -> str:
    # The contract suite gives a store without a server a temporary directory as its base URL
    # (jsonfile:////tmp/durable-jsonfile-...); each test's store is a file of its own in it.
    return f"{base_url.rstrip('/')}/{token}.json"


@hookimpl
def durable_store_backends() -> list[StoreBackend]:
    return [
        StoreBackend(
            name="jsonfile",
            schemes=(SCHEME,),
            description="One JSON file, locked per operation (an example third-party store).",
            store_class=JsonFileStore,
            install_hint="pip install durable-example-store",
            capabilities=JsonFileStore.capabilities,  # the same frozenset: one declaration
            isolated_url=_isolated_url,
        )
    ]


@hookimpl
def durable_store_from_url(url: str, options: dict[str, Any]) -> Store | None:
    if not url.lower().startswith(SCHEME + ":"):
        return None
    return JsonFileStore.from_url(url)
