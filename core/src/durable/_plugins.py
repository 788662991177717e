"""The plugin manager: loads plugins from entry points, validates them, resolves store URLs."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import pluggy

from durable import hookspecs
from durable.errors import PluginError, UnknownStoreError
from durable.hookspecs import StoreBackend

if TYPE_CHECKING:
    from durable.store import Store

log = logging.getLogger("durable")

ENTRY_POINT_GROUP = "durable"
DISABLE_ENV = "DURABLE_DISABLE_PLUGINS"

# First-party stores: the python-durable extra that installs each ("" for the base package).
KNOWN_EXTRAS: dict[str, str] = {
    "sqlite": "",
    "memory": "",
    "redis": "redis",
    "rediss": "redis",
    "postgres": "postgres",
    "postgresql": "postgres",
    "postgresql+asyncpg": "postgres",
}
STORE_CLASSES: dict[str, tuple[str, str]] = {
    "SQLiteStore": ("durable_sqlite", ""),
    "InMemoryStore": ("durable_memory", ""),
    "RedisStore": ("durable_redis", "redis"),
    "PostgresStore": ("durable_postgres", "postgres"),
}


def install_hint(extra: str) -> str:
    return f"pip install 'python-durable[{extra}]'" if extra else "pip install python-durable"


@dataclass(frozen=True)
class LoadedPlugin:
    name: str
    version: str | None
    plugin: object
    hooks: tuple[str, ...]


class PluginManager:
    """durable's pluggy manager plus the backend registry built from it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.versions: dict[str, str | None] = {}
        self._backends: dict[str, tuple[StoreBackend, str]] | None = None
        self._observed: frozenset[str] | None = None
        self._observers: dict[str, tuple[tuple[Callable[..., object], tuple[str, ...]], ...] | None] = {}

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def register(self, plugin: object, name: str | None = None, version: str | None = None) -> str:
        """Register a plugin after checking that none of its hooks is ``async def``."""
        plugin_name = name or getattr(plugin, "__name__", None) or repr(plugin)
        for attr in dir(plugin):
            impl = getattr(plugin, attr, None)
            if attr.startswith("durable_") and callable(impl) and inspect.iscoroutinefunction(impl):
                raise PluginError(
                    f"plugin {plugin_name!r}: hook {attr} is 'async def'; durable hooks are "
                    "synchronous (return an unopened store or metadata; the core awaits open())"
                )
        registered = self.pm.register(plugin, name=plugin_name)
        if registered is None:
            raise PluginError(f"plugin {plugin_name!r} is blocked or already registered")
        self.versions[plugin_name] = version
        self._backends = None
        self._observed = None
        self._observers = {}
        return registered

    def unregister(self, name: str) -> None:
        """Remove a plugin ``register`` added (``durable worker`` removes its log on exit)."""
        self.pm.unregister(name=name)
        self.versions.pop(name, None)
        self._backends = None
        self._observed = None
        self._observers = {}

    def load_entry_points(self) -> None:
        disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in disabled:
                self.pm.set_blocked(ep.name)
                continue
            if self.pm.has_plugin(ep.name) or self.pm.is_blocked(ep.name):
                warnings.warn(
                    f"durable plugin {ep.name!r} from {_dist_name(ep)} is installed twice; "
                    "the first one found is used",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            try:
                plugin = ep.load()
                self.register(plugin, name=ep.name, version=ep.dist.version if ep.dist else None)
            except Exception as exc:  # a broken plugin must not take the application down
                warnings.warn(
                    f"durable plugin {ep.name!r} ({ep.value}) failed to load and is skipped: "
                    f"{type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def observed_hooks(self) -> frozenset[str]:
        """Names of hooks with at least one implementation (the engine skips the rest)."""
        if self._observed is None:
            self._observers = {}  # computed again with it, even after a change made through self.pm
            self._observed = frozenset(
                name
                for name, caller in vars(self.pm.hook).items()
                if hasattr(caller, "get_hookimpls") and caller.get_hookimpls()
            )
        return self._observed

    def observers(self, hook: str) -> tuple[tuple[Callable[..., object], tuple[str, ...]], ...] | None:
        """The implementations of an observer hook as ``(function, argument names)``, in the order
        pluggy calls them: what ``durable._engine.observe`` calls directly, for a fraction of a
        pluggy call's cost (observers run twice per step). ``None`` if one is a wrapper: call it
        through pluggy then."""
        if hook not in self._observers:
            impls = getattr(self.pm.hook, hook).get_hookimpls()
            plain = not any(impl.hookwrapper or impl.wrapper for impl in impls)
            self._observers[hook] = (
                tuple((impl.function, tuple(impl.argnames)) for impl in reversed(impls)) if plain else None
            )
        return self._observers[hook]

    def run_context(self, workflow: str, run_id: str) -> str | None:
        """The JSON text ``RunRecord.context`` of a run being created: the headers every
        ``durable_run_context`` implementation gives, merged (``None`` without any). A failing
        implementation is logged and skipped, as a failing observer is."""
        hook = "durable_run_context"
        if hook not in self.observed_hooks():
            return None
        kwargs = {"workflow": workflow, "run_id": run_id}
        observers = self.observers(hook)
        given: list[object] = []
        if observers is None:  # a wrapper among them: pluggy's own call
            try:
                given = list(self.pm.hook.durable_run_context(**kwargs))
            except Exception:
                log.exception("durable hook %s failed", hook)
        else:
            for function, names in observers:  # as pluggy calls them: the last registered first
                try:
                    given.append(function(*[kwargs[name] for name in names]))
                except Exception:
                    log.exception("durable hook %s failed", hook)
        headers: dict[str, str] = {}
        for found in reversed(given):  # the last registered wins a shared header
            if isinstance(found, dict):
                headers.update((str(k), str(v)) for k, v in found.items())
        return json.dumps(headers, separators=(",", ":"), sort_keys=True) if headers else None

    def register_codecs(self) -> None:
        from durable import _codec

        for codecs in self.pm.hook.durable_type_codecs():
            for codec in codecs or ():
                _codec.register_codec(codec)

    def plugins(self) -> list[LoadedPlugin]:
        found = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # blocked by DURABLE_DISABLE_PLUGINS
                continue
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
            found.append(LoadedPlugin(name, self.versions.get(name), plugin, hooks))
        return found

    def backends(self) -> dict[str, tuple[StoreBackend, str]]:
        """Scheme -> (backend, plugin name). Raises if two plugins claim one scheme."""
        if self._backends is not None:
            return self._backends
        by_scheme: dict[str, tuple[StoreBackend, str]] = {}
        for impl in self.pm.hook.durable_store_backends.get_hookimpls():
            try:
                declared = cast("Sequence[StoreBackend]", impl.function() or ())
            except Exception as exc:  # one broken plugin must not take every store down
                warnings.warn(
                    f"durable plugin {impl.plugin_name!r}: durable_store_backends() failed and its "
                    f"stores are skipped: {type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            for backend in declared:
                for scheme in backend.schemes:
                    if scheme in by_scheme:
                        other, other_plugin = by_scheme[scheme]
                        raise PluginError(
                            f"store scheme {scheme!r} is claimed by two plugins: "
                            f"{other_plugin!r} (backend {other.name!r}) and "
                            f"{impl.plugin_name!r} (backend {backend.name!r}); uninstall one "
                            f"or block it with {DISABLE_ENV}={impl.plugin_name}"
                        )
                    by_scheme[scheme] = (backend, impl.plugin_name)
        self._backends = by_scheme
        return by_scheme

    def backend_named(self, name: str) -> StoreBackend:
        unique = {b.name: b for b, _ in self.backends().values()}
        if name not in unique:
            raise UnknownStoreError(
                f"no store backend named {name!r} is installed; "
                f"installed: {', '.join(sorted(unique)) or 'none'}"
            )
        return unique[name]

    def store_from_url(self, url: str, **options: Any) -> Store:
        scheme = urlsplit(url).scheme.lower()
        backends = self.backends()
        if scheme not in backends:
            raise UnknownStoreError(_unknown_scheme_message(url, scheme, sorted(backends)))
        store = self.pm.hook.durable_store_from_url(url=url, options=options)
        if store is None:
            plugin = backends[scheme][1]
            raise PluginError(f"plugin {plugin!r} declares scheme {scheme!r} but returned no store for it")
        from durable.store import URL_ATTRIBUTE

        with contextlib.suppress(AttributeError, TypeError):  # a store with __slots__ goes without
            vars(store).setdefault(URL_ATTRIBUTE, url)  # for Store.__repr__
        return store  # type: ignore[no-any-return]


def _dist_name(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist else "an unknown distribution"


def _unknown_scheme_message(url: str, scheme: str, installed: list[str]) -> str:
    shown = url.split("://", 1)[0] + "://..." if "://" in url else url
    message = f"no installed durable plugin handles {shown!r} (scheme {scheme!r})"
    if scheme in KNOWN_EXTRAS:
        message += f"; install it with: {install_hint(KNOWN_EXTRAS[scheme])}"
    return message + f". Installed schemes: {', '.join(installed) or 'none'}"


_manager: PluginManager | None = None
_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, loading entry points on first use."""
    global _manager
    with _lock:
        if _manager is None:
            manager = PluginManager()
            manager.load_entry_points()
            manager.register_codecs()
            _manager = manager
        return _manager


def reset_plugin_manager() -> None:
    """Forget loaded plugins (tests change the environment and load again)."""
    global _manager
    with _lock:
        _manager = None


def as_store_url(db: str | os.PathLike[str]) -> str:
    """A bare path means SQLite, as in the original library."""
    text = os.fspath(db)
    if "://" in text:
        return text
    return "sqlite:///" + text


def import_store_class(name: str) -> type[Store]:
    module_name, extra = STORE_CLASSES[name]
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"{name} is not installed; install it with: {install_hint(extra)}") from exc
    cls: type[Store] = getattr(module, name)
    return cls
