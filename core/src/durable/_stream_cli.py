"""``durable stream RUN KEY``: print a run's stream (``wf.write_stream``), or tail it with ``--follow``.

Registered on the ``durable`` command by ``durable.cli``. Items are shown as stored (the codec's
JSON text), never decoded into classes, so any process can show any run's stream.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from durable import _inspect, _term
from durable._cli_base import store_option
from durable.errors import UnknownRunError
from durable.store import Store

if TYPE_CHECKING:  # `durable --help` and the other commands do not import these
    from durable._outputs_view import OutputsView

__all__ = ["register"]

PAGE = 1000
"""Items per read when printing what a stream holds (without ``--follow``)."""

# durable.cli imports this module as it loads, so this one reaches durable.cli's helpers only
# inside its commands; the options come from _cli_base, which imports neither.
json_option = click.option(
    "--json", "as_json", is_flag=True, help='One JSON object a line: {"offset": N, "value": ...}.'
)


@dataclass
class _Shown:
    """What was printed, for the closing line on stderr."""

    items: int = 0
    next_offset: int = 0


def _line(offset: int, text: str, as_json: bool) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        value = text  # a store returning non-JSON is shown as is rather than hidden
    if as_json:
        return _inspect.json_text({"offset": offset, "value": value})
    if len(text) > _inspect.DISPLAY_LIMIT:
        return f"{offset}  {_term.visible(_inspect.preview(text, 200))}"
    # Compact JSON: a string value shows its quotes and escapes, so every item is one line.
    return f"{offset}  {_term.visible(_inspect.json_text(value))}"


async def _check_run(store: Store, run_id: str, what: str) -> None:
    from durable._streams import require_streams

    require_streams(store, what)
    if await store.get_run(run_id) is None:
        raise UnknownRunError(f"{what}: no run {run_id!r} in {store!r}", run_id=run_id)


async def _print_stored(store: Store, run_id: str, key: str, offset: int, as_json: bool) -> _Shown:
    shown = _Shown(next_offset=offset)
    while True:
        chunk = await store.read_stream(run_id, key, shown.next_offset, PAGE)
        for at, text in chunk.items:
            click.echo(_line(at, text, as_json))
            shown.items += 1
            shown.next_offset = at + 1
        if len(chunk.items) < PAGE:
            return shown


async def _follow(
    store: Store, run_id: str, key: str, offset: int, timeout: float | None, as_json: bool, what: str
) -> _Shown:
    from durable._streams import read_stream_text

    shown = _Shown(next_offset=offset)
    async for at, text in read_stream_text(store, run_id, key, offset, timeout, what):
        click.echo(_line(at, text, as_json))  # click.echo flushes: a pipe sees each item at once
        shown.items += 1
        shown.next_offset = at + 1
    return shown


async def _ending(store: Store, run_id: str, key: str, shown: _Shown, follow: bool) -> str:
    """The closing line: how many items, and why the stream stopped (or that it is still open)."""
    closed = (await store.read_stream(run_id, key, shown.next_offset, 1)).closed
    run = await store.get_run(run_id)
    if closed:
        state = "the stream is closed"
    elif run is None:
        state = "the run was deleted"
    elif run.status.is_final:
        state = f"the run is {run.status}"
    else:
        state = "no new item within --timeout" if follow else "the stream is open (--follow tails it)"
    count = f"{shown.items} item{'s' if shown.items != 1 else ''}"
    return f"{count} of stream {key!r} of run {run_id!r}, next offset {shown.next_offset}: {state}"


@click.command("stream")
@click.argument("run_id")
@click.argument("key")
@store_option
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing new items until the stream is closed or the run ends (Ctrl-C stops).",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Start at this item (resume with the last offset printed + 1).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="S",
    help="With --follow: stop once no new item came for S seconds.",
)
@json_option
def stream_command(
    run_id: str,
    key: str,
    store_url: str | None,
    follow: bool,
    offset: int,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Print the items of stream KEY of run RUN_ID (offset and value), or tail it with --follow.

    Values are the stored JSON. A summary line goes to stderr (not with --json).
    """
    from durable import cli as _cli

    if timeout is not None and not follow:
        raise click.UsageError("--timeout applies to --follow only")
    what = f"durable stream {run_id!r} {key!r}"

    async def show() -> str | None:
        async with _cli.open_workflow(store_url) as (_, store):
            await _check_run(store, run_id, what)
            try:
                if follow:
                    shown = await _follow(store, run_id, key, offset, timeout, as_json, what)
                else:
                    shown = await _print_stored(store, run_id, key, offset, as_json)
            except BrokenPipeError:  # `durable stream ... | head`: the reader has what it wanted
                return None
            return await _ending(store, run_id, key, shown, follow)

    try:
        ending = _cli._run(show)
    except click.Abort:  # Ctrl-C: what was printed stands; no "Aborted!", no traceback
        sys.stdout.flush()
        raise click.exceptions.Exit(130) from None
    if ending is None:
        # Nothing more can reach the closed pipe, not even the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    if not as_json:
        click.echo(_term.visible(ending), err=True)


def print_outputs(out: _term.Writer, outputs: OutputsView | None) -> None:
    """``durable runs show``'s events and streams sections (nothing on a store without them)."""
    from durable import cli as _cli

    if outputs is None:
        return
    out.line()
    out.line(f"events ({len(outputs.events)})", "bold")
    if outputs.events:
        events = _cli._table("KEY", "VALUE")
        for event in outputs.events:
            events.add_row(event.key, event.preview)
        out.table(events)
    out.line()
    out.line(f"streams ({len(outputs.streams)})", "bold")
    if outputs.streams:
        streams = _cli._table("KEY", "ITEMS", "STATE")
        for stream in outputs.streams:
            streams.add_row(stream.key, str(stream.items), "closed" if stream.closed else "open")
        out.table(streams)


def register(group: click.Group) -> None:
    group.add_command(stream_command)
