"""The store contract suite for durable.

Two ways to use it:

* ``pytest --pyargs durable_contract_tests --durable-store NAME`` runs the whole suite over an
  installed backend (every installed backend without ``--durable-store``).
* ``class TestMyStore(StoreContract)`` with a ``store_factory`` fixture runs it over your store
  (see ``StoreFactory`` for the fixture's exact contract).

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

__all__ = [
    "ContractOverrideError",
    "StoreContract",
    "StoreFactory",
    "StoreHarness",
    "override_contract",
    "requires",
]

_LAZY = {
    "StoreContract": "durable_contract_tests._contract",
    "ContractOverrideError": "durable_contract_tests._base",
    "StoreFactory": "durable_contract_tests._base",
    "StoreHarness": "durable_contract_tests._base",
    "override_contract": "durable_contract_tests._base",
    "requires": "durable_contract_tests._base",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'durable_contract_tests' has no attribute {name!r}")
