"""``RedisStore``: the Store contract on redis.asyncio, one Lua script per atomic operation.

This module assembles the store from its parts (base classes, each a module: ``_runs``, ``_due``,
``_steps``, ``_signals``, ``_outputs``, ``_queues``, ``_transport``) and holds what they share:
opening and closing, the server's persistence and data-loss marker, and reading records.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from durable._decode import decode_failure, run_from_text
from durable.batching import WriteBatcher
from durable.errors import (
    ConfigurationError,
    LeaseLost,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
)
from durable.store import (
    Lease,
    RunQuery,
    RunRecord,
    Store,
)
from durable.store import redact_url as redact
from durable_redis import CAPABILITIES, _layout, _listing
from durable_redis import _keys as k
from durable_redis._calls import Call, wrong_type
from durable_redis._due import DueMethods
from durable_redis._notify import Notifier
from durable_redis._outputs import OutputMethods
from durable_redis._persistence import SETTINGS, Persistence, RedisDataLost, log
from durable_redis._queues import QueueMethods
from durable_redis._runs import RunMethods
from durable_redis._scripts import LAYOUT_CHECK, SOURCES
from durable_redis._signals import SignalMethods
from durable_redis._steps import StepMethods
from durable_redis._transport import Transport
from durable_redis._wire import Command, Wires

try:
    from redis.driver_info import DriverInfo
except ImportError:  # redis-py before 7 reads its own version once, at import
    DriverInfo = None  # type: ignore[assignment,misc]

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_TTL = 86_400.0
DEFAULT_PREFIX = "durable"
DEFAULT_OPERATION_TIMEOUT = 5.0
"""Seconds an operation of one round trip (every run, step and signal operation) may take, its
retries included, before ``StoreUnavailable``; each round trip waits half of it for its reply."""


_BATCH_MAX = 500
"""Most calls sent in one pipeline."""
_BATCH_IN_FLIGHT = 2
"""Round trips of the batcher in flight at once, each on a connection of its own (``Wires``).
Two let this process make one wave of checkpoints while Redis stores the other (see
``WriteBatcher``); a third was slower, measured in scenario B."""


_OWN_OPTIONS = ("prefix", "ttl", "require_persistence", "operation_timeout")
"""Query options of a store URL that are durable's, not redis-py's."""
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without durable's own query options (``_OWN_OPTIONS``), and those options."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _OWN_OPTIONS:
            ours[name] = value
        else:
            theirs.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


class RedisStore(
    RunMethods, DueMethods, StepMethods, SignalMethods, OutputMethods, QueueMethods, Transport, Store
):
    """A store in Redis (``redis://`` or ``rediss://``), shared by any number of processes and hosts.

    ``ttl`` (seconds) is how long a run's keys live after it completes or is cancelled;
    ``0`` or ``None`` keeps them forever. Live runs never expire (see the package docs).
    ``prefix`` namespaces every key, so several applications may share one database.
    ``retries`` transient connection errors are retried with exponential backoff from
    ``retry_delay`` seconds before ``StoreUnavailable`` is raised, and never past
    ``operation_timeout`` seconds from an operation's start (listings and other operations of
    several round trips: per round trip). Each round trip waits ``operation_timeout / 2`` for its
    reply (redis-py's ``socket_timeout`` and ``socket_connect_timeout``, unless given), then drops
    its connection: the next attempt opens a fresh one.

    ``require_persistence=True`` refuses (``ConfigurationError``) a server that a restart would
    lose data on, or whose settings cannot be read; otherwise such a server is logged once, at
    WARNING (see ``_persistence``). ``clock`` is this process's clock, for the few times taken on
    this side (a delivery's ``sent_at``, and to place the ``now`` given to ``due_runs`` and a new
    run's lease on the server's clock); every lease comparison uses the server's ``TIME``.

    Other keyword arguments go to ``redis.asyncio.from_url`` (for example ``max_connections`` or
    ``ssl_ca_certs``). Besides that pool, which serves listings and signal subscriptions, the
    store opens two connections of its own for every other command (see ``_wire``).
    """

    name = "redis"
    capabilities = CAPABILITIES  # declared in the package, which lists backends without the driver
    loop_bound: ClassVar[bool] = True

    def __init__(
        self,
        url: str = DEFAULT_URL,
        ttl: float | None = DEFAULT_TTL,
        prefix: str = DEFAULT_PREFIX,
        *,
        retries: int = 5,
        retry_delay: float = 0.05,
        require_persistence: bool = False,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        clock: Callable[[], float] = time.time,
        **redis_options: Any,
    ) -> None:
        if ttl is not None and ttl < 0:
            raise ConfigurationError(f"RedisStore ttl must be >= 0 seconds (0 keeps forever), got {ttl}")
        if retries < 0 or retry_delay < 0:
            raise ConfigurationError("RedisStore retries and retry_delay must be >= 0")
        if not operation_timeout > 0:
            raise ConfigurationError(
                f"RedisStore operation_timeout must be > 0 seconds, got {operation_timeout}"
            )
        self.url = url
        self.ttl = ttl or 0.0
        self.keys = k.KeySpace(prefix)
        self.prefix = prefix
        self.retries = retries
        self.retry_delay = retry_delay
        self.require_persistence = require_persistence
        self.operation_timeout = operation_timeout
        self.clock = clock
        """This process's clock (``time.time``); a test may skew it."""
        self.redis_options = redis_options
        self.label = repr(self)
        """Names the store (password hidden) in the errors and corrupt records it reports."""
        self.persistence: Persistence | None = None
        """The server's persistence settings, read when the store opened."""
        self._marker: str | None = None
        """What ``<prefix>:alive`` held when this store opened (or last noticed a loss)."""
        self._loss: str | None = None
        """Set once this store noticed that the server lost its data: why, for every run found gone."""
        self._redis: aioredis.Redis | None = None
        """The open client (python-durable 0.2's name). One set here before ``open()``, as 0.2's tests
        set a fakeredis client, is used instead of one made from ``url``."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._notifier: Notifier | None = None
        self._batcher: WriteBatcher[Call, Any] | None = None
        self._wire: Wires | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """A store for ``url``, whose query may carry ``prefix=`` and ``ttl=`` (seconds);
        keyword ``options`` win over the query."""
        redis_url, ours = split_url(url)
        if "ttl" in ours and "ttl" not in options:
            try:
                options["ttl"] = float(ours["ttl"])
            except ValueError:
                raise ConfigurationError(f"{redact(url)}: ttl must be a number of seconds") from None
        if "prefix" in ours and "prefix" not in options:
            options["prefix"] = ours["prefix"]
        if "operation_timeout" in ours and "operation_timeout" not in options:
            try:
                options["operation_timeout"] = float(ours["operation_timeout"])
            except ValueError:
                raise ConfigurationError(
                    f"{redact(url)}: operation_timeout must be a number of seconds"
                ) from None
        if "require_persistence" in ours and "require_persistence" not in options:
            flag = ours["require_persistence"].lower()
            if flag not in _TRUE + _FALSE:
                raise ConfigurationError(f"{redact(url)}: require_persistence must be 1 or 0, got {flag!r}")
            options["require_persistence"] = flag in _TRUE
        return cls(redis_url, **options)

    def __repr__(self) -> str:
        return f"<RedisStore {redact(self.url)} prefix={self.prefix!r} ttl={self.ttl:g}>"

    def __getstate__(self) -> dict[str, Any]:
        # Connections, scripts and waiters belong to one process's event loop.
        state = dict(self.__dict__)
        state.update(_redis=None, _loop=None, _scripts={}, _notifier=None, _batcher=None, _wire=None)
        state.update(_marker=None, _loss=None)
        state.pop("_queue_waiters", None)
        state.pop("_delays_looked_at", None)
        state.pop("_output_waiters", None)
        return state

    # -- lifecycle ---------------------------------------------------------------

    def _make_client(self) -> aioredis.Redis:
        # Every round trip has a timeout, so that a partition or a connection that died silently
        # is noticed and the connection replaced (see _call).
        half = self.operation_timeout / 2
        options: dict[str, Any] = {"socket_connect_timeout": half, "socket_timeout": half}
        options.update(self.redis_options)
        # Retries are ours (see _call): redis-py's own would retry scripts whose reply was lost
        # without the idempotence checks, and would stack delays on top of ours.
        options.update(decode_responses=True, retry=Retry(NoBackoff(), 0))
        # A blocking pool queues callers for a free connection; the default pool raises
        # "Too many connections" when more callers than that (listings, waiters) need one at once.
        options.setdefault("max_connections", 64)
        options.setdefault("timeout", options["socket_timeout"])
        if DriverInfo is not None and not {"driver_info", "lib_name", "lib_version"} & options.keys():
            # One shared DriverInfo: by default each new connection reads redis-py's package
            # metadata from disk, which costs milliseconds when many runs start at once.
            options["driver_info"] = DriverInfo()
        try:
            pool = aioredis.BlockingConnectionPool.from_url(self.url, **options)
            client: aioredis.Redis = aioredis.Redis.from_pool(pool)  # aclose() closes the pool too
        except ValueError as exc:
            raise ConfigurationError(f"RedisStore: bad Redis URL {redact(self.url)}: {exc}") from exc
        return client

    async def open(self, *, create: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if self._redis is not None and self._loop is loop:
            return
        # A client opened on an earlier event loop (a previous asyncio.run) cannot be used or
        # closed from this one; it is dropped and a fresh one opened.
        given = self._redis if self._loop is None else None  # set before this store was ever opened
        client = given if given is not None else self._make_client()
        scripts = {name: client.register_script(source) for name, source in SOURCES.items()}
        wire = Wires(client, _BATCH_IN_FLIGHT)
        self._redis, self._loop, self._scripts, self._wire = client, loop, scripts, wire
        # One round trip: the scripts, whether the keys are in this layout (before the marker is
        # written: a prefix with neither runs nor a marker was never opened, so it has nothing to
        # migrate), the marker (written unless there is one) and the persistence settings.
        alive = self.keys.alive
        also: list[Command] = [
            ("EVAL", LAYOUT_CHECK, 3, self.keys.layout, self.keys.index, alive, k.LAYOUT, *k.UNMIGRATED),
            ("SET", alive, secrets.token_hex(8), "NX"),
            ("GET", alive),
            *(("CONFIG GET", name) for name in SETTINGS),
        ]
        try:
            if not create:
                await self._require_data()
            layout, _, marker, *config = await self._call(
                "connecting", lambda _: self._load_scripts(list(SOURCES), *also)
            )
            for reply in (layout, marker):
                if isinstance(reply, Exception):
                    raise reply
            if layout == 2:
                raise ConfigurationError(
                    f"{self!r}: the keys under prefix {self.prefix!r} are in a newer layout than this "
                    f"release writes (version {k.LAYOUT}); upgrade durable-redis to open them"
                )
            self._check_persistence(Persistence.from_replies(config))
        except BaseException:
            self._redis, self._loop, self._scripts, self._wire = None, None, {}, None
            await wire.close()
            await _close_quietly(client)
            raise
        self._marker, self._loss = marker, None
        self._notifier = Notifier(
            client, self.keys.channel, self.operation_timeout / 2, on_output=self.wake_output_waiters
        )
        self._batcher = WriteBatcher(self._flush, max_batch=_BATCH_MAX, max_in_flight=_BATCH_IN_FLIGHT)
        if not layout:
            try:
                await _layout.migrate(self)
            except BaseException:
                await self.close()
                raise

    async def _require_data(self) -> None:
        """``open(create=False)``: ``StoreNotFound`` unless a store under this prefix was opened
        before (its marker, or runs written before there was one), before any key is written."""
        keys = (self.keys.alive, self.keys.index)
        found = await self._call("checking that the store exists", lambda _: self.client.exists(*keys))
        if not found:
            raise StoreNotFound(f"{self!r}: no durable store is stored under key prefix {self.prefix!r}")

    def _check_persistence(self, persistence: Persistence) -> None:
        """Refuse (``require_persistence``) or log a server that a restart would lose data on."""
        self.persistence = persistence
        server = redact(self.url)
        if self.require_persistence and not persistence.safe:
            raise ConfigurationError(
                f"Redis at {server}: persistence {persistence.describe()}; require_persistence=True "
                "needs appendonly yes, no allkeys-* maxmemory-policy, and CONFIG GET allowed to read them"
            )
        persistence.warn_once(server)

    def durability(self) -> tuple[bool | None, str]:
        """Whether a restart of the server keeps every committed write (``None``: could not be
        checked), and a line saying why; read when the store opened (``durable stores --check``)."""
        if self.persistence is None:
            return None, "not read yet: the store is not open"
        return self.persistence.safe, self.persistence.describe()

    async def close(self) -> None:
        batcher = self._batcher
        if batcher is not None and self._loop is _running_loop():
            await batcher.drain()  # every checkpoint already submitted gets its answer
        client, notifier, wire = self._redis, self._notifier, self._wire
        self._redis, self._loop, self._scripts, self._notifier = None, None, {}, None
        self._batcher, self._wire = None, None
        if notifier is not None:
            await notifier.close()
        if wire is not None:
            await wire.close()
        if client is not None:
            await _close_quietly(client)

    @property
    def client(self) -> aioredis.Redis:
        """The opened redis.asyncio client."""
        if self._redis is None or self._loop is not asyncio.get_running_loop():
            raise StoreUnavailable(f"{self!r} is not open on this event loop; await store.open() first")
        return self._redis

    def _client(self) -> aioredis.Redis:
        """``client``, as python-durable 0.2's ``RedisStore._client()`` (its tests read keys with it)."""
        return self.client

    # -- helpers -----------------------------------------------------------------

    def _ttl_ms(self) -> int:
        return round(self.ttl * 1000)

    async def run_together(self, calls: Sequence[Call]) -> list[Any]:
        """The replies of ``calls``, sent in one round trip; the first error reply is raised."""
        return await self._run_together(*calls)

    async def read_runs(self, run_ids: list[str]) -> list[_listing.Fields]:
        """The fields of each run (empty for a run that is gone, the error reply for a key that
        holds another type), in one pipeline."""
        if not run_ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hgetall(self.keys.run_keys(run_id)[0])
            records: list[_listing.Fields] = await pipe.execute(raise_on_error=False)
        return records

    def unreadable_run(self, run_id: str, error: Exception) -> RunRecord:
        """The corrupt run whose key holds another type than a hash (``error``: its WRONGTYPE)."""
        if not wrong_type(error):
            raise error
        return run_from_text(self.label, {"run_id": run_id, "workflow": _NotAHash()}, run_id)  # type: ignore[dict-item]

    def _record(self, run_id: str, fields: dict[str, str]) -> RunRecord:
        return run_from_text(self.label, fields, run_id)

    def _corrupted(self, error: BaseException, run_id: str, field: str) -> BaseException:
        """``StoreCorrupted`` naming the run and ``field`` for a WRONGTYPE reply (a key of the run
        that holds another type), else ``error`` itself."""
        if isinstance(error, Exception) and wrong_type(error):
            return decode_failure(self.label, run_id, field, error)
        return error

    def prune_call(self, run_id: str, source: _listing.Source | None = None, member: str = "") -> Call:
        """The call removing ``run_id`` from every index (``source`` too, a workflow's) if the run
        is gone, and its expiry schedule ``member``."""
        keys = self.keys
        names = [keys.run_keys(run_id)[0], keys.expiring, keys.index, keys.ids, *keys.changing(run_id)[4:11]]
        if source is not None and source.workflow is not None:
            names.append(source.key)
        return Call(f"pruning the index entries of run {run_id!r}", names, [run_id, member], script="prune")

    def index_call(self, run_id: str, workflow: str | None, source: _listing.Source | None = None) -> Call:
        """The call recomputing every index entry of ``run_id`` from its stored fields, the
        workflow read being ``workflow`` (``None``: none); an entry in ``source`` (another
        workflow's index) is removed."""
        keys = self.keys
        own = keys.workflow(workflow) if workflow is not None else keys.ids
        found = source.key if source is not None and source.workflow is not None else own
        names = [keys.run_keys(run_id)[0], keys.index, *keys.changing(run_id)[4:11], keys.ids, own, found]
        args = [run_id, workflow or "", "0" if workflow is None else "1"]
        return Call(f"indexing run {run_id!r}", names, args, script="index_run")

    def _markers(self) -> list[Call]:
        """The calls writing this prefix's layout version and data-loss marker, unless present."""
        what = "writing the prefix's markers"
        return [
            Call.plain(what, "SET", self.keys.layout, k.LAYOUT, "NX"),
            Call.plain(what, "SET", self.keys.alive, secrets.token_hex(8), "NX"),
        ]

    async def _script(self, call: Call, run_id: str, field: str = "run") -> Any:
        """``call``'s reply; a WRONGTYPE reply (a key of the run holds another type) raises
        ``StoreCorrupted`` naming the run and ``field``."""
        try:
            return await self._run(call)
        except rx.ResponseError as exc:
            raise self._corrupted(exc, run_id, field) from exc

    async def _lost(self, lease: Lease, current: Any) -> StoreError:
        """The error of a fenced write refused with ``current`` as the run's token (-1: the run is
        gone): ``LeaseLost``, or ``RedisDataLost`` when the server lost its data."""
        if current in (None, -1):
            lost = await self._data_lost(lease.run_id)
            if lost is not None:
                return lost
            return LeaseLost.stale(lease.run_id, lease.token, None)
        try:
            token = int(current)
        except ValueError:  # a hand-edited token: no lease of this store's is current
            token = None
        return LeaseLost.stale(lease.run_id, lease.token, token)

    async def _data_lost(self, run_id: str) -> RedisDataLost | None:
        """For a run found gone: the loss of the server's data if it lost them since this store
        opened (``<prefix>:alive`` is gone or replaced), else ``None`` (one GET)."""
        if self._marker is None:  # emptied by drop_all: nothing to compare with yet
            return None
        if self._loss is None:
            current = await self._run(Call.plain("checking for data loss", "GET", self.keys.alive))
            if current == self._marker:
                return None
            await self._noticed_loss(current)
        return RedisDataLost(f"run {run_id!r} is gone: {self._loss}", run_id=run_id)

    async def _noticed_loss(self, found: str | None) -> None:
        """``<prefix>:alive`` holds ``found``, not this store's marker: say so loudly (once per
        loss), remember it for every run found gone from now on, and write a marker again."""
        state = "gone" if not found else "replaced"
        persistence = "" if self.persistence is None else f"; the server {self.persistence.describe()}"
        self._loss = (
            f"the Redis server at {redact(self.url)} lost its data (restart without persistence?): "
            f"the marker {self.keys.alive!r} this store wrote when it opened is {state}, so every run "
            f"stored before is lost, and calling one again re-runs its steps{persistence}"
        )
        log.warning("durable-redis: %s", self._loss)
        *_, self._marker = await self._run_together(
            *self._markers(), Call.plain("reading the marker", "GET", self.keys.alive)
        )

    def _workflow_source(self, workflow: str) -> _listing.Source:
        return _listing.Source(self.keys.workflow(workflow), workflow=workflow)

    # -- listing (_listing) ------------------------------------------------------

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching ``query`` through the index that narrows it most (``_listing``)."""
        return await self._call("listing runs", lambda _: _listing.list_runs(self, query), bounded=False)

    # -- maintenance -------------------------------------------------------------

    async def drop_all(self) -> int:
        """Delete every key of this store's prefix, its markers included, and no other prefix's
        (``app:v2``'s keys are not ``app``'s); returns how many (for tests and teardown). The
        store stays open: the markers come back with the next run it creates."""
        deleted = 0
        owned: list[str] = []
        async for key in self.client.scan_iter(match=self.keys.pattern, count=1000):
            if self.keys.owns(key):
                owned.append(key)
            if len(owned) >= 500:
                deleted += int(await self.client.unlink(*owned))
                owned.clear()
        if owned:
            deleted += int(await self.client.unlink(*owned))
        self._marker, self._loss = None, None  # emptied on purpose: not a loss of data
        return deleted


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _close_quietly(client: aioredis.Redis) -> None:
    try:
        await client.aclose()
    except Exception:  # closing a client whose server is gone must not mask the real error
        pass


class _NotAHash:
    """Stands for the fields of a run key that holds another type than a hash."""

    def __repr__(self) -> str:
        return "<the run's key is not a hash (WRONGTYPE)>"  # durable._decode shows 60 characters
