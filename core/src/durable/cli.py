"""The ``durable`` command: inspect and operate runs in any store, list plugins and stores.

The store comes from ``--store URL`` or ``DURABLE_STORE``. Human-readable output by
default, ``--json`` for scripts. Failures print one ``error: ...`` line on stderr and
exit with status 1 (2 for bad usage); set ``DURABLE_DEBUG=1`` to see a traceback.

What the store holds is shown safely: characters a terminal would act on (ESC and other
controls) appear as escapes (``\x1b``) in everything but ``--json``, columns have bounded
widths, store URLs never show their passwords, and values larger than 64 kB are shown cut,
with their size. ``--json`` prints strict JSON: NaN and infinities in stored values are
written as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.

This module holds the top-level group; the commands live in modules named after what they do:
``_cli_plugins`` (plugins, stores), ``_cli_runs`` (runs ..., signal; ``_cli_timeline`` prints
``runs show``), ``_cli_app`` (worker, replay), ``_cli_ui`` (ui), ``_queue_cli`` (queues,
schedules) and ``_stream_cli`` (stream). What they share is in ``_cli_base`` (failures, the event
loop, opening the store, options) and ``_cli_output`` (tables, times, statuses, progress).
"""

from __future__ import annotations

from collections.abc import Sequence

try:
    import click
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise SystemExit(
        f"the durable command needs its extra dependencies ({exc.name} is missing): "
        "pip install 'durable-core[cli]' (python-durable includes it)"
    ) from None

from durable import _cli_app, _cli_plugins, _cli_runs, _cli_ui, _queue_cli, _stream_cli

# Re-exported: _queue_cli and _stream_cli reach these as `durable.cli._fail` and so on.
from durable._cli_app import _load_workflow as _load_workflow
from durable._cli_base import DEBUG_ENV as DEBUG_ENV
from durable._cli_base import FINISHED_NAMES as FINISHED_NAMES
from durable._cli_base import OPEN_TIMEOUT_ENV as OPEN_TIMEOUT_ENV
from durable._cli_base import STATUSES as STATUSES
from durable._cli_base import STORE_ENV as STORE_ENV
from durable._cli_base import CLIError as CLIError
from durable._cli_base import _fail as _fail
from durable._cli_base import _run as _run
from durable._cli_base import _store_url as _store_url
from durable._cli_base import json_option as json_option
from durable._cli_base import open_workflow as open_workflow
from durable._cli_base import store_option as store_option
from durable._cli_output import BAR_AFTER as BAR_AFTER
from durable._cli_output import _emit_json as _emit_json
from durable._cli_output import _facts as _facts
from durable._cli_output import _out as _out
from durable._cli_output import _Progress as _Progress
from durable._cli_output import _status as _status
from durable._cli_output import _table as _table
from durable._cli_output import fmt_duration as fmt_duration
from durable._cli_output import fmt_time as fmt_time

__all__ = ["cli", "main"]


@click.group(
    name="durable", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="durable-core", prog_name="durable")
def cli() -> None:
    """Inspect and operate durable workflow runs.

    Every command that reads runs takes --store URL (or $DURABLE_STORE).
    """


_cli_plugins.register(cli)  # plugins, stores
_cli_runs.register(cli)  # runs ..., signal
_cli_app.register(cli)  # replay, worker
_cli_ui.register(cli)  # ui
_queue_cli.register(cli)  # queues, schedules
_stream_cli.register(cli)  # stream


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="durable")
