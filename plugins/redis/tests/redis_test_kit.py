"""Helpers shared by the Redis store's tests (on pytest's ``pythonpath``, see pyproject.toml)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
import redis
import redis.asyncio as aioredis

from durable.store import Lease, RunRecord, RunStatus, StepRecord, StepStatus
from durable_redis import RedisStore
from durable_redis._replies import ReplyReader
from durable_redis._scripts import SOURCES

StoreMaker = Callable[..., RedisStore]
SAVE_STEPS_SHA = hashlib.sha1(SOURCES["save_steps"].encode()).hexdigest().encode()


class CountingConnection(aioredis.Connection):
    """Counts, per client name, round trips (every send is one), connections opened, and sends
    carrying at least one ``save_steps`` script call."""

    sent: Counter[str] = Counter()
    opened: Counter[str] = Counter()
    checkpoints: Counter[str] = Counter()

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        name = self.client_name or ""
        CountingConnection.sent[name] += 1
        chunks = [command] if isinstance(command, bytes | str) else command
        packed = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        if SAVE_STEPS_SHA in packed:
            CountingConnection.checkpoints[name] += 1
        await super().send_packed_command(command, check_health)

    async def _connect(self) -> None:
        # Where the socket is opened, in every redis-py version (redis-py 8 no longer calls
        # on_connect when it connects, so counting there counted nothing).
        CountingConnection.opened[self.client_name or ""] += 1
        await super()._connect()  # type: ignore[no-untyped-call]


class RecordingConnection(CountingConnection):
    """A counting connection that also keeps, per client name, every packed send: what a test
    reads to tell which keys an operation touched."""

    packets: ClassVar[dict[str, list[bytes]]] = {}

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        chunks = [command] if isinstance(command, bytes | str) else command
        packed = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        RecordingConnection.packets.setdefault(self.client_name or "", []).append(packed)
        await super().send_packed_command(command, check_health)


def sent_since(name: str, mark: int) -> bytes:
    """Everything the connections named ``name`` sent after their ``mark``-th packet."""
    return b"".join(RecordingConnection.packets.get(name, [])[mark:])


def packet_mark(name: str) -> int:
    return len(RecordingConnection.packets.get(name, []))


class CuttingConnection(CountingConnection):
    """A counting connection whose next read can be made to fail after a number of replies, as a
    connection lost in the middle of a pipeline fails. It leaves the socket open with the other
    replies unread: the reader must not use it again as it is."""

    cut_after: ClassVar[dict[str, int]] = {}
    """Per client name: how many replies are still read before the next read fails (once)."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        name = self.client_name or ""
        left = CuttingConnection.cut_after.get(name)
        if left == 0:
            del CuttingConnection.cut_after[name]
            raise redis.ConnectionError("connection lost in the middle of the replies (cut by the test)")
        if left is not None:
            CuttingConnection.cut_after[name] = left - 1
        return await super().read_response(*args, **kwargs)


class DirectCut:
    """Makes ``ReplyReader``'s next read fail after a number of replies, once: a connection lost in
    the middle of a pipeline, where the wire reads replies itself (``CuttingConnection`` cuts
    where they are read through redis-py)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.left: int | None = None
        self.happened = False
        read = ReplyReader.read

        async def cut_read(reader: ReplyReader) -> Any:
            if self.left == 0:
                self.left, self.happened = None, True
                raise redis.ConnectionError("connection lost in the middle of the replies (cut by the test)")
            if self.left is not None:
                self.left -= 1
            return await read(reader)

        monkeypatch.setattr(ReplyReader, "read", cut_read)

    def after(self, replies: int) -> None:
        self.left = replies


def counted(make_store: StoreMaker, prefix: str, **options: Any) -> tuple[RedisStore, str]:
    """A store whose connections count under a fresh client name, and that name."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    options.setdefault("connection_class", CountingConnection)
    return make_store(client_name=name, **options), name


def new_run(run_id: str, owner: str | None = "owner-a") -> RunRecord:
    """A run owned by ``owner`` under token 1, or pending when ``owner`` is None."""
    now = time.time()
    return RunRecord(
        run_id=run_id,
        workflow="wf",
        status=RunStatus.RUNNING if owner else RunStatus.PENDING,
        inputs="{}",
        inputs_digest="d",
        created_at=now,
        updated_at=now,
        owner=owner,
        lease_token=1 if owner else 0,
        lease_expires_at=now + 60 if owner else None,
    )


def lease_of(run: RunRecord, token: int | None = None) -> Lease:
    assert run.owner is not None and run.lease_expires_at is not None
    return Lease(run.run_id, run.owner, run.lease_token if token is None else token, run.lease_expires_at)


async def created(store: RedisStore, count: int, prefix: str = "run") -> list[Lease]:
    """Creates runs ``<prefix>-0`` .. ``<prefix>-<count-1>``, owned; their leases."""
    leases = []
    for i in range(count):
        run = new_run(f"{prefix}-{i}")
        await store.create_run(run)
        leases.append(lease_of(run))
    return leases


def step(
    run_id: str, key: str, result: str = '"ok"', status: StepStatus = StepStatus.COMPLETED
) -> StepRecord:
    """A checkpoint of ``run_id`` finished now."""
    now = time.time()
    return StepRecord(run_id, key, "task", "args", status, result, None, 1, now, now)


async def in_one_batch(store: RedisStore, *operations: Awaitable[Any]) -> list[Any]:
    """Each operation's outcome (its result or exception): submitted in one loop turn, they are
    sent as one pipeline by ``store``'s batcher."""
    assert store._batcher is not None
    return await asyncio.gather(*operations, return_exceptions=True)


def unknown_sha() -> str:
    """A SHA the server never saw: it answers NOSCRIPT, as after SCRIPT FLUSH or a restart, without
    flushing the shared server's script cache under other tests."""
    return hashlib.sha1(b"-- not loaded " + secrets.token_bytes(8)).hexdigest()


def as_previous_release(admin: redis.Redis, store: RedisStore) -> None:
    """Turn the keys of ``store``'s prefix into what the previous release left: the same run
    hashes, steps, deliveries, run index and index of live runs, but no layout version, no status,
    workflow or id index, no expiry schedule, and the dedupe hashes under their old name
    (``:sigids``)."""
    keys = store.keys
    prefix = keys.prefix
    for key in admin.scan_iter(match=keys.pattern, count=1000):
        parsed = keys.run_id_of(key)
        if parsed is not None and parsed[1] == "delivered":
            admin.rename(key, keys.legacy_delivered(parsed[0]))
        elif key.startswith(f"{prefix}:workflow:{{") or key.startswith(f"{prefix}:status:"):
            admin.delete(key)
    admin.delete(keys.layout, keys.ids, keys.expiring)
    admin.set(f"{prefix}:live:built", "1")


def drop(redis_url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (a test's or a session's namespace)."""
    admin = redis.Redis.from_url(redis_url)
    try:
        for key in admin.scan_iter(match=prefix + "*", count=1000):
            admin.unlink(key)
    finally:
        admin.close()


class Proxy:
    """A TCP proxy in front of a Redis server, for network faults.

    ``stop`` drops every connection and refuses new ones (a dead server). ``cut`` stops forwarding
    in both directions and closes nothing, new connections included (a partition: nothing arrives,
    nothing fails); ``heal`` forwards again, delivering what was held. ``forget`` makes the open
    connections silent for good, dropping what they send, while new ones work (a NAT, a proxy or
    a server that forgot them without a reset).
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._forgotten: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and drop the open ones, as a dead server would."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def forget(self) -> None:
        self._forgotten.update(self._writers)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await self._flowing.wait()  # a partition: the handshake gets no answer
        try:
            server_r, server_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, server_w))
        pair = {client_w, server_w}
        await asyncio.gather(self._pipe(client_r, server_w, pair), self._pipe(server_r, client_w, pair))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: set[asyncio.StreamWriter]
    ) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if pair & self._forgotten:
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
