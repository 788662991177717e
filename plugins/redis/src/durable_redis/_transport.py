"""How a ``RedisStore`` talks to its server: retries within a time bound, and one batcher.

Every operation of one round trip goes through ``_call`` (transient errors retried with backoff,
never past ``operation_timeout``, then ``StoreUnavailable``). Every store command is a ``Call``
submitted to the store's batcher (``_run``, ``_run_together``): calls in flight at the same moment
share one round trip on a connection of the batcher's own (``_wire``), and each caller reads its
own reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.commands.core import AsyncScript

from durable.batching import WriteBatcher
from durable.errors import StoreUnavailable
from durable.store import redact_url as redact
from durable_redis._calls import Call, copy_error, grouped
from durable_redis._checkpoints import merged, own_replies
from durable_redis._wire import Command, Wires

T = TypeVar("T")

TRANSIENT = (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, OSError)
"""Worth another try: a dropped connection, a restarting or loading server, a failover in progress."""


class Transport:
    """The round trips of ``RedisStore`` (a base class of it)."""

    url: str
    retries: int
    retry_delay: float
    operation_timeout: float
    _scripts: dict[str, AsyncScript]
    _batcher: WriteBatcher[Call, Any] | None
    _wire: Wires | None

    @property
    def client(self) -> aioredis.Redis:
        raise NotImplementedError

    async def _call(self, what: str, op: Callable[[int], Awaitable[T]], *, bounded: bool = True) -> T:
        """Run ``op(attempt)``, retrying transient errors, then raising ``StoreUnavailable``.

        ``bounded``: the attempts end ``operation_timeout`` seconds after the first started (an
        attempt still waiting then is cancelled, which drops its connection). Each round trip
        times out on its own after half of that, so a connection that died silently is replaced
        by the next attempt. Operations of many round trips (listings) pass ``bounded=False``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.operation_timeout if bounded else None
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            try:
                async with asyncio.timeout_at(deadline):
                    return await op(attempt)
            except rx.AuthenticationError as exc:
                raise StoreUnavailable(
                    f"Redis at {redact(self.url)} refused the credentials while {what}: {exc}"
                ) from exc
            except TRANSIENT as exc:
                late = deadline is not None and loop.time() + delay >= deadline
                if attempt == self.retries or late:
                    given = f"{self.operation_timeout:g} s and " if late else ""
                    cause = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__}: no reply"
                    raise StoreUnavailable(
                        f"Redis at {redact(self.url)} is unavailable while {what} "
                        f"(gave up after {given}{attempt + 1} attempts): {cause}"
                    ) from exc
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # -- the batcher: every call in flight at the same moment shares one round trip -------------

    def _run(self, call: Call) -> Awaitable[Any]:
        """``call``'s reply, once the round trip that carried it returned; an error reply is raised.

        Not a coroutine of its own: every store call awaits this, and a frame fewer between
        the caller and the batcher is measurable when thousands of runs checkpoint at once.
        """
        return self._open_batcher().submit(call)

    async def _run_together(self, *calls: Call) -> list[Any]:
        """The replies of ``calls``, sent in one round trip; the first error reply is raised."""
        replies = await self._open_batcher().submit_all(calls)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    def _open_batcher(self) -> WriteBatcher[Call, Any]:
        self.client  # noqa: B018 - raises a clear error when the store is not open
        assert self._batcher is not None
        return self._batcher

    async def _flush(self, calls: list[Call]) -> list[Any]:
        """The batcher's flush: ``calls`` in one round trip (retried through ``_call``), each one's
        reply or error as it would get it alone."""
        groups = grouped(calls)
        sent = [merged([calls[i] for i in group]) for group in groups]
        what = sent[0].what if len(sent) == 1 else f"sending {len(sent)} batched commands"
        try:
            replies = await self._call(what, lambda attempt: self._send(sent, attempt))
        except Exception as exc:  # every caller raises its own StoreUnavailable
            return [exc, *(copy_error(exc) for _ in calls[1:])]
        outcomes: list[Any] = [None] * len(calls)
        for group, reply in zip(groups, replies, strict=True):
            for index, own in zip(group, own_replies(reply, [calls[i] for i in group]), strict=True):
                outcomes[index] = own
        return outcomes

    async def _send(self, calls: list[Call], attempt: int) -> list[Any]:
        """Every call in one round trip; the replies, errors included, in order.

        Calls answered NOSCRIPT (the script cache was flushed or the server restarted) did
        nothing: their scripts are loaded again and they alone are sent once more. A transient
        error in any reply is raised, so that ``_call`` sends the whole batch again. That is safe
        because a call re-sent after it ran does the same again or finds its own earlier write:
        see ``create_run`` and the ``claim_run`` script; lease-fenced writes store the same values
        under the same token; a completed step's first writer wins; a signal carries a nonce.
        """
        if attempt:
            for call in calls:
                call.retried = True
        replies = await self._send_once(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, rx.NoScriptError)]
        if missing:
            lost = [calls[i] for i in missing]
            await self._load_scripts(list(dict.fromkeys(call.script for call in lost if call.script)))
            again = await self._send_once(lost)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, TRANSIENT):
                raise reply
        return replies

    async def _send_once(self, calls: list[Call]) -> list[Any]:
        """One round trip: every call's reply, an error reply as that call's own."""
        return await self._round_trip([call.command(self._scripts) for call in calls])

    async def _load_scripts(self, names: list[str], *also: Command) -> list[Any]:
        """Load the scripts ``names`` into the server's script cache, in one round trip with the
        commands ``also``; their replies (an error reply as the reply: the caller judges it)."""
        loads: list[Command] = [("SCRIPT LOAD", self._scripts[name].script) for name in names]
        replies = await self._round_trip([*loads, *also])
        for reply in replies[: len(names)]:
            if isinstance(reply, Exception):
                raise reply
        for name, sha in zip(names, replies, strict=False):
            self._scripts[name].sha = sha
        return replies[len(names) :]

    async def _round_trip(self, commands: list[Command]) -> list[Any]:
        """``commands`` on a connection of the batcher's own, not through the pool (see ``_wire``)."""
        self.client  # noqa: B018 - raises a clear error when the store is not open
        assert self._wire is not None
        return await self._wire.round_trip(commands)
