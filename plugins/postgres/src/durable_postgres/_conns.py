"""Where the store's calls get their pooled connections: one per call, or one a batcher keeps."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

if TYPE_CHECKING:
    Conn: TypeAlias = PoolConnectionProxy[Record]

HELD_CONNECTIONS = 3
"""Batchers (steps first, then run updates, then run creations) that keep a pooled connection
across their flushes, if the pool is large enough (see ``held_count``)."""


class Conns:
    """Where ``_call`` gets its connections: this one acquires one from the pool per call."""

    async def get(self, pool: asyncpg.Pool, timeout: float) -> Conn:
        conn: Conn = await pool.acquire(timeout=timeout)
        return conn

    async def put(self, pool: asyncpg.Pool, conn: Conn, *, healthy: bool) -> None:
        """Done with ``conn``, which ``get`` gave: ``healthy`` unless its statement failed (or was
        cancelled), which leaves it in an unknown state (``_call`` has terminated it then)."""
        await release(pool, conn)


PER_CALL = Conns()


class HeldConnection(Conns):
    """One pooled connection kept across the calls of one user (a batcher, which flushes one at
    a time): a checkpoint then skips the pool's acquire and release (measured: about 30 µs, a
    third of a lone checkpoint's client CPU time).

    A connection whose statement failed is given back to the pool (``_call`` has terminated it
    if it may be broken) and the next call takes a fresh one: the held one is never reused in
    an unknown state. A second concurrent call, or one after ``close``, goes through the pool.
    """

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._conn: Conn | None = None
        self._busy = False
        self._closed = False
        self._replace = False

    async def get(self, pool: asyncpg.Pool, timeout: float) -> Conn:
        if self._busy or self._closed:
            return await super().get(pool, timeout)
        if self._conn is not None and (self._pool is not pool or self._replace or not alive(self._conn)):
            # Killed while idle, suspected dead, or taken from a pool the store no longer uses.
            if self._replace:
                terminate(self._conn)
            await self._give_back()
        self._replace = False
        if self._conn is None:
            self._conn = await super().get(pool, timeout)
            self._pool = pool
        self._busy = True
        return self._conn

    async def put(self, pool: asyncpg.Pool, conn: Conn, *, healthy: bool) -> None:
        if conn is not self._conn:
            return await super().put(pool, conn, healthy=healthy)
        self._busy = False
        if not healthy or self._closed:
            await self._give_back()

    def drop(self) -> None:
        """Replace the connection before its next use: it may have died without a word."""
        self._replace = True

    async def close(self) -> None:
        """Give the connection back to its pool (at once, or when the call using it ends)."""
        self._closed = True
        if not self._busy:
            await self._give_back()

    async def _give_back(self) -> None:
        pool, conn = self._pool, self._conn
        self._pool = self._conn = None
        if pool is not None and conn is not None:
            await release(pool, conn)


def alive(conn: Conn) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # the pool detached it when its connection died
        return False


def terminate(conn: Conn) -> None:
    """Close ``conn`` at once, without a round trip (it may be stuck, or in an unknown state)."""
    with contextlib.suppress(Exception):  # the pool may have detached it already
        conn.terminate()


async def release(pool: asyncpg.Pool, conn: Conn) -> None:
    try:
        await pool.release(conn)
    except Exception:
        terminate(conn)


def held_count(max_size: int) -> int:
    """How many batchers may hold a connection: at most half the pool, so that reads, claims
    and the other writes always find one (a pool of 1 holds none: every call acquires)."""
    return min(HELD_CONNECTIONS, max_size // 2)
