"""Declarations: what a store and its plugin say about it agree, and mean what the suite knows.

``durable stores`` shows the plugin's ``StoreBackend.capabilities``; the suite and the engine go
by ``Store.capabilities``. A mismatch, or a misspelt name (which would silently skip the tests of
the capability it meant), fails here.
"""

from __future__ import annotations

import pytest

from durable._plugins import get_plugin_manager
from durable.hookspecs import StoreBackend
from durable.store import Capability, Store
from durable_contract_tests._base import ContractBase, StoreHarness

FOREIGN_URL = "durable-contract-no-such-scheme://somewhere/else"


def _backends_of(store: Store, harness: StoreHarness) -> list[tuple[StoreBackend, str]]:
    """The installed backends (with their plugin's name) whose store class is the store's."""
    known = harness.backend()
    found = []
    for backend, plugin in {b.name: (b, p) for b, p in get_plugin_manager().backends().values()}.values():
        try:
            cls = backend.load_store_class()
        except Exception as exc:
            if known is not None and backend.name == known.name:
                pytest.fail(
                    f"backend {backend.name!r}: store_class {backend.store_class!r} cannot be imported: "
                    f"{type(exc).__name__}: {exc}",
                    pytrace=False,
                )
            continue
        if cls is type(store) or (known is not None and backend.name == known.name):
            found.append((backend, plugin))
    return found


class DeclarationContract(ContractBase, contract=True):
    """``Store.capabilities``, ``StoreBackend.capabilities`` and the plugin's store hook."""

    async def test_the_store_declares_only_capabilities_the_suite_knows(self, store: Store) -> None:
        declared = store.capabilities
        assert isinstance(declared, frozenset) and all(isinstance(c, str) for c in declared), (
            f"{type(store).__qualname__}.capabilities must be a frozenset of names, not {declared!r}"
        )
        unknown = sorted(declared - Capability.ALL)
        assert not unknown, (
            f"{type(store).__qualname__}.capabilities holds {unknown}, which no test knows (a misspelling "
            f"skips the tests it meant); the capabilities are {sorted(Capability.ALL)}"
        )
        assert type(store).capabilities == declared, "capabilities is declared on the class, for every store"

    async def test_the_plugin_declares_the_capabilities_the_store_class_declares(
        self, store: Store, stores: StoreHarness
    ) -> None:
        found = _backends_of(store, stores)
        if not found:
            pytest.skip(
                f"no installed durable plugin names {type(store).__qualname__} as its store_class: install "
                "the store's distribution (its 'durable' entry point) to check its StoreBackend too"
            )
        for backend, plugin in found:
            assert backend.capabilities == store.capabilities, (
                f"plugin {plugin!r} declares backend {backend.name!r} with capabilities "
                f"{sorted(backend.capabilities)} (what `durable stores` shows), but "
                f"{type(store).__qualname__}.capabilities is {sorted(store.capabilities)} (what the engine "
                "and this suite go by): declare one frozenset and use it in both"
            )

    async def test_the_plugin_makes_an_unopened_store_of_its_class_and_leaves_other_urls_alone(
        self, store: Store, stores: StoreHarness
    ) -> None:
        found = _backends_of(store, stores)
        if not found:
            pytest.skip(f"no installed durable plugin names {type(store).__qualname__} as its store_class")
        manager = get_plugin_manager()
        url = stores.url_for(store)
        for backend, plugin in found:
            hook = manager.hook.durable_store_from_url
            impls = [impl for impl in hook.get_hookimpls() if impl.plugin_name == plugin]
            assert impls, f"plugin {plugin!r} declares backend {backend.name!r} but no durable_store_from_url"
            for impl in impls:
                assert impl.function(url=FOREIGN_URL, options={}) is None, (
                    f"plugin {plugin!r}: durable_store_from_url must return None for a URL whose scheme "
                    f"is not its own ({FOREIGN_URL!r}): the first non-None answer wins for every URL"
                )
            if url is None:
                continue
            made, cls = manager.store_from_url(url), backend.load_store_class()
            assert isinstance(made, cls), (
                f"plugin {plugin!r} made {made!r} from {url!r}, not a {cls.__qualname__}"
            )
