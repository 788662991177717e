"""The wire's fast paths are taken, not only correct: replies read by ``ReplyReader`` (redis-py's
private ``_reader`` and ``_parser``), commands packed by hiredis's ``pack_command``.

Each has a fallback that gives the same results (redis-py's ``read_response``, the packer in
Python), so a redis-py or hiredis release that changes the layout would pass every other test and
silently cost the client CPU the fast path saves. These tests count which path ran."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest
from redis.asyncio.connection import AbstractConnection
from redis_test_kit import StoreMaker, lease_of, new_run, step

import durable_redis._wire as wire_module
from durable_redis import RedisStore
from durable_redis._replies import ReplyReader
from durable_redis._wire import Wire


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts, from now on: commands sent by wires, replies ``ReplyReader`` read and those read
    through redis-py (``Wire._reply``), commands packed by hiredis and packed in Python."""
    taken: Counter[str] = Counter()
    read, reply, pack_in_python = ReplyReader.read, Wire._reply, Wire._pack_in_python
    pack_command, round_trip = wire_module.pack_command, Wire.round_trip

    async def counted_round_trip(self: Wire, commands: Any) -> list[Any]:
        taken["commands"] += len(commands)
        return await round_trip(self, commands)

    async def counted_read(self: ReplyReader) -> Any:
        taken["ReplyReader"] += 1
        return await read(self)

    async def counted_reply(self: Wire, name: str) -> Any:
        taken["read_response"] += 1
        return await reply(self, name)

    def counted_pack(command: Any) -> bytes:
        taken["hiredis"] += 1
        return pack_command(command)

    def counted_pack_in_python(self: Wire, commands: Any) -> list[bytes]:
        taken["python"] += len(commands)
        return pack_in_python(self, commands)

    monkeypatch.setattr(Wire, "round_trip", counted_round_trip)
    monkeypatch.setattr(ReplyReader, "read", counted_read)
    monkeypatch.setattr(Wire, "_reply", counted_reply)
    monkeypatch.setattr(wire_module, "pack_command", counted_pack)
    monkeypatch.setattr(Wire, "_pack_in_python", counted_pack_in_python)
    yield taken


async def store_operations(store: RedisStore, run_id: str) -> None:
    """What a run does: create, checkpoints (alone and together), reads, a signal, completion."""
    run = new_run(run_id)
    await store.create_run(run)
    for i in range(10):
        await store.save_step(lease_of(run), step(run_id, f"s{i}"))
    await asyncio.gather(*(store.save_step(lease_of(run), step(run_id, f"t{i}")) for i in range(10)))
    assert len(await store.load_steps(run_id)) == 20
    assert await store.get_run(run_id) is not None
    await store.send_signal(run_id, "go", "d", '"p"')
    assert [s.payload for s in await store.list_signals(run_id)] == ['"p"']


@pytest.mark.parametrize("protocol", [2, 3])
async def test_the_wire_reads_every_reply_with_reply_reader(
    make_store: StoreMaker, paths: Counter[str], protocol: int
) -> None:
    store = make_store(protocol=protocol)
    await store.open()
    paths.clear()

    await store_operations(store, f"fast-read-{protocol}")

    assert paths["read_response"] == 0, "replies were read through redis-py: ReplyReader.of refused"
    assert paths["commands"] >= 15
    assert paths["ReplyReader"] == paths["commands"]  # one reply per command, every one by ReplyReader


@pytest.mark.parametrize("protocol", [2, 3])
async def test_the_wire_packs_every_command_with_hiredis(
    make_store: StoreMaker, paths: Counter[str], protocol: int
) -> None:
    store = make_store(protocol=protocol)
    await store.open()  # SCRIPT LOAD, a name of two words, is packed in Python
    paths.clear()

    await store_operations(store, f"fast-pack-{protocol}")

    assert paths["python"] == 0, "commands were packed in Python: hiredis refused them"
    assert paths["commands"] >= 15
    assert paths["hiredis"] == paths["commands"]


@pytest.mark.parametrize("protocol", [2, 3])
async def test_redis_py_connections_are_laid_out_as_reply_reader_expects(
    make_store: StoreMaker, protocol: int
) -> None:
    # What ReplyReader.of reads: the connection's socket stream, and its parser's hiredis reader
    # (redis-py picks its hiredis parser when hiredis is installed, as this plugin requires).
    store = make_store(protocol=protocol)
    wire = Wire(store._make_client())
    try:
        await wire.round_trip([("PING",)])
        connection = wire._connection
        assert isinstance(connection, AbstractConnection)
        assert isinstance(getattr(connection, "_reader", None), asyncio.StreamReader)
        parser = getattr(connection, "_parser", None)
        assert isinstance(getattr(parser, "_reader", None), hiredis.Reader), type(parser)
        assert ReplyReader.of(connection) is not None
        assert wire._replies is not None and wire._replies.stream is connection._reader
    finally:
        await wire.close()


def test_hiredis_marks_resp3_pushes() -> None:
    # Without PushNotification (hiredis before 3.2) a RESP3 push would be taken for a reply.
    from durable_redis import _replies

    assert _replies._PUSH is getattr(hiredis, "PushNotification", object())
