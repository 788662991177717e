"""What ``durable runs show`` (and its ``--json``) shows of a run's events and streams.

One read for the events (``get_events``) and one for the streams (``Store.list_streams``: each
stream's length and whether it is closed); no item is read one by one. ``list_streams`` is
optional: on a store that cannot list (it answers ``None``) the keys come from the run's journal,
where every stream the workflow body wrote or closed is (those writes are steps), with one
``read_stream`` per stream for what lies past its journaled offsets and whether it is closed; a
stream written only from task bodies (a streaming agent's ``"events"``) is not journaled, and so
not shown on such a store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from durable._display import _value, preview
from durable._records import StepRecord
from durable._streams import CLOSE_TASK, STREAM_TASK
from durable.store import Capability, Store

__all__ = ["OutputsView", "StreamView", "load_outputs"]

PAGE = 1000
"""Items per read when counting what lies past the journal's last offset of a stream."""


@dataclass(frozen=True)
class StreamView:
    key: str
    items: int
    """How many items the stream holds (its next offset)."""
    closed: bool

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "items": self.items, "closed": self.closed}


@dataclass(frozen=True)
class EventView:
    key: str
    value: Any
    preview: str
    omitted: bool = False
    """The value was left out (``None``) for its size; ``preview`` says how large it is."""

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "preview": self.preview}


@dataclass(frozen=True)
class OutputsView:
    """A run's events (latest values, by key) and streams (by key)."""

    events: list[EventView] = field(default_factory=list)
    streams: list[StreamView] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "events": {e.key: e.value for e in self.events},
            "event_previews": {e.key: e.preview for e in self.events},
            "streams": [s.to_json() for s in self.streams],
        }


def _stream_of(step: StepRecord) -> str | None:
    """The stream key of a journaled stream write or close (``durable:stream@log#3``)."""
    if step.task not in (STREAM_TASK, CLOSE_TASK):
        return None
    base = step.key.rsplit("/", 1)[-1].split("#", 1)[0]
    return unquote(base.split("@", 1)[1]) if "@" in base else None


def _journaled_lengths(journal: list[StepRecord]) -> dict[str, int]:
    """Stream key -> one past the highest offset its journaled writes got (0 if only closed)."""
    lengths: dict[str, int] = {}
    for step in journal:
        key = _stream_of(step)
        if key is None:
            continue
        offset = _value(step.result, None)[0] if step.task == STREAM_TASK else None
        known = offset + 1 if isinstance(offset, int) and not isinstance(offset, bool) else 0
        lengths[key] = max(lengths.get(key, 0), known)
    return lengths


async def load_outputs(
    store: Store, run_id: str, journal: list[StepRecord], max_value: int | None = None
) -> OutputsView | None:
    """The run's events and journaled streams; ``None`` on a store without ``streams``. Event
    values longer than ``max_value`` are not decoded (as ``load_timeline``'s values)."""
    if Capability.STREAMS not in store.capabilities:
        return None
    events = []
    for key, text in sorted((await store.get_events(run_id)).items()):
        value, omitted = _value(text, max_value)
        events.append(EventView(key, value, preview(text, 200), omitted))
    listed = await store.list_streams(run_id)
    if listed is not None:  # the store lists every stream, task-body ones too: one read
        streams = [StreamView(key, items, closed) for key, (items, closed) in sorted(listed.items())]
        return OutputsView(events, streams)
    streams = []
    for key, length in sorted(_journaled_lengths(journal).items()):
        # Usually no item lies past the journal's last offset (task-body writes would): one read
        # returns none and says whether the stream is closed.
        while True:
            chunk = await store.read_stream(run_id, key, length, PAGE)
            if chunk.items:
                length = chunk.items[-1][0] + 1
            if len(chunk.items) < PAGE:
                break
        streams.append(StreamView(key, length, chunk.closed))
    return OutputsView(events, streams)
