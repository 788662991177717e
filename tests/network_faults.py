"""Network faults for tests of the server stores: a TCP proxy that partitions, forgets and drops
connections, a timer for operations that must fail within their bound, and the stores a test
opened through it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from durable.store import Store

__all__ = ["OpenedStores", "Proxy", "timed"]

S = TypeVar("S", bound=Store)


class OpenedStores:
    """The stores a test opened (``await stores.open(SomeStore(url))``), closed by ``close``."""

    def __init__(self) -> None:
        self._opened: list[Store] = []

    async def open(self, store: S) -> S:
        await store.open()
        self._opened.append(store)
        return store

    async def close(self) -> None:
        for store in self._opened:
            await store.close()


async def timed(operation: Awaitable[Any]) -> tuple[float, BaseException | None]:
    """Seconds the operation took (at most 60), and what it raised."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(operation, 60)
    except BaseException as exc:  # the test judges it
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


class Proxy:
    """A TCP proxy on loopback in front of a server (Redis, Postgres), for network faults.

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
