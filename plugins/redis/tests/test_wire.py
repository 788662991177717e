"""The batcher's own connection (``_wire``), against a real server: counted connections and round
trips, replies matched to their commands through error replies and lost connections."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from redis import exceptions as rx
from redis_test_kit import (
    CountingConnection,
    CuttingConnection,
    DirectCut,
    StoreMaker,
    counted,
    in_one_batch,
    lease_of,
    new_run,
    step,
    unknown_sha,
)

from durable.errors import LeaseLost, StoreUnavailable
from durable.store import Lease, RunRecord, RunStatus, StepRecord
from durable_redis import RedisStore
from durable_redis._wire import Wire


async def opened(store: RedisStore, name: str) -> int:
    """Opens ``store`` (a connection, then one SCRIPT LOAD round trip); the sends its connection's
    handshake took (HELLO, CLIENT SETNAME...), which every reconnection takes again."""
    before = CountingConnection.sent[name]
    await store.open()
    return CountingConnection.sent[name] - before - 1


def server_connections(admin: redis.Redis, name: str) -> int:
    """Connections the server holds under the client name ``name``."""
    return sum(1 for client in admin.client_list() if client.get("name") == name)


# -- one connection, one round trip per call ------------------------------------------------------


async def test_sequential_checkpoints_use_one_connection_and_one_round_trip_each(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store, name = counted(make_store, "wire")
    handshake = await opened(store, name)
    run = new_run("seq")
    await store.create_run(run)  # the script and the index entry, in one round trip
    before = CountingConnection.sent[name]

    for i in range(50):
        await store.save_step(lease_of(run), step("seq", f"s{i}"))

    assert CountingConnection.sent[name] - before == 50
    assert CountingConnection.checkpoints[name] == 50
    assert CountingConnection.sent[name] == handshake + 1 + 1 + 50  # nothing else went anywhere
    assert CountingConnection.opened[name] == 1  # the pool was never asked for one
    assert server_connections(admin, name) == 1
    assert len(await store.load_steps("seq")) == 50
    assert CountingConnection.opened[name] == 1


async def test_closing_the_store_closes_its_connection_and_reopening_makes_one(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store, name = counted(make_store, "wire")
    await store.open()
    await store.create_run(new_run("kept"))
    assert server_connections(admin, name) == 1

    await store.close()
    assert server_connections(admin, name) == 0

    await store.open()
    assert await store.get_run("kept") is not None
    assert CountingConnection.opened[name] == 2
    assert server_connections(admin, name) == 1


# -- replies matched to their commands ------------------------------------------------------------


async def test_an_error_reply_mid_pipeline_leaves_the_later_replies_matched(
    make_store: StoreMaker,
) -> None:
    store, name = counted(make_store, "wire")
    handshake = await opened(store, name)
    wire = Wire(store.client)  # a second one, beside the store's own
    sent = CountingConnection.sent[name]
    key, hash_key = f"{store.prefix}:plain", f"{store.prefix}:hash"

    replies = await wire.round_trip(
        [
            ("SET", key, "v"),
            ("HGETALL", key),  # WRONGTYPE
            ("EVALSHA", unknown_sha(), 0),  # NOSCRIPT
            ("GET", key),
            ("EVAL", "return redis.error_reply('from the script')", 0),
            ("HSET", hash_key, "f", "1"),
            ("HGETALL", hash_key),
        ]
    )

    assert replies[0] is True  # execute_command's SET callback
    assert isinstance(replies[1], rx.ResponseError) and "WRONGTYPE" in str(replies[1])
    assert isinstance(replies[2], rx.NoScriptError)
    assert replies[3] == "v"
    assert isinstance(replies[4], rx.ResponseError) and "from the script" in str(replies[4])
    assert replies[5] == 1
    assert replies[6] == {"f": "1"}
    # The connection is still in step: the next round trip reads its own replies, unreconnected.
    assert await wire.round_trip([("GET", key), ("PING",)]) == ["v", True]
    assert CountingConnection.sent[name] - sent == handshake + 2
    assert CountingConnection.opened[name] == 2  # the store's own, then this wire's
    await wire.close()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_replies_are_what_execute_command_returns(make_store: StoreMaker, protocol: int) -> None:
    store = make_store(protocol=protocol)
    await store.open()
    client = store.client
    wire = Wire(client)
    zset, hash_key, listed = (f"{store.prefix}:{kind}" for kind in ("zset", "hash", "list"))
    await client.hset(hash_key, mapping={"a": "1", "b": "2"})
    await client.rpush(listed, "x", "y")
    commands: list[tuple[Any, ...]] = [
        ("ZADD", zset, 1.5, "m"),
        ("ZADD", zset, 2.5, "m"),
        ("HGETALL", hash_key),
        ("HGETALL", f"{store.prefix}:missing"),
        ("LRANGE", listed, 0, -1),
        ("ZREM", zset, "m"),
        ("SCRIPT LOAD", "return 1"),
        ("EVAL", "return {1, 'two', {3}}", 0),
    ]

    through_wire = [(await wire.round_trip([command]))[0] for command in commands]
    await client.delete(zset)
    through_client = [await client.execute_command(*command) for command in commands]

    assert through_wire == through_client
    assert through_wire[2] == {"a": "1", "b": "2"}  # a dict under RESP2 too
    await wire.close()


async def test_a_push_message_on_the_wire_is_not_taken_for_a_reply(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    # Under RESP3 the server may push messages on any connection (here: a client-side caching
    # invalidation); they answer no command, and must not shift the replies that follow.
    store = make_store(protocol=3)
    await store.open()
    wire = Wire(store.client)
    key = f"{store.prefix}:tracked"
    admin.set(key, "1")
    tracking, value = await wire.round_trip([("CLIENT", "TRACKING", "ON"), ("GET", key)])
    assert not isinstance(tracking, Exception) and value == "1"
    admin.set(key, "2")  # the key this connection read changed: the server pushes it a notice
    await asyncio.sleep(0.05)  # the push arrives before the next command is sent
    assert await wire.round_trip([("PING",), ("GET", key)]) == [True, "2"]
    assert wire._replies is not None  # read by ReplyReader, not by redis-py
    await wire.close()


async def test_a_store_speaking_resp2_reads_its_records(make_store: StoreMaker) -> None:
    store = make_store(protocol=2)
    await store.open()
    run = new_run("resp2")
    await store.create_run(run)
    await store.save_step(lease_of(run), step("resp2", "s"))
    await store.send_signal("resp2", "go", "d", '"p"')
    assert await store.get_run("resp2") == run
    assert [s.key for s in await store.load_steps("resp2")] == ["s"]
    assert [s.payload for s in await store.list_signals("resp2")] == ['"p"']


async def test_two_round_trips_at_once_on_one_wire_are_refused(make_store: StoreMaker) -> None:
    store = make_store()
    await store.open()
    wire = Wire(store.client)
    first, second = await asyncio.gather(
        wire.round_trip([("PING",)]), wire.round_trip([("PING",)]), return_exceptions=True
    )
    assert first == [True]
    assert isinstance(second, RuntimeError)
    await wire.close()


# -- lost connections -------------------------------------------------------------------------------


async def runs_for_the_batch(store: RedisStore, admin: redis.Redis) -> Lease:
    """Creates the runs ``batch`` works on (6 round trips); the lease held on ``run-0``."""
    run = new_run("run-0")
    await store.create_run(run)
    await store.create_run(new_run("run-1"))
    await store.create_run(new_run("pending", owner=None))
    admin.set(store.keys.run_keys("broken")[0], "not a hash")
    return lease_of(run)


async def batch(store: RedisStore, held: Lease) -> list[Any]:
    """Five calls in one pipeline: a checkpoint, an error reply, a stale lease, a claim, a read."""
    stale = Lease("run-1", "owner-a", 9, held.expires_at)  # run-1's token is 1
    return await in_one_batch(
        store,
        store.save_step(held, step("run-0", "s")),
        store.get_run("broken"),
        store.save_step(stale, step("run-1", "s")),
        store.claim_run("pending", "owner-b", 30),
        store.get_run("run-1"),
    )


async def assert_each_its_own(store: RedisStore, outcomes: list[Any]) -> None:
    """Each caller got its own outcome, and each write was done once."""
    saved, broken, lost, claimed, read = outcomes
    assert isinstance(saved, StepRecord) and saved.run_id == "run-0" and saved.key == "s"
    # A run key of another type reads as a corrupt run (issue 16, items 1 and 7), not an error.
    assert isinstance(broken, RunRecord) and broken.status is RunStatus.CORRUPT and broken.run_id == "broken"
    assert isinstance(lost, LeaseLost) and "'run-1'" in str(lost) and "current: 1" in str(lost)
    assert isinstance(claimed, Lease) and claimed.run_id == "pending" and claimed.token == 1
    assert isinstance(read, RunRecord) and read.run_id == "run-1" and read.owner == "owner-a"
    assert [s.key for s in await store.load_steps("run-0")] == ["s"]
    assert await store.load_steps("run-1") == []
    pending = await store.get_run("pending")
    assert pending is not None and pending.owner == "owner-b" and pending.lease_token == 1


@pytest.mark.parametrize("replies_read", [0, 2, 4])
@pytest.mark.parametrize("reader", ["ReplyReader", "read_response"])
async def test_a_connection_lost_mid_batch_is_replaced_and_every_caller_gets_its_own_outcome(
    make_store: StoreMaker,
    admin: redis.Redis,
    replies_read: int,
    reader: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The wire reads replies itself, or through redis-py where the connection class reads its own.
    direct = reader == "ReplyReader"
    connection_class = CountingConnection if direct else CuttingConnection
    store, name = counted(make_store, "wire", connection_class=connection_class, retry_delay=0)
    cut = DirectCut(monkeypatch)
    handshake = await opened(store, name)
    held = await runs_for_the_batch(store, admin)
    sent, batches = CountingConnection.sent[name], CountingConnection.checkpoints[name]
    if direct:
        cut.after(replies_read)
    else:
        CuttingConnection.cut_after[name] = replies_read

    outcomes = await batch(store, held)

    assert cut.happened if direct else name not in CuttingConnection.cut_after  # the cut did happen
    # The batch, then the batch again on a new connection: the old one, with replies still unread
    # in it, was not used again (they would have been taken for the second batch's replies).
    assert CountingConnection.checkpoints[name] - batches == 2
    assert CountingConnection.sent[name] - sent == 2 + handshake
    assert CountingConnection.opened[name] == 2
    await assert_each_its_own(store, outcomes)
    assert CountingConnection.opened[name] == 2


async def test_a_connection_killed_by_the_server_is_replaced_on_the_next_round_trip(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store, name = counted(make_store, "wire", retry_delay=0)
    handshake = await opened(store, name)
    held = await runs_for_the_batch(store, admin)
    [connection] = [c for c in admin.client_list() if c.get("name") == name]
    admin.client_kill_filter(_id=connection["id"])
    sent, batches = CountingConnection.sent[name], CountingConnection.checkpoints[name]

    outcomes = await batch(store, held)

    # The batch found the connection dead and was sent again on a new one.
    assert CountingConnection.checkpoints[name] - batches == 2
    assert CountingConnection.sent[name] - sent == 2 + handshake
    assert CountingConnection.opened[name] == 2
    await assert_each_its_own(store, outcomes)
    assert server_connections(admin, name) == 1


async def test_a_server_that_never_answers_times_out_as_a_transient_failure(make_store: StoreMaker) -> None:
    # The wire's connection has no socket timeout of its own: one timer bounds each round trip.
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client hangs up; never a reply
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = make_store(url=f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, retries=1, retry_delay=0.01)
    try:
        with pytest.raises(StoreUnavailable, match="unavailable"):
            # wait_for: a missing timeout must fail this test, not hang it.
            await asyncio.wait_for(store.open(), timeout=30)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "commands",
    [
        [("PING",)],
        [("SCRIPT LOAD", "return 1"), ("EVALSHA", "ab" * 20, 2, "k1", "k2", "ünïcødé ✓", 7, -3, 2.5, 1e300)],
        [(b"CONFIG GET", b"maxmemory")],
        [("SET", "big", "x" * 100_000)],
        [("SET", b"raw", b"\x00\xff" * 5_000, bytearray(b"ba"), memoryview(b"mv"))],
        [("HSET", "h", "f", 0), ("ZADD", "z", 1.0000000000000002, "m"), ("GET", "")],
    ],
    ids=["ping", "scripts", "bytes-name", "large", "buffers", "numbers"],
)
async def test_the_wire_packs_what_redis_py_packs(
    make_store: StoreMaker, commands: list[tuple[Any, ...]]
) -> None:
    wire = Wire(make_store()._make_client())
    try:
        theirs = b"".join(bytes(chunk) for chunk in wire._connection.pack_commands(commands))
    except redis.DataError:  # older redis-py (5.0) refuses a bytearray: then both packers must too
        with pytest.raises(redis.DataError):
            wire.pack(commands)
        with pytest.raises(redis.DataError):
            wire._pack_in_python(commands)
        return
    assert b"".join(wire.pack(commands)) == theirs
    # Both packers: hiredis's where it can, and the one in Python for everything else.
    assert b"".join(wire._pack_in_python(commands)) == theirs


@pytest.mark.parametrize("value", [True, None, object()])
async def test_the_wire_refuses_what_redis_py_refuses(make_store: StoreMaker, value: object) -> None:
    wire = Wire(make_store()._make_client())
    with pytest.raises(redis.DataError):
        wire.pack([("SET", "k", value)])


async def test_the_wire_encodes_text_as_the_client_is_configured(make_store: StoreMaker) -> None:
    wire = Wire(make_store(encoding="latin-1")._make_client())
    commands = [("SET", "k", "café")]
    theirs = b"".join(bytes(chunk) for chunk in wire._connection.pack_commands(commands))
    assert b"".join(wire.pack(commands)) == theirs
    assert b"caf\xe9" in theirs  # latin-1, not UTF-8
