"""What every contract class shares: the ``store_factory`` contract, the per-test store harness,
capability gates and the guard against silently overridden contract tests."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import pytest
import pytest_asyncio

from durable.hookspecs import StoreBackend
from durable.store import Store

__all__ = [
    "ContractBase",
    "ContractOverrideError",
    "StoreFactory",
    "StoreHarness",
    "override_contract",
    "requires",
]

F = TypeVar("F", bound=Callable[..., Any])

OVERRIDE_ATTR = "__durable_contract_override__"
REQUIRES_MARK = "durable_requires"


class StoreFactory(Protocol):
    """The value of the ``store_factory`` fixture a ``StoreContract`` subclass provides.

    ``store_factory()`` returns a new, *unopened* ``Store`` over fresh, empty data that no
    other store shares. ``store_factory(same_data_as=store)`` returns a new, unopened store
    object over the same data as ``store`` (an earlier result of the factory: open, closed,
    or not opened yet): the suite uses it to reopen persistent stores and to open a second
    connection (or a subprocess) on multi-process stores, so it is only called for stores
    whose ``capabilities`` include ``persistent`` or ``multi-process``.

    The result may also be an awaitable of the store. The suite opens every store it gets
    and closes it at the end of the test. For ``multi-process`` stores the two-process test
    pickles the unopened store from ``store_factory(same_data_as=...)`` and opens it in a
    fresh interpreter, so it must be picklable and its class importable there.
    """

    def __call__(self, same_data_as: Store | None = None) -> Store | Awaitable[Store]: ...


class ContractOverrideError(TypeError):
    """A subclass replaced a contract test (or fixture) without ``@override_contract(reason)``."""


def override_contract(reason: str) -> Callable[[F], F]:
    """Declare that a method deliberately replaces a contract test, and why.

    Without it, a ``StoreContract`` subclass that defines a contract test's name fails
    at class creation: a store must not pass the suite by shadowing a test it fails.
    The reason is shown in the terminal summary of the run.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise TypeError(
            "override_contract() needs a non-empty reason saying why the contract test is replaced"
        )

    def mark(fn: F) -> F:
        setattr(fn, OVERRIDE_ATTR, reason)
        return fn

    return mark


def requires(*capabilities: str) -> pytest.MarkDecorator:
    """Skip the test, with a reason, for stores lacking any of ``capabilities``."""
    mark: pytest.MarkDecorator = getattr(pytest.mark, REQUIRES_MARK)(*capabilities)
    return mark


class StoreHarness:
    """Makes, opens and finally closes the stores of one test through the ``store_factory``."""

    def __init__(self, factory: StoreFactory) -> None:
        self._factory = factory
        self._spare: Store | None = None
        self._opened: list[Store] = []

    async def make(self, same_data_as: Store | None = None) -> Store:
        """A new unopened store: fresh data, or the data of ``same_data_as``."""
        if same_data_as is None and self._spare is not None:
            made: object = self._spare
            self._spare = None
            return made  # type: ignore[return-value]
        # A factory for a store without shared data may take no argument at all.
        made = self._factory() if same_data_as is None else self._factory(same_data_as=same_data_as)
        if inspect.isawaitable(made):
            made = await made
        if not isinstance(made, Store):
            raise TypeError(
                f"store_factory returned {made!r}; it must return (or resolve to) an unopened "
                "durable.store.Store instance"
            )
        return made

    async def open(self, store: Store) -> Store:
        await store.open()
        self._opened.append(store)
        return store

    def adopt(self, store: Store) -> Store:
        """Close ``store``, which the test opened itself, when the test ends."""
        self._opened.append(store)
        return store

    def scratch_directory(self) -> str | None:
        """The directory the factory's stores keep their files in, where it says (installed
        backends given a temporary directory do): tests check what opening leaves there."""
        directory = getattr(self._factory, "scratch_directory", None)
        return directory if isinstance(directory, str) else None

    def backend(self) -> StoreBackend | None:
        """The installed backend the factory makes stores of, where it says."""
        backend = getattr(self._factory, "backend", None)
        return backend if isinstance(backend, StoreBackend) else None

    def url_for(self, store: Store) -> str | None:
        """The URL of ``store``'s data, where the factory says (``url_for``)."""
        url_for = getattr(self._factory, "url_for", None)
        return url_for(store) if callable(url_for) else None

    async def new(self) -> Store:
        """A new opened store over fresh, empty data."""
        return await self.open(await self.make())

    async def reopen(self, store: Store) -> Store:
        """A new opened store object over the same data as ``store``."""
        return await self.open(await self.make(same_data_as=store))

    async def capabilities(self) -> frozenset[str]:
        if self._spare is None:
            # Kept for the test's first store, so checking costs no extra store.
            self._spare = await self.make()
        return frozenset(self._spare.capabilities)

    async def blueprint(self, store: Store) -> bytes:
        """A pickled recipe another process turns into a store over ``store``'s data: the
        factory's ``url_for(store)`` if it has one, else the unopened store itself."""
        made = await self.make(same_data_as=store)
        url_for = getattr(self._factory, "url_for", None)
        if callable(url_for):
            return pickle.dumps(url_for(made))
        try:
            return pickle.dumps(made)
        except Exception as exc:
            raise TypeError(
                f"{type(made).__qualname__} cannot be pickled while unopened ({exc}); the two-process "
                "test sends the unopened store from store_factory(same_data_as=...) to its subprocesses"
            ) from exc

    async def store_name(self) -> str:
        await self.capabilities()
        assert self._spare is not None
        return type(self._spare).__qualname__

    async def close_all(self) -> None:
        opened, self._opened = self._opened, []
        errors: list[BaseException] = []
        for store in reversed(opened):
            try:
                await store.close()
            except Exception as exc:  # close the others before reporting
                errors.append(exc)
        if errors:
            raise errors[0]


_CONTRACT_MEMBERS: dict[str, object] = {}
"""Every attribute a contract class defines, by name: what a subclass may not shadow silently."""


class ContractBase:
    """Base of the contract classes. Subclasses written by store authors are guarded;
    classes declared with ``contract=True`` define the suite."""

    def __init_subclass__(cls, *, contract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if contract:
            _register_definitions(cls)
        else:
            _check_overrides(cls)

    @pytest_asyncio.fixture
    async def stores(self, store_factory: StoreFactory) -> AsyncIterator[StoreHarness]:
        """The test's stores; every store opened through it is closed when the test ends."""
        harness = StoreHarness(store_factory)
        try:
            yield harness
        finally:
            await harness.close_all()

    @pytest_asyncio.fixture
    async def store(self, stores: StoreHarness) -> Store:
        """An opened store over fresh, empty data."""
        return await stores.new()

    @pytest_asyncio.fixture(autouse=True)
    async def _capability_gate(self, request: pytest.FixtureRequest, stores: StoreHarness) -> None:
        needed: set[str] = set()
        for marker in request.node.iter_markers(REQUIRES_MARK):
            needed.update(marker.args)
        if not needed:
            return
        have = await stores.capabilities()
        missing = sorted(needed - have)
        if missing:
            pytest.skip(
                f"{await stores.store_name()} does not declare the {', '.join(missing)} "
                f"capabilit{'y' if len(missing) == 1 else 'ies'} (its capabilities: "
                f"{', '.join(sorted(have)) or 'none'})"
            )


def _register_definitions(cls: type) -> None:
    for name, value in vars(cls).items():
        if name.startswith("__") or name == "pytestmark":
            continue
        if _CONTRACT_MEMBERS.get(name, value) is not value:
            raise ContractOverrideError(
                f"two contract classes define {name!r}; contract names must be unique"
            )
        if name.startswith("test_") and inspect.iscoroutinefunction(value):
            # Explicit, so the suite also runs in projects using pytest-asyncio's strict mode.
            pytest.mark.asyncio(value)
        _CONTRACT_MEMBERS[name] = value


def _check_overrides(cls: type) -> None:
    shadowed = []
    for name, original in _CONTRACT_MEMBERS.items():
        try:
            current = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if current is original:
            continue
        if getattr(current, OVERRIDE_ATTR, None):
            if name.startswith("test_") and inspect.iscoroutinefunction(current):
                pytest.mark.asyncio(current)  # runs like the test it replaces, in strict mode too
            continue
        shadowed.append(name)
    if shadowed:
        raise ContractOverrideError(
            f"{cls.__module__}.{cls.__qualname__} replaces contract member(s) {', '.join(sorted(shadowed))}. "
            "A store passes the contract by passing its tests, not by shadowing them: remove the "
            "definition, or decorate it with @durable_contract_tests.override_contract('<why>') "
            "to replace it on purpose."
        )


def overridden_tests(cls: type) -> dict[str, str]:
    """The contract members ``cls`` replaces on purpose, with their reasons."""
    found = {}
    for name, original in _CONTRACT_MEMBERS.items():
        try:
            current = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        reason = getattr(current, OVERRIDE_ATTR, None)
        if current is not original and reason:
            found[name] = str(reason)
    return found
