"""The batcher's own connections: its round trips skip redis-py's connection pool.

The store's batcher has a few round trips in flight at most (``_BATCH_IN_FLIGHT``), and each
one goes over a connection of its own, held for good (``Wires``). Through the pool, every round
trip pays for taking and returning a connection (locks, checks, metrics) and for
``execute_command``'s or a pipeline's wrappers, which cost more client CPU than the round trip
itself. ``Wire`` holds one connection and just writes the packed commands and reads every reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from durable_redis._replies import ReplyReader

_UTF8_STRICT = (("utf-8", "strict"), ("utf8", "strict"))
_COPIED = 1 << 16
"""Arguments shorter than this are formatted into one piece with their header."""

Command = Sequence[Any]
"""A command as ``execute_command`` takes it: the name, then the arguments."""


def _one_word(command: Command) -> tuple[Any, ...]:
    """``command`` as the tuple hiredis packs; a ``TypeError`` for a name of several words
    ("SCRIPT LOAD"), which redis-py sends as one argument per word."""
    name = command[0]
    if type(name) is not str or " " in name:
        raise TypeError(f"{name!r} is not a one-word command name")
    return command if type(command) is tuple else tuple(command)


class Wire:
    """One connection to ``client``'s server, for one round trip at a time.

    The connection comes from the pool's own factory (its class, address, credentials,
    protocol, timeouts and client name), but the pool does not hold it: it does not count
    towards ``max_connections``, and ``close`` closes it. It connects on first use and again
    after any failure.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        # Made, not taken from the pool: held for good, a pooled one would leave one fewer for the
        # notifier and listings (and get_connection's signature differs across redis-py versions).
        pool = client.connection_pool
        self._connection: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
        # One timer for the whole round trip instead of one per send and read: with a socket
        # timeout, redis-py sends through asyncio.wait_for, which on Python 3.11 starts a task
        # and costs a loop turn per round trip (about 20 µs here, a fifth of a checkpoint).
        self._timeout: float | None = self._connection.socket_timeout
        self._connection.socket_timeout = None
        # What execute_command does to a reply: the callbacks depend on the client's protocol
        # (under RESP2, HGETALL's flat list becomes a dict).
        self._callbacks = client.response_callbacks
        encoder = self._connection.encoder
        default = (encoder.encoding.lower(), encoder.encoding_errors) in _UTF8_STRICT
        # str.encode's defaults spare a partial's cost per argument.
        self._encode: Callable[[str], bytes] = (
            str.encode
            if default
            else functools.partial(str.encode, encoding=encoder.encoding, errors=encoder.encoding_errors)
        )
        self._utf8 = default
        self.busy = False
        """Carrying a round trip now."""
        self._replies: ReplyReader | None = None

    async def round_trip(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` together, then return each command's reply, in order.

        An error reply (a ``ResponseError``: NOSCRIPT, WRONGTYPE, a script's error) is returned as
        that command's reply, and the replies after it are still read. Any other failure (a lost
        connection, a timeout, or an error that redis-py raises instead of returning, such as
        LOADING) is raised after the connection is disconnected. Replies may be left unread, so the
        connection is never used again as it is: the next round trip reconnects.
        """
        if self.busy:  # two round trips at once would read each other's replies
            raise RuntimeError("the batcher's connection is already carrying a round trip")
        self.busy = True
        connection = self._connection
        try:
            async with asyncio.timeout(self._timeout):  # raises TimeoutError, an OSError
                await connection.send_packed_command(self.pack(commands))
                replies = self._reply_reader()
                if replies is None:
                    return [await self._reply(command[0]) for command in commands]
                return [self._answer(await replies.read(), command[0]) for command in commands]
        except BaseException:
            self._replies = None  # it may hold part of a reply
            await self._disconnect()
            raise
        finally:
            self.busy = False

    def pack(self, commands: Sequence[Command]) -> list[bytes]:
        """``commands`` in the Redis protocol, the bytes redis-py's ``pack_commands`` writes.

        Not redis-py's packer: it is pure Python, with a chunking scheme for large values, and
        cost more client CPU than anything else in a batch (a quarter of scenario B). hiredis
        packs a command in C, three times faster than ``_pack_in_python``, but only commands it
        packs as redis-py does: UTF-8 text, a one-word name, and no argument it refuses.
        The pieces go to the transport as one list, which joins them once.
        """
        if self._utf8:
            try:
                return [pack_command(_one_word(command)) for command in commands]
            except TypeError:  # a bool, a bytearray or a name of several words: see below
                pass
        return self._pack_in_python(commands)

    def _pack_in_python(self, commands: Sequence[Command]) -> list[bytes]:
        encode, fallback = self._encode, self._connection.encoder.encode
        pieces: list[bytes] = []
        add = pieces.append
        for name, *args in commands:
            # A name such as "SCRIPT LOAD" is several words, sent as separate arguments.
            words = (name.encode() if isinstance(name, str) else name).split()
            add(b"*%d\r\n" % (len(words) + len(args)))
            for data in words:
                add(b"$%d\r\n%b\r\n" % (len(data), data))
            for arg in args:
                kind = type(arg)
                if kind is str:
                    data = encode(arg)
                elif kind is bytes:
                    data = arg
                elif kind is int or kind is float:
                    data = repr(arg).encode()
                else:  # anything rarer, and the errors redis-py raises (DataError for a bool)
                    data = bytes(fallback(arg))  # type: ignore[no-untyped-call]
                if len(data) < _COPIED:
                    add(b"$%d\r\n%b\r\n" % (len(data), data))
                else:  # not copied into a header: the transport joins the pieces once anyway
                    pieces += (b"$%d\r\n" % len(data), data, b"\r\n")
        return pieces

    def _reply_reader(self) -> ReplyReader | None:
        """The reader of the current connection's replies (a new connection needs a new one)."""
        replies = self._replies
        if replies is None or replies.stream is not getattr(self._connection, "_reader", None):
            replies = self._replies = ReplyReader.of(self._connection)
        return replies

    async def _reply(self, name: str) -> Any:
        """The next reply through redis-py, where ``ReplyReader`` cannot read it."""
        try:
            reply = await self._connection.read_response()
        except ResponseError as error:  # read in full: the connection is still in step
            return error
        callback = self._callbacks.get(name)
        return reply if callback is None else callback(reply)

    def _answer(self, reply: Any, name: str) -> Any:
        """What ``_reply`` makes of ``reply``, as ``ReplyReader`` read it."""
        if isinstance(reply, ResponseError):  # read in full: the connection is still in step
            return reply
        if isinstance(reply, Exception):  # redis-py raises these (LOADING: a ConnectionError)
            raise reply
        if type(reply) is list and reply and isinstance(reply[0], RedisConnectionError):
            raise reply[0]  # as redis-py's parser does
        callback = self._callbacks.get(name)
        return reply if callback is None else callback(reply)

    async def close(self) -> None:
        await self._disconnect(nowait=False)

    async def _disconnect(self, *, nowait: bool = True) -> None:
        # A failure to close (the server is gone, the loop it was opened on is closed) must not
        # hide the error being raised.
        with contextlib.suppress(Exception):
            await self._connection.disconnect(nowait=nowait)


class Wires:
    """``count`` wires to ``client``'s server: one for each round trip in flight."""

    def __init__(self, client: aioredis.Redis, count: int) -> None:
        self._wires = [Wire(client) for _ in range(count)]

    async def round_trip(self, commands: Sequence[Command]) -> list[Any]:
        """``Wire.round_trip`` on the first wire not carrying one already."""
        for wire in self._wires:
            if not wire.busy:
                return await wire.round_trip(commands)
        raise RuntimeError(f"more than {len(self._wires)} round trips at once on the batcher's connections")

    async def close(self) -> None:
        for wire in self._wires:
            await wire.close()
