"""The store contract suite for durable.

Two ways to use it:

* ``pytest --pyargs durable_contract_tests --durable-store NAME`` runs the whole suite over an
  installed backend (every installed backend without ``--durable-store``).
* ``class TestMyStore(StoreContract)`` with a ``store_factory`` fixture runs it over your store
  (see ``StoreFactory`` for the fixture's exact contract).

Your store's own server tests can take its URL with ``server_url(name, example)``: a missing
server then skips them under one summary line per backend, as the suite's own tests.

This package is also a pytest plugin, so it is imported by every pytest run where it is
installed: the names below are imported on first use, never at plugin load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from durable_contract_tests._base import (
        ContractOverrideError,
        StoreFactory,
        StoreHarness,
        override_contract,
        requires,
    )
    from durable_contract_tests._contract import StoreContract
    from durable_contract_tests._servers import ServerMissing, missing_server, server_url

__all__ = [
    "ContractOverrideError",
    "ServerMissing",
    "StoreContract",
    "StoreFactory",
    "StoreHarness",
    "missing_server",
    "override_contract",
    "requires",
    "server_url",
]

_LAZY = {
    "StoreContract": "durable_contract_tests._contract",
    "ContractOverrideError": "durable_contract_tests._base",
    "StoreFactory": "durable_contract_tests._base",
    "StoreHarness": "durable_contract_tests._base",
    "override_contract": "durable_contract_tests._base",
    "requires": "durable_contract_tests._base",
    "ServerMissing": "durable_contract_tests._servers",
    "missing_server": "durable_contract_tests._servers",
    "server_url": "durable_contract_tests._servers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'durable_contract_tests' has no attribute {name!r}")
