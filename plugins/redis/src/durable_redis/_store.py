"""``RedisStore``: the Store contract on redis.asyncio, one Lua script per atomic operation."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from durable._decode import decode_failure, run_from_text
from durable._lifecycle import is_due
from durable.batching import WriteBatcher
from durable.errors import (
    ConfigurationError,
    LeaseLost,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
)
from durable.store import (
    DEFAULT_QUEUE,
    Capability,
    Lease,
    RunQuery,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    Store,
)
from durable.store import redact_url as redact
from durable_redis import _keys as k
from durable_redis import _layout, _listing
from durable_redis._calls import Call
from durable_redis._checkpoints import checkpoint, stored_steps
from durable_redis._notify import Notifier
from durable_redis._outputs import OutputMethods
from durable_redis._persistence import SETTINGS, Persistence, RedisDataLost, log
from durable_redis._queues import QueueMethods
from durable_redis._scripts import LAYOUT_CHECK, SOURCES
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

_SWEEP = 100
"""Most expired runs whose index entries one poll removes."""
_SAFETY_RECHECK = 30.0
"""Even with a healthy subscription, a waiter re-reads its deliveries this often."""


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


class RedisStore(OutputMethods, QueueMethods, Transport, Store):
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
    capabilities = frozenset(
        {
            Capability.PERSISTENT,
            Capability.MULTI_PROCESS,
            Capability.NOTIFY,
            Capability.MULTI_HOST,
            Capability.QUEUES,
            Capability.STREAMS,
        }
    )
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
        if not _wrong_type(error):
            raise error
        return run_from_text(self.label, {"run_id": run_id, "workflow": _NotAHash()}, run_id)  # type: ignore[dict-item]

    def _record(self, run_id: str, fields: dict[str, str]) -> RunRecord:
        return run_from_text(self.label, fields, run_id)

    def _corrupted(self, error: BaseException, run_id: str, field: str) -> BaseException:
        """``StoreCorrupted`` naming the run and ``field`` for a WRONGTYPE reply (a key of the run
        that holds another type), else ``error`` itself."""
        if isinstance(error, Exception) and _wrong_type(error):
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

    # -- runs --------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        # A run created with a lease (a direct call owns it): how long it lasts by this process's
        # clock, which the script counts from the server's now where the two clocks disagree.
        given = run.lease_expires_at if run.owner is not None else None
        lease = ("", "") if given is None else (k.fmt_float(given - self.clock()), k.fmt_float(given))
        created_at = k.fmt_float(run.created_at)
        args: list[Any] = [self._ttl_ms() if run.status.is_final else 0, *lease, run.run_id, created_at]
        for field, value in k.run_fields(run).items():
            args += [field, value]
        keys = self.keys.changing(run.run_id)
        keys += (self.keys.index, self.keys.ids, self.keys.workflow(run.workflow))
        call = Call(f"creating run {run.run_id!r}", keys, args, script="create_run")
        if self._marker is None:  # the prefix was emptied by drop_all: its markers come back with it
            reply = (await self._run_together(call, *self._markers()))[0]
            self._marker = await self._run(Call.plain("reading the marker", "GET", self.keys.alive))
        else:
            reply = await self._run(call)
        if reply == 1:
            if run.status is RunStatus.PENDING and run.owner is None:
                self.wake_queue_waiters(DEFAULT_QUEUE)  # this process's idle workers (the script publishes)
            return run, True
        if isinstance(reply, str):  # the expiry of the new run's lease, on the server's clock
            return replace(run, lease_expires_at=float(reply)), True
        if reply == -1:  # the run's key holds another type than a hash
            return self.unreadable_run(run.run_id, rx.ResponseError("WRONGTYPE")), False
        stored = self._record(run.run_id, k.pairs(reply))
        # This very call, sent again after its reply was lost, finds its own record (its lease's
        # expiry is the server's).
        created = call.retried and replace(stored, lease_expires_at=run.lease_expires_at) == run
        return stored, created

    def _markers(self) -> list[Call]:
        """The calls writing this prefix's layout version and data-loss marker, unless present."""
        what = "writing the prefix's markers"
        return [
            Call.plain(what, "SET", self.keys.layout, k.LAYOUT, "NX"),
            Call.plain(what, "SET", self.keys.alive, secrets.token_hex(8), "NX"),
        ]

    async def get_run(self, run_id: str) -> RunRecord | None:
        key = self.keys.run_keys(run_id)[0]
        try:
            fields = await self._run(Call.plain(f"reading run {run_id!r}", "HGETALL", key))
        except rx.ResponseError as exc:
            return self.unreadable_run(run_id, exc)
        if fields:
            return self._record(run_id, fields)
        lost = await self._data_lost(run_id)
        if lost is not None:
            raise lost
        return None

    async def _script(self, call: Call, run_id: str, field: str = "run") -> Any:
        """``call``'s reply; a WRONGTYPE reply (a key of the run holds another type) raises
        ``StoreCorrupted`` naming the run and ``field``."""
        try:
            return await self._run(call)
        except rx.ResponseError as exc:
            raise self._corrupted(exc, run_id, field) from exc

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        # The server's clock judges the lease and sets the expiry; the nonce tells a retry of this
        # very call (see the script).
        args = [owner, k.fmt_float(lease_seconds), secrets.token_hex(8)]
        call = Call(f"claiming run {run_id!r}", self.keys.changing(run_id), args, script="claim_run")
        reply = await self._script(call, run_id)
        return None if reply is None else Lease(run_id, owner, int(reply[0]), float(reply[1]))

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

    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        keys = self.keys.changing(lease.run_id)
        # lease_seconds=0: the lease expires now (owner kept), and claim_run sees it expired.
        args = [str(lease.token), lease.owner, k.fmt_float(lease_seconds)]
        if activity is not None:
            args.append(activity)
        what = f"renewing the lease of run {lease.run_id!r}"
        reply = await self._script(Call(what, keys, args, script="renew_lease"), lease.run_id)
        if reply[0] == 0:
            raise await self._lost(lease, reply[1])
        return self._record(lease.run_id, k.pairs(reply[1]))

    async def update_run(
        self,
        lease: Lease,
        status: RunStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        wake_at: float | None = None,
        release: bool = False,
        activity: str | None = None,
    ) -> None:
        keys = self.keys.changing(lease.run_id)
        optional = [result, error, None if wake_at is None else k.fmt_float(wake_at), activity]
        mask = "".join("0" if value is None else "1" for value in optional)
        args = [
            str(lease.token),
            self._ttl_ms() if status.is_final else 0,
            "1" if release else "0",
            status.value,
            mask,
            *(value or "" for value in optional),
        ]
        call = Call(f"updating run {lease.run_id!r}", keys, args, script="update_run")
        reply = await self._script(call, lease.run_id)
        if reply != 1:
            raise await self._lost(lease, reply[1])
        if status.is_final:
            self.wake_output_waiters(lease.run_id)  # its readers end (the script tells other processes)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        keys = self.keys.changing(run_id)
        args = [self._ttl_ms()]
        call = Call(f"cancelling run {run_id!r}", keys, args, script="request_cancel")
        reply = await self._script(call, run_id)
        if reply is None:
            return None
        run = self._record(run_id, k.pairs(reply))
        if run.status.is_final:
            self.wake_output_waiters(run_id)
        return run

    async def reset_run(self, run_id: str) -> RunRecord | None:
        call = Call(f"resetting run {run_id!r}", self.keys.changing(run_id), [], script="reset_run")
        reply = await self._script(call, run_id)
        return None if reply is None else self._record(run_id, k.pairs(reply))

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching ``query`` through the index that narrows it most (``_listing``)."""
        return await self._call("listing runs", lambda _: _listing.list_runs(self, query), bounded=False)

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        """Runs due at ``now`` (``durable._lifecycle.is_due``), oldest created first, at most ``limit``,
        of ``workflows`` only if given (the live index does not know workflows: runs of others are
        read and skipped, so they cost a read each but never crowd the asked-for ones out).

        Read from the index of live runs, whose entries are scored by the time each run becomes
        due (``_scripts``): the entries scored up to ``now``, then only the runs they name, so a
        poll costs the same however many runs are parked or finished. When more are due than
        ``limit``, the run index's scores (``created_at``) choose the oldest before any is read. A
        record that cannot be read (corrupt) is not returned: its entry stays, so a record an
        operator repairs is due again at once.

        One clock: ``now`` is read as a time on this process's ``clock`` and judged on the
        server's, ``now - clock()`` seconds after the server's ``TIME`` (a worker passes its
        ``time.time()``: the server's now), so a worker whose clock is off resumes a run exactly
        when the server's clock says its lease expired. The same script reads ``<prefix>:alive``:
        a poll notices (and logs) a loss of the server's data. It also returns the runs whose
        keys expired (``<prefix>:expiring``): the poll removes their index entries.
        """
        if limit <= 0:
            return []
        what = "listing due runs"
        offset = k.fmt_float(now - self.clock())
        keys = [self.keys.live, self.keys.alive, self.keys.expiring]
        judged, marker, due_ids, expired = await self._run(
            Call(what, keys, [offset, _SWEEP], script="due_runs")
        )
        now = float(judged)
        if self._marker is not None and marker != self._marker:
            await self._noticed_loss(marker)
        if len(due_ids) > limit:
            created = await self._run(Call.plain(what, "ZMSCORE", self.keys.index, *due_ids))
            # A run whose run-index entry is missing still counts, read among the first.
            order = sorted(zip((0.0 if c is None else float(c) for c in created), due_ids, strict=True))
            due_ids = [run_id for _, run_id in order]
        found: list[RunRecord] = []
        repairs = [self._expired_call(member) for member in expired]
        start = 0
        while start < len(due_ids) and len(found) < limit:
            ids = due_ids[start : start + limit - len(found)]
            start += len(ids)
            calls = [Call.plain(what, "HGETALL", self.keys.run_keys(run_id)[0]) for run_id in ids]
            for run_id, fields in zip(ids, await self._open_batcher().submit_all(calls), strict=True):
                if isinstance(fields, BaseException):
                    if not (isinstance(fields, Exception) and _wrong_type(fields)):
                        raise fields
                    self.unreadable_run(run_id, fields)  # reported once; never returned
                    continue
                if not fields:
                    repairs.append(self.prune_call(run_id))
                    continue
                run = self._record(run_id, fields)
                if run.status is RunStatus.CORRUPT:
                    continue
                if not is_due(run, now) or "queue" in fields:  # an entry that disagrees with its run
                    repairs.append(self.index_call(run_id, run.workflow))  # (queue claims serve a queued run)
                elif workflows is None or run.workflow in workflows:
                    found.append(run)
        if repairs:
            await self._run_together(*repairs)
        found.sort(key=lambda run: (run.created_at, run.run_id))
        return found

    def _expired_call(self, member: str) -> Call:
        """The prune of a run whose keys expired, from its expiry schedule ``member``
        (``<byte length of id>:<id><workflow>``)."""
        raw = member.encode()
        length, _, rest = raw.partition(b":")
        size = int(length)
        run_id, workflow = rest[:size].decode(), rest[size:].decode()
        return self.prune_call(run_id, self._workflow_source(workflow), member)

    def _workflow_source(self, workflow: str) -> _listing.Source:
        return _listing.Source(self.keys.workflow(workflow), workflow=workflow)

    async def delete_run(self, run_id: str) -> bool:
        what = f"deleting run {run_id!r}"
        keys = self.keys.changing(run_id)
        keys += (self.keys.index, self.keys.ids)
        existed, workflow = await self._script(Call(what, keys, [run_id], script="delete_run"), run_id)
        if existed:
            self.wake_output_waiters(run_id)
            # Its workflow's index, which the script could not name: gone unless created again since.
            await self._run(self.prune_call(run_id, self._workflow_source(workflow)))
        return bool(existed)

    # -- steps -------------------------------------------------------------------

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        key = self.keys.run_keys(run_id)[1]
        call = Call.plain(f"loading the steps of run {run_id!r}", "HGETALL", key)
        fields = await self._script(call, run_id, "steps")
        steps = [self._step(run_id, step_key, value) for step_key, value in fields.items()]
        return sorted(steps, key=lambda step: step.finished_at)

    def _step(self, run_id: str, key: str, value: str) -> StepRecord:
        try:
            return k.decode_step(run_id, key, value)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise decode_failure(self.label, run_id, f"step {key!r}", exc) from exc

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        batch = (step,)  # save_steps of one step, without its frame: every checkpoint comes here
        reply = await self._script(self._checkpoint(lease, batch), lease.run_id, "steps")
        if reply == 1:
            return step
        return (await self._saved(lease, batch, reply))[0]

    async def save_steps(self, lease: Lease, steps: Iterable[StepRecord]) -> list[StepRecord]:
        batch = tuple(steps)
        if not batch:
            return []
        reply = await self._script(self._checkpoint(lease, batch), lease.run_id, "steps")
        return await self._saved(lease, batch, reply)

    def _checkpoint(self, lease: Lease, batch: tuple[StepRecord, ...]) -> Call:
        for step in batch:
            if step.run_id != lease.run_id:
                raise ValueError(f"step {step.key!r} belongs to run {step.run_id!r}, not {lease.run_id!r}")
        return checkpoint(self.keys, lease, batch)

    async def _saved(self, lease: Lease, batch: tuple[StepRecord, ...], reply: Any) -> list[StepRecord]:
        """What is stored after the checkpoint script answered ``reply`` (see ``checkpoint``)."""
        if reply == 1:
            return list(batch)
        if reply[0] == 0:
            raise await self._lost(lease, reply[1])
        try:
            return stored_steps(batch, reply[1:])
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise decode_failure(self.label, lease.run_id, "steps", exc) from exc

    # -- signals -----------------------------------------------------------------

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        keys = self.keys.run_keys(run_id)
        keys.append(self.keys.live)
        args = [
            k.delivery_field(name, delivery_id),
            secrets.token_hex(8),
            # sent_at is the sender's clock; the waiting run's wake time is the server's (script).
            k.encode_signal_body(name, delivery_id, payload, self.clock()),
            self._ttl_ms(),
            self.keys.channel,
            k.notice(run_id, name),
        ]
        what = f"sending signal {name!r} to run {run_id!r}"
        recorded = await self._script(Call(what, keys, args, script="send_signal"), run_id, "signals")
        return bool(recorded)

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        key = self.keys.run_keys(run_id)[2]
        what = f"listing the signals of run {run_id!r}"
        entries: list[str] = await self._script(Call.plain(what, "LRANGE", key, 0, -1), run_id, "signals")
        deliveries = [self._signal(run_id, position, entry) for position, entry in enumerate(entries)]
        return [d for d in deliveries if name is None or d.name == name]

    def _signal(self, run_id: str, position: int, entry: str) -> SignalRecord:
        try:
            return k.decode_signal(run_id, entry)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise decode_failure(self.label, run_id, f"signals[{position}]", exc) from exc

    async def wait_for_signal(
        self, run_id: str, name: str, index: int, timeout: float | None
    ) -> SignalRecord | None:
        self.client  # noqa: B018 - raises a clear error when the store is not open
        notifier = self._notifier
        assert notifier is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        event = await notifier.register(run_id, name)
        try:
            while True:
                # Cleared before reading: a delivery published during the read still wakes us.
                event.clear()
                try:
                    deliveries = await self.list_signals(run_id, name)
                except StoreUnavailable as exc:
                    # An outage: the wait goes on, re-reading at the polling pace (the heartbeat
                    # stops the run if its lease is lost meanwhile); at the deadline it is raised.
                    failure: StoreUnavailable | None = exc
                else:
                    failure = None
                    if len(deliveries) > index:
                        return deliveries[index]
                pause = _SAFETY_RECHECK if notifier.healthy and failure is None else self.poll_interval
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        if failure is not None:
                            raise failure
                        return None
                    pause = min(pause, remaining)
                try:
                    await asyncio.wait_for(event.wait(), pause)
                except TimeoutError:
                    pass
        finally:
            notifier.unregister(run_id, name, event)

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


def _wrong_type(error: Exception) -> bool:
    """Whether ``error`` is a WRONGTYPE reply, also from inside a script."""
    return isinstance(error, rx.ResponseError) and "WRONGTYPE" in str(error)
