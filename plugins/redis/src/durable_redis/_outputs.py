"""Events and streams (``Capability.STREAMS``, docs/STREAMS.md) of ``RedisStore``: a base class of it.

Each fenced write is one script (``_output_scripts``) on the run's keys, which checks the lease
token, writes, and publishes an output notice on the store's channel; ``read_stream`` is one
script too, so its items and whether the stream is closed are read together. Readers
(``watch_output``) are woken in this process by the store's own writes, and in every other by the
notices its pub/sub connection hears (``_notify.Notifier``, which calls ``wake_output_waiters``);
a final status (``update_run``, a cancel) and ``delete_run`` publish one too (``_scripts``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from durable._decode import decode_failure
from durable.errors import StoreError
from durable.store import Lease, OutputWatch, StreamItems
from durable_redis import _keys as k
from durable_redis._calls import Call

if TYPE_CHECKING:
    from durable_redis._notify import Notifier


class OutputMethods:
    """``set_event``, ``get_events``, ``append_stream``, ``close_stream``, ``read_stream``,
    ``list_streams`` and ``watch_output`` of ``RedisStore`` (a base class of it, before ``Store``)."""

    keys: k.KeySpace
    label: str
    _notifier: Notifier | None

    if TYPE_CHECKING:

        @property
        def client(self) -> Any: ...

        async def _script(self, call: Call, run_id: str, field: str = "run") -> Any: ...
        async def _lost(self, lease: Lease, current: Any) -> StoreError: ...
        def wake_output_waiters(self, run_id: str) -> None: ...

    def _notice(self, run_id: str) -> list[str]:
        """The channel and message that tell every other store's readers of ``run_id`` to look again."""
        notifier = self._notifier
        return [self.keys.channel, k.output_notice(run_id, "" if notifier is None else notifier.origin)]

    async def _fenced(self, lease: Lease, call: Call) -> Any:
        """``call``'s reply, ``LeaseLost`` (or the loss of the server's data) if the token is stale;
        this process's readers of the run are woken."""
        reply = await self._script(call, lease.run_id, "outputs")
        if isinstance(reply, list):
            raise await self._lost(lease, reply[1])
        self.wake_output_waiters(lease.run_id)
        return reply

    async def set_event(self, lease: Lease, key: str, value: str) -> None:
        keys = [self.keys.run_keys(lease.run_id)[0], self.keys.output_keys(lease.run_id)[0]]
        args = [str(lease.token), key, value, *self._notice(lease.run_id)]
        what = f"setting event {key!r} of run {lease.run_id!r}"
        await self._fenced(lease, Call(what, keys, args, script="set_event"))

    async def get_events(self, run_id: str) -> dict[str, str]:
        key = self.keys.output_keys(run_id)[0]
        what = f"reading the events of run {run_id!r}"
        events: dict[str, str] = await self._script(Call.plain(what, "HGETALL", key), run_id, "events")
        return dict(events)

    async def append_stream(
        self, lease: Lease, key: str, value: str, *, write_id: str | None = None
    ) -> int | None:
        keys = [self.keys.run_keys(lease.run_id)[0], *self.keys.output_keys(lease.run_id)[1:]]
        args = [
            str(lease.token),
            key,
            value,
            "0" if write_id is None else "1",
            write_id or "",
            *self._notice(lease.run_id),
        ]
        what = f"appending to stream {key!r} of run {lease.run_id!r}"
        offset = int(await self._fenced(lease, Call(what, keys, args, script="append_stream")))
        return None if offset < 0 else offset

    async def close_stream(self, lease: Lease, key: str) -> None:
        keys = [self.keys.run_keys(lease.run_id)[0], self.keys.output_keys(lease.run_id)[1]]
        args = [str(lease.token), key, *self._notice(lease.run_id)]
        what = f"closing stream {key!r} of run {lease.run_id!r}"
        await self._fenced(lease, Call(what, keys, args, script="close_stream"))

    async def read_stream(self, run_id: str, key: str, offset: int, limit: int = 1000) -> StreamItems:
        keys = self.keys.output_keys(run_id)[1:]
        what = f"reading stream {key!r} of run {run_id!r}"
        call = Call(what, keys, [key, int(offset), int(limit)], script="read_stream")
        closed, start, *values = await self._script(call, run_id, "streams")
        first = int(start)
        items = list(enumerate(values, first))
        for at, value in items:
            if value is None:  # counted but absent: the hash was edited by other software
                missing = KeyError(f"item {at} is missing from {keys[1]!r}")
                raise decode_failure(self.label, run_id, f"stream {key!r} item {at}", missing)
        return StreamItems(items, bool(closed))

    async def list_streams(self, run_id: str) -> dict[str, tuple[int, bool]]:
        key = self.keys.output_keys(run_id)[1]
        what = f"listing the streams of run {run_id!r}"
        fields: dict[str, str] = await self._script(Call.plain(what, "HGETALL", key), run_id, "streams")
        listed: dict[str, tuple[int, bool]] = {}
        for field, value in fields.items():  # n<key>: its item count, c<key>: closed
            count, closed = listed.get(field[1:], (0, False))
            if field[:1] == "n":
                listed[field[1:]] = (int(value), closed)
            elif field[:1] == "c":
                listed[field[1:]] = (count, True)
        return listed

    @contextlib.asynccontextmanager
    async def watch_output(self, run_id: str) -> AsyncIterator[OutputWatch]:
        """``Store.watch_output``, with the store's subscription listening before it yields (a
        reader's first read follows it: nothing published after that read is missed)."""
        self.client  # noqa: B018 - raises a clear error when the store is not open
        notifier = self._notifier
        assert notifier is not None
        async with super().watch_output(run_id) as watch:  # type: ignore[misc]
            notifier.watch_outputs(run_id)
            try:
                await notifier.listening()
                # Its reader has read nothing yet: a wake-up of the subscription coming up is none.
                watch.event.clear()
                yield watch
            finally:
                notifier.unwatch_outputs(run_id)
