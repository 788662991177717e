"""``RedisStore``: the Store contract on redis.asyncio, one Lua script per atomic operation."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from durable.batching import WriteBatcher
from durable.errors import ConfigurationError, LeaseLost, StoreUnavailable
from durable.store import (
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
from durable_redis._checkpoints import Checkpoint, RunWrite, group_by_run, stored_steps
from durable_redis._notify import Notifier
from durable_redis._scripts import SOURCES

try:
    from redis.driver_info import DriverInfo
except ImportError:  # redis-py before 7 reads its own version once, at import
    DriverInfo = None  # type: ignore[assignment,misc]

T = TypeVar("T")

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_TTL = 86_400.0
DEFAULT_PREFIX = "durable"

_TRANSIENT = (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, OSError)
"""Worth another try: a dropped connection, a restarting or loading server, a failover in progress."""

_BATCH_MAX = 500
"""Most checkpoints sent in one pipeline."""
_BATCH_IN_FLIGHT = 1
"""Checkpoint pipelines in flight at once (each holds a pooled connection)."""

_LIST_PAGE = 500
_SAFETY_RECHECK = 30.0
"""Even with a healthy subscription, a waiter re-reads its deliveries this often."""


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without durable's own query options (``prefix``, ``ttl``), and those options."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in ("prefix", "ttl"):
            ours[name] = value
        else:
            theirs.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


class RedisStore(Store):
    """A store in Redis (``redis://`` or ``rediss://``), shared by any number of processes and hosts.

    ``ttl`` (seconds) is how long a run's keys live after it completes or is cancelled;
    ``0`` or ``None`` keeps them forever. Live runs never expire (see the package docs).
    ``prefix`` namespaces every key, so several applications may share one database.
    ``retries`` transient connection errors are retried with exponential backoff from
    ``retry_delay`` seconds before ``StoreUnavailable`` is raised. Other keyword arguments go
    to ``redis.asyncio.from_url`` (for example ``max_connections`` or ``ssl_ca_certs``).
    """

    name = "redis"
    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS, Capability.NOTIFY})
    loop_bound: ClassVar[bool] = True

    def __init__(
        self,
        url: str = DEFAULT_URL,
        ttl: float | None = DEFAULT_TTL,
        prefix: str = DEFAULT_PREFIX,
        *,
        retries: int = 5,
        retry_delay: float = 0.05,
        **redis_options: Any,
    ) -> None:
        if ttl is not None and ttl < 0:
            raise ConfigurationError(f"RedisStore ttl must be >= 0 seconds (0 keeps forever), got {ttl}")
        if retries < 0 or retry_delay < 0:
            raise ConfigurationError("RedisStore retries and retry_delay must be >= 0")
        self.url = url
        self.ttl = ttl or 0.0
        self.keys = k.KeySpace(prefix)
        self.prefix = prefix
        self.retries = retries
        self.retry_delay = retry_delay
        self.redis_options = redis_options
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._notifier: Notifier | None = None
        self._batcher: WriteBatcher[Checkpoint, list[StepRecord]] | None = None

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
        return cls(redis_url, **options)

    def __repr__(self) -> str:
        return f"<RedisStore {redact(self.url)} prefix={self.prefix!r} ttl={self.ttl:g}>"

    def __getstate__(self) -> dict[str, Any]:
        # Connections, scripts and waiters belong to one process's event loop.
        state = dict(self.__dict__)
        state.update(_client=None, _loop=None, _scripts={}, _notifier=None, _batcher=None)
        return state

    # -- lifecycle ---------------------------------------------------------------

    def _make_client(self) -> aioredis.Redis:
        options: dict[str, Any] = {"socket_connect_timeout": 5.0, "socket_timeout": 30.0}
        options.update(self.redis_options)
        # Retries are ours (see _call): redis-py's own would retry scripts whose reply was lost
        # without the idempotence checks, and would stack delays on top of ours.
        options.update(decode_responses=True, retry=Retry(NoBackoff(), 0))
        # A blocking pool queues callers for a free connection; the default pool raises
        # "Too many connections" when thousands of runs checkpoint at once.
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

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return
        # A client opened on an earlier event loop (a previous asyncio.run) cannot be used or
        # closed from this one; it is dropped and a fresh one opened.
        client = self._make_client()
        scripts = {name: client.register_script(source) for name, source in SOURCES.items()}

        async def load() -> None:
            async with client.pipeline(transaction=False) as pipe:
                for source in SOURCES.values():
                    pipe.script_load(source)
                await pipe.execute()

        self._client, self._loop, self._scripts = client, loop, scripts
        try:
            await self._call("connecting", lambda _: load())
        except BaseException:
            self._client, self._loop, self._scripts = None, None, {}
            await _close_quietly(client)
            raise
        self._notifier = Notifier(client, self.keys.channel)
        self._batcher = WriteBatcher(
            self._flush_checkpoints, max_batch=_BATCH_MAX, max_in_flight=_BATCH_IN_FLIGHT
        )

    async def close(self) -> None:
        batcher = self._batcher
        if batcher is not None and self._loop is _running_loop():
            await batcher.drain()  # every checkpoint already submitted gets its answer
        client, notifier = self._client, self._notifier
        self._client, self._loop, self._scripts, self._notifier = None, None, {}, None
        self._batcher = None
        if notifier is not None:
            await notifier.close()
        if client is not None:
            await _close_quietly(client)

    @property
    def client(self) -> aioredis.Redis:
        """The opened redis.asyncio client."""
        if self._client is None or self._loop is not asyncio.get_running_loop():
            raise StoreUnavailable(f"{self!r} is not open on this event loop; await store.open() first")
        return self._client

    async def _call(self, what: str, op: Callable[[int], Awaitable[T]]) -> T:
        """Run ``op(attempt)``, retrying transient errors, then raising ``StoreUnavailable``."""
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            try:
                return await op(attempt)
            except rx.AuthenticationError as exc:
                raise StoreUnavailable(
                    f"Redis at {redact(self.url)} refused the credentials while {what}: {exc}"
                ) from exc
            except _TRANSIENT as exc:
                if attempt == self.retries:
                    raise StoreUnavailable(
                        f"Redis at {redact(self.url)} is unavailable while {what} "
                        f"(gave up after {attempt + 1} attempts): {type(exc).__name__}: {exc}"
                    ) from exc
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """One EVALSHA (the scripts were loaded at open; a flushed cache is reloaded by redis-py)."""
        self.client  # noqa: B018 - raises a clear error when the store is not open
        return await self._scripts[name](keys=keys, args=args)

    async def _command(self, *args: Any) -> Any:
        execute: Callable[..., Awaitable[Any]] = self.client.execute_command
        return await execute(*args)

    async def _hgetall(self, key: str) -> dict[str, str]:
        fields: dict[str, str] = await self._command("HGETALL", key)
        return fields

    async def _scored(self, start: float | str, end: float | str, **options: Any) -> list[tuple[str, float]]:
        """Index entries as ``(run_id, created_at)``."""
        found: list[tuple[str, float]] = await self.client.zrange(  # type: ignore[assignment]
            self.keys.index, start, end, **options
        )
        return found

    def _ttl_ms(self) -> int:
        return round(self.ttl * 1000)

    # -- runs --------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        keys = self.keys.run_keys(run.run_id)
        args: list[Any] = [self._ttl_ms() if run.status.is_final else 0]
        for field, value in k.run_fields(run).items():
            args += [field, value]

        async def op(attempt: int) -> tuple[RunRecord, bool]:
            reply = await self._script("create_run", keys, args)
            if reply[0] == 1:
                return run, True
            stored = k.parse_run(k.pairs(reply[1]))
            # This very call, retried after its reply was lost, finds its own record.
            return stored, attempt > 0 and stored == run

        stored, created = await self._call(f"creating run {run.run_id!r}", op)
        # The index lives in another slot (no multi-slot script in a cluster). Writing the stored
        # record's created_at on every call, not just the first, repairs an index entry lost to a
        # crash between the two steps or pruned while the run was being recreated.
        await self._call(
            f"indexing run {run.run_id!r}",
            lambda _: self.client.zadd(self.keys.index, {stored.run_id: stored.created_at}),
        )
        return stored, created

    async def get_run(self, run_id: str) -> RunRecord | None:
        key = self.keys.run_keys(run_id)[0]
        fields = await self._call(f"reading run {run_id!r}", lambda _: self._hgetall(key))
        return k.parse_run(fields) if fields else None

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        now = time.time()
        expires = now + lease_seconds
        keys = self.keys.run_keys(run_id)
        args = [owner, k.fmt_float(now), k.fmt_float(expires)]
        token = await self._call(f"claiming run {run_id!r}", lambda _: self._script("claim_run", keys, args))
        return None if token is None else Lease(run_id, owner, int(token), expires)

    def _lost(self, lease: Lease, current: Any) -> LeaseLost:
        return LeaseLost.stale(lease.run_id, lease.token, None if current in (None, -1) else int(current))

    async def renew_lease(self, lease: Lease, lease_seconds: float) -> RunRecord:
        keys = self.keys.run_keys(lease.run_id)
        args = [str(lease.token), lease.owner, k.fmt_float(time.time() + lease_seconds)]
        reply = await self._call(
            f"renewing the lease of run {lease.run_id!r}", lambda _: self._script("renew_lease", keys, args)
        )
        if reply[0] == 0:
            raise self._lost(lease, reply[1])
        return k.parse_run(k.pairs(reply[1]))

    async def update_run(
        self,
        lease: Lease,
        status: RunStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        wake_at: float | None = None,
        release: bool = False,
    ) -> None:
        keys = self.keys.run_keys(lease.run_id)
        optional = [result, error, None if wake_at is None else k.fmt_float(wake_at)]
        mask = "".join("0" if value is None else "1" for value in optional)
        args = [
            str(lease.token),
            k.fmt_float(time.time()),
            self._ttl_ms() if status.is_final else 0,
            "1" if release else "0",
            status.value,
            mask,
            *(value or "" for value in optional),
        ]
        reply = await self._call(
            f"updating run {lease.run_id!r}", lambda _: self._script("update_run", keys, args)
        )
        if reply[0] == 0:
            raise self._lost(lease, reply[1])

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        keys = self.keys.run_keys(run_id)
        args = [k.fmt_float(time.time()), self._ttl_ms()]
        reply = await self._call(
            f"cancelling run {run_id!r}", lambda _: self._script("request_cancel", keys, args)
        )
        return None if reply is None else k.parse_run(k.pairs(reply))

    async def reset_run(self, run_id: str) -> RunRecord | None:
        keys = self.keys.run_keys(run_id)
        args = [k.fmt_float(time.time())]
        reply = await self._call(f"resetting run {run_id!r}", lambda _: self._script("reset_run", keys, args))
        return None if reply is None else k.parse_run(k.pairs(reply))

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        if query.limit <= 0 or (query.statuses is not None and not query.statuses):
            return []
        return await self._call("listing runs", lambda _: self._list_runs(query))

    async def _list_runs(self, query: RunQuery) -> list[RunRecord]:
        wanted = query.offset + query.limit
        found: list[RunRecord] = []
        expired: list[tuple[str, float]] = []
        high = "+inf" if query.created_before is None else "(" + k.fmt_float(query.created_before)
        low = "-inf" if query.created_after is None else k.fmt_float(query.created_after)
        while len(found) < wanted:
            page = await self._scored(
                high, low, desc=True, byscore=True, withscores=True, offset=0, num=_LIST_PAGE
            )
            if not page:
                break
            last_page = len(page) < _LIST_PAGE
            if not last_page:
                # Runs created at the same instant are ordered by id: read the whole tie group at
                # the page's edge, then continue strictly below it.
                edge = page[-1][1]
                page = [entry for entry in page if entry[1] != edge]
                page += await self._scored(edge, edge, byscore=True, withscores=True)
                high = "(" + k.fmt_float(edge)
            page.sort(key=lambda entry: (-entry[1], entry[0]))
            if query.id_prefix is not None:
                page = [entry for entry in page if entry[0].startswith(query.id_prefix)]
            async with self.client.pipeline(transaction=False) as pipe:
                for run_id, _ in page:
                    pipe.hgetall(self.keys.run_keys(run_id)[0])
                records: list[dict[str, str]] = await pipe.execute()
            for (run_id, score), fields in zip(page, records, strict=True):
                if not fields:
                    expired.append((run_id, score))
                    continue
                run = k.parse_run(fields)
                if query.matches(run):
                    found.append(run)
            if last_page:
                break
        if expired:
            args: list[Any] = []
            for run_id, score in expired:
                args += [run_id, k.fmt_float(score)]
            await self._scripts["prune_index"](keys=[self.keys.index], args=args)
        return found[query.offset : wanted]

    async def delete_run(self, run_id: str) -> bool:
        keys = self.keys.run_keys(run_id)
        existed = await self._call(f"deleting run {run_id!r}", lambda _: self._script("delete_run", keys, []))
        await self._call(f"deleting run {run_id!r}", lambda _: self.client.zrem(self.keys.index, run_id))
        return bool(existed)

    # -- steps -------------------------------------------------------------------

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        key = self.keys.run_keys(run_id)[1]
        fields = await self._call(f"loading the steps of run {run_id!r}", lambda _: self._hgetall(key))
        steps = [k.decode_step(run_id, step_key, value) for step_key, value in fields.items()]
        return sorted(steps, key=lambda step: step.finished_at)

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        [stored] = await self.save_steps(lease, [step])
        return stored

    async def save_steps(self, lease: Lease, steps: Iterable[StepRecord]) -> list[StepRecord]:
        batch = tuple(steps)
        if not batch:
            return []
        for step in batch:
            if step.run_id != lease.run_id:
                raise ValueError(f"step {step.key!r} belongs to run {step.run_id!r}, not {lease.run_id!r}")
        self.client  # noqa: B018 - raises a clear error when the store is not open
        assert self._batcher is not None
        return await self._batcher.submit((lease, batch))

    async def _flush_checkpoints(self, batch: list[Checkpoint]) -> list[list[StepRecord] | BaseException]:
        """Store checkpoints that were submitted together: a lone one as one script call, several
        as one pipeline of one script call per run. Returns each checkpoint's outcome."""
        if len(batch) == 1:
            lease, steps = batch[0]
            return [await self._save_run_steps(lease, steps)]
        writes = group_by_run(batch)
        replies = await self._call(
            f"checkpointing {len(batch)} writes of {len(writes)} runs",
            lambda _: self._save_pipelined(writes),
        )
        outcomes: list[list[StepRecord] | BaseException] = [[] for _ in batch]
        for write, reply in zip(writes, replies, strict=True):
            for index, outcome in zip(write.members, self._write_outcomes(write, reply, batch), strict=True):
                outcomes[index] = outcome
        return outcomes

    async def _save_run_steps(self, lease: Lease, steps: tuple[StepRecord, ...]) -> list[StepRecord]:
        """One ``save_steps`` script call: the steps of one run, atomically."""
        keys = self.keys.run_keys(lease.run_id)[:2]
        args = RunWrite(lease, steps=list(steps)).args()
        reply = await self._call(
            f"checkpointing run {lease.run_id!r}", lambda _: self._script("save_steps", keys, args)
        )
        if reply[0] == 0:
            raise self._lost(lease, reply[1])
        return stored_steps(steps, reply[1:])

    async def _save_pipelined(self, writes: list[RunWrite]) -> list[Any]:
        """Every write's script call in one round trip; the replies, errors included, in order.

        Calls answered NOSCRIPT (the script cache was flushed or the server restarted) did
        nothing: the script is loaded again and they are sent once more. A transient error in
        any reply is raised, so that ``_call`` sends the whole batch again; that is safe
        because a completed step's first writer wins, so a re-sent write finds its own step.
        """
        script = self._scripts["save_steps"]
        replies = await self._evalsha_each(script.sha, writes)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, rx.NoScriptError)]
        if missing:
            script.sha = await self.client.script_load(script.script)
            again = await self._evalsha_each(script.sha, [writes[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, _TRANSIENT):
                raise reply
        return replies

    async def _evalsha_each(self, sha: str, writes: list[RunWrite]) -> list[Any]:
        # Plain EVALSHA commands: queuing the Script object would make redis-py spend an
        # extra round trip on SCRIPT EXISTS before every pipeline.
        async with self.client.pipeline(transaction=False) as pipe:
            for write in writes:
                keys = self.keys.run_keys(write.lease.run_id)[:2]
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *write.args())
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    def _write_outcomes(
        self, write: RunWrite, reply: Any, batch: list[Checkpoint]
    ) -> list[list[StepRecord] | BaseException]:
        """The outcome of each checkpoint merged into ``write``, from its script's reply."""
        if isinstance(reply, Exception):
            return [_copy_error(reply) for _ in write.members]
        if reply[0] == 0:  # a stale token: nothing of this run was written
            return [self._lost(batch[index][0], reply[1]) for index in write.members]
        kept = reply[1:]
        outcomes: list[list[StepRecord] | BaseException] = []
        for index in write.members:
            steps = batch[index][1]
            outcomes.append(stored_steps(steps, kept[: len(steps)]))
            kept = kept[len(steps) :]
        return outcomes

    # -- signals -----------------------------------------------------------------

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        run_key, _, sigs, sigids = self.keys.run_keys(run_id)
        now = time.time()
        args = [
            k.delivery_field(name, delivery_id),
            secrets.token_hex(8),
            k.encode_signal_body(name, delivery_id, payload, now),
            k.fmt_float(now),
            self._ttl_ms(),
            self.keys.channel,
            k.notice(run_id, name),
        ]
        keys = [run_key, sigs, sigids]
        recorded = await self._call(
            f"sending signal {name!r} to run {run_id!r}", lambda _: self._script("send_signal", keys, args)
        )
        return bool(recorded)

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        key = self.keys.run_keys(run_id)[2]
        entries: list[str] = await self._call(
            f"listing the signals of run {run_id!r}", lambda _: self._command("LRANGE", key, 0, -1)
        )
        deliveries = [k.decode_signal(run_id, entry) for entry in entries]
        return [d for d in deliveries if name is None or d.name == name]

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
                deliveries = await self.list_signals(run_id, name)
                if len(deliveries) > index:
                    return deliveries[index]
                pause = _SAFETY_RECHECK if notifier.healthy else self.poll_interval
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
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
        """Delete every key under this store's prefix (for tests and teardown); returns how many."""
        deleted = 0
        async for key in self.client.scan_iter(match=self.keys.pattern, count=1000):
            deleted += int(await self.client.unlink(key))
        return deleted


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _copy_error(error: Exception) -> Exception:
    """An exception like ``error`` for one caller alone (a raised exception collects the
    traceback of every task that raises it)."""
    try:
        copy = type(error)(*error.args)
    except Exception:  # a constructor with other arguments: share the original
        return error
    copy.__cause__ = error.__cause__
    return copy


async def _close_quietly(client: aioredis.Redis) -> None:
    try:
        await client.aclose()
    except Exception:  # closing a client whose server is gone must not mask the real error
        pass
