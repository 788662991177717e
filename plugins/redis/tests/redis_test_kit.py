"""Helpers shared by the Redis store's tests (on pytest's ``pythonpath``, see pyproject.toml)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import network_faults
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


class Proxy(network_faults.Proxy):
    """``network_faults.Proxy`` in front of a Redis server, with its URL."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"
