"""Events and streams of the memory store's runs (``Capability.STREAMS``): plain dicts per run,
changed without awaiting, so each store method stays atomic on the event loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from durable.store import StreamItems


@dataclass
class _Stream:
    values: list[str] = field(default_factory=list)
    write_ids: dict[str, int] = field(default_factory=dict)
    """Write id -> the offset its append got (idempotent appends)."""
    closed: bool = False


@dataclass
class RunOutputs:
    """One run's events (key -> latest value) and streams (key -> its items)."""

    events: dict[str, str] = field(default_factory=dict)
    streams: dict[str, _Stream] = field(default_factory=dict)

    def append(self, key: str, value: str, write_id: str | None) -> int | None:
        stream = self.streams.setdefault(key, _Stream())
        if write_id is not None and write_id in stream.write_ids:
            return stream.write_ids[write_id]
        if stream.closed:
            return None
        stream.values.append(value)
        offset = len(stream.values) - 1
        if write_id is not None:
            stream.write_ids[write_id] = offset
        return offset

    def close(self, key: str) -> None:
        self.streams.setdefault(key, _Stream()).closed = True

    def read(self, key: str, offset: int, limit: int) -> StreamItems:
        stream = self.streams.get(key)
        if stream is None:
            return StreamItems([], False)
        start = max(offset, 0)
        values = stream.values[start : start + max(limit, 0)]
        return StreamItems(list(enumerate(values, start)), stream.closed)

    def listed(self) -> dict[str, tuple[int, bool]]:
        """Each stream's number of items and whether it is closed (``Store.list_streams``)."""
        return {key: (len(stream.values), stream.closed) for key, stream in self.streams.items()}
