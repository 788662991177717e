"""Installed store backends as contract targets: finding a server, isolating each test's data."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import tempfile
import warnings
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from durable._plugins import get_plugin_manager
from durable.hookspecs import StoreBackend
from durable.store import Store
from durable_contract_tests._servers import env_var

PROBE_TIMEOUT = 60.0


class BackendUnavailable(Exception):
    """No server for a backend: set ``variable`` (to something like ``example``); ``detail``
    says what else was tried and how it failed."""

    def __init__(self, backend: str, variable: str, example: str, detail: str) -> None:
        self.backend = backend
        self.variable = variable
        self.example = example
        self.detail = detail
        super().__init__(f"no {backend!r} server to test against: set {variable}={example} ({detail})")


def installed_backends() -> dict[str, StoreBackend]:
    return {backend.name: backend for backend, _ in get_plugin_manager().backends().values()}


def session_token() -> str:
    # Lower-case letters and digits only: it becomes a schema name, key prefix or file name.
    return f"dct{os.getpid():x}{secrets.token_hex(4)}"


@dataclass
class BackendTarget:
    """One backend with the base URL of its server for this session."""

    backend: StoreBackend
    base_url: str
    token: str
    directory: str | None = None
    """The temporary directory ``base_url`` names, for a backend without a server of its own."""
    _counter: Iterator[int] = field(default_factory=itertools.count)

    made: list[str] = field(default_factory=list)

    def isolated(self, suffix: str) -> str:
        if self.backend.isolated_url is None:
            return self.base_url
        url = self.backend.isolated_url(self.base_url, f"{self.token}_{suffix}")
        self.made.append(url)
        return url

    def drop_all(self) -> None:
        """Delete what this session stored on the server (best effort: a failure is a warning)."""
        drop = self.backend.drop_isolated
        if drop is None or not self.made:
            return

        async def drop_each() -> None:
            for url in self.made:
                await drop(url)

        try:
            run_in_own_loop(drop_each())
        except Exception as exc:
            warnings.warn(
                f"could not delete the contract suite's test data at {redact(self.base_url)}: {exc!r}",
                RuntimeWarning,
                stacklevel=1,
            )

    def factory(self) -> BackendStoreFactory:
        return BackendStoreFactory(self)


class BackendStoreFactory:
    """A ``StoreFactory`` over a backend's URLs: each fresh store gets its own isolated URL."""

    def __init__(self, target: BackendTarget) -> None:
        self._target = target
        self._urls: dict[int, tuple[Store, str]] = {}
        self.backend = target.backend
        self.scratch_directory = target.directory

    def __call__(self, same_data_as: Store | None = None) -> Store:
        if same_data_as is None:
            url = self._target.isolated(str(next(self._target._counter)))
        else:
            known = self._urls.get(id(same_data_as))
            if known is None or known[0] is not same_data_as:
                raise LookupError(f"{same_data_as!r} was not made by this factory")
            url = known[1]
        store = get_plugin_manager().store_from_url(url)
        self._urls[id(store)] = (store, url)
        return store

    def url_for(self, store: Store) -> str:
        """The URL another process opens to reach ``store``'s data."""
        return self._urls[id(store)][1]


@contextmanager
def backend_target(name: str) -> Iterator[BackendTarget]:
    """The backend's base URL for this session: ``DURABLE_TEST_<NAME>_URL``, else what its
    ``test_server()`` yields, else, for a backend with ``isolated_url``, ``<scheme>:///<a new
    temporary directory>`` (removed after the session: a file store's test stores go there, never
    to the file system's root), else ``<scheme>://`` (each store object holds its own data, as
    ``memory://`` does). Raises ``BackendUnavailable``."""
    backend = installed_backends()[name]
    variable = env_var(name)
    example = f"{backend.schemes[0]}://..." if backend.schemes else ""
    token = session_token()
    directory: str | None = None
    with ExitStack() as stack:
        configured = os.environ.get(variable)
        if configured:
            base_url, source = configured, f"from {variable}"
        elif backend.test_server is not None:
            try:
                # Construction too: testcontainers raises DockerException there without a daemon.
                base_url = stack.enter_context(backend.test_server())
            except Exception as exc:
                raise BackendUnavailable(
                    name,
                    variable,
                    example,
                    f"its test_server() could not start one either: {type(exc).__name__}: {exc}; "
                    "with Docker and `pip install 'durable-contract-tests[containers]'` it can",
                ) from exc
            source = f"{name!r} backend's test_server()"
        elif backend.isolated_url is not None and backend.schemes:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"durable-{name}-"))
            base_url, source = f"{backend.schemes[0]}:///{directory}", "a temporary directory"
        else:
            base_url, source = (f"{backend.schemes[0]}://" if backend.schemes else ""), "no server needed"
        target = BackendTarget(backend, base_url, token, directory)
        try:
            probe(target)
        except Exception as exc:
            raise BackendUnavailable(
                name,
                variable,
                example,
                f"the store at {redact(base_url)} ({source}) cannot be opened: {type(exc).__name__}: {exc}",
            ) from exc
        try:
            yield target
        finally:
            target.drop_all()


def probe(target: BackendTarget) -> None:
    """Open and close one isolated store, so an unreachable server is one clear message."""

    async def open_and_close() -> None:
        store = get_plugin_manager().store_from_url(target.isolated("probe"))
        async with asyncio.timeout(PROBE_TIMEOUT):
            await store.open()
        await store.close()

    run_in_own_loop(open_and_close())


def run_in_own_loop(coroutine: Coroutine[Any, Any, None]) -> None:
    # A worker thread owns its event loop, whether or not one runs in this thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


def redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
