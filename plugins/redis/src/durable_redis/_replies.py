"""Reading a wire's replies straight off its connection, in C, without redis-py's per-reply layers.

``Connection.read_response`` wraps each reply in several Python calls (timeouts, health and
protocol checks, push handling, error translation): about 1 µs of client CPU per reply, which a
checkpoint pays once. ``ReplyReader`` feeds the connection's socket stream to a hiredis reader of
its own and takes the replies from it, treating them as redis-py does. It relies on two private
attributes of redis-py's asyncio connection (its stream and its parser), so ``ReplyReader.of``
returns ``None`` for a connection laid out otherwise, and the wire falls back to
``read_response``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

_MORE: Any = object()
"""What the hiredis reader returns while a reply is incomplete."""
_PUSH: type | None = getattr(hiredis, "PushNotification", None)
"""A RESP3 push message (hiredis 3.2 and later): not the reply to any command."""
_READ_SIZE = 1 << 16


class ReplyReader:
    """The replies arriving on one connection of a wire, in order."""

    def __init__(self, stream: asyncio.StreamReader, reader: hiredis.Reader) -> None:
        self.stream = stream
        """The socket stream of the connection this reader belongs to."""
        self._reader = reader

    @classmethod
    def of(cls, connection: AbstractConnection) -> ReplyReader | None:
        """A reader of ``connection``'s replies, or ``None`` if redis-py's connection is not laid out
        as this module expects, its own parser has data buffered (it must read that itself), or
        its class reads replies its own way (a ``connection_class`` overriding ``read_response``)."""
        if type(connection).read_response is not AbstractConnection.read_response:
            return None
        stream = getattr(connection, "_reader", None)
        parser = getattr(connection, "_parser", None)
        parse_error = getattr(parser, "parse_error", None)
        buffered = getattr(getattr(parser, "_reader", None), "has_data", None)
        if not (isinstance(stream, asyncio.StreamReader) and callable(parse_error) and callable(buffered)):
            return None
        if buffered():
            return None
        options: dict[str, Any] = {"notEnoughData": _MORE, "replyError": parse_error}
        encoder = connection.encoder
        if encoder.decode_responses:
            options.update(encoding=encoder.encoding, errors=encoder.encoding_errors)
        return cls(stream, hiredis.Reader(**options))

    async def read(self) -> Any:
        """The next reply. An error reply is returned as an exception object, as redis-py's parser
        returns it; pushes are skipped; a closed connection raises ``ConnectionError``."""
        reply = self._reader.gets()
        while reply is _MORE or (_PUSH is not None and isinstance(reply, _PUSH)):
            if reply is _MORE:
                data = await self.stream.read(_READ_SIZE)
                if not data:
                    raise RedisConnectionError("Connection closed by server.")
                self._reader.feed(data)
            reply = self._reader.gets()
        return reply
