"""``durable ui``: serve the web page of runs (``durable._ui``) until Ctrl+C or SIGTERM."""

from __future__ import annotations

import logging
import signal as _signals
import sys
from collections.abc import Sequence

import click

from durable import _inspect, _term
from durable._cli_base import _fail, _run, _store_url, open_workflow, store_option
from durable.errors import DurableError

__all__ = ["register"]


@click.command("ui")
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Answer requests for this host name too (repeatable); localhost and IP addresses always are.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any).")
@click.option(
    "--poll", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Refresh seconds."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Let the page cancel, resume and signal runs (each action logged on stderr).",
)
def ui_command(
    store_url: str | None,
    host: str,
    allowed_hosts: Sequence[str],
    port: int,
    poll: float,
    open_browser: bool,
    allow_actions: bool,
) -> None:
    """Serve a web page of runs and their step timelines (read-only without --allow-actions).

    With --allow-actions the page can cancel, resume and signal runs; a request acts only with
    this process's token and an Origin of the page itself, so another site cannot act.
    Requests naming another host than localhost, an IP address, --host or an --allowed-host
    are refused (also on --host 0.0.0.0), so no other web site can read runs through DNS
    rebinding: to reach the page by a name, pass it with --allowed-host. Behind an HTTPS proxy,
    a page of an --allowed-host name (https://NAME) may act whatever Host the proxy sends.
    """
    from durable._ui import UIServer

    target = _store_url(store_url)

    async def check() -> None:
        async with open_workflow(target):
            pass

    _run(check)  # fail here, with one line, rather than on the first page load
    try:
        server = UIServer(
            target,
            host=host,
            port=port,
            poll_interval=poll,
            allowed_hosts=allowed_hosts,
            allow_actions=allow_actions,
        )
        server.start()
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    except DurableError as exc:
        _fail(str(exc))
    shown = _term.visible(_inspect.redact_url(target))
    if allow_actions:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s durable ui: %(message)s"))
        logging.getLogger("durable.ui").addHandler(handler)
        logging.getLogger("durable.ui").setLevel(logging.INFO)
    mode = "actions allowed" if allow_actions else "read-only"
    click.echo(f"durable ui for {shown} at {server.url} ({mode}; Ctrl+C stops it)")
    names = sorted(server.allowed_hosts - {"localhost"})
    click.echo(
        "answers requests for localhost and IP addresses"
        + "".join(f", {n}" for n in names)
        + " (--allowed-host NAME for more)"
    )
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    # A service manager stops us with SIGTERM: close the store as cleanly as on Ctrl+C.
    _signals.signal(_signals.SIGTERM, lambda *_: server.request_stop())
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def register(group: click.Group) -> None:
    group.add_command(ui_command)
