"""``durable plugins`` and ``durable stores``: what is installed, and whether a store keeps its data
across a restart of its server (``stores --check URL``)."""

from __future__ import annotations

import logging
from typing import Any

import click

from durable import _term
from durable._cli_base import _fail, _run, _store_url, _unopened_store, json_option
from durable._cli_output import _emit_json, _facts, _out, _table
from durable._plugins import get_plugin_manager
from durable.errors import DurableError
from durable.store import redact_url

__all__ = ["register"]


@click.command("plugins")
@json_option
def plugins_command(as_json: bool) -> None:
    """List installed durable plugins with their versions and hooks."""
    try:
        loaded = get_plugin_manager().plugins()
    except DurableError as exc:
        _fail(str(exc))
    if as_json:
        _emit_json([{"name": p.name, "version": p.version, "hooks": list(p.hooks)} for p in loaded])
        return
    table = _table("NAME", "VERSION", "HOOKS")
    for p in loaded:
        table.add_row(p.name, p.version or "-", ", ".join(p.hooks))
    _out().table(table)


@click.command("stores")
@json_option
@click.option(
    "--check",
    "check_url",
    metavar="URL",
    help="Open the store at URL and say whether a restart of its server keeps its data (exit 1 if not).",
)
def stores_command(as_json: bool, check_url: str | None) -> None:
    """List the store backends installed plugins provide, or check one store (--check URL)."""
    if check_url is not None:
        _check_store(check_url, as_json)
        return
    try:
        backends = get_plugin_manager().backends()
    except DurableError as exc:
        _fail(str(exc))
    seen: dict[str, dict[str, Any]] = {}
    for backend, plugin in backends.values():
        seen.setdefault(
            backend.name,
            {
                "name": backend.name,
                "plugin": plugin,
                "schemes": list(backend.schemes),
                "capabilities": sorted(backend.capabilities),
                "description": backend.description,
                "install_hint": backend.install_hint,
            },
        )
    rows = sorted(seen.values(), key=lambda r: r["name"])
    if as_json:
        _emit_json(rows)
        return
    out = _out()
    for i, row in enumerate(rows):
        if i:
            out.line()
        out.line(_term.cell_text(f"{row['name']}  (plugin {row['plugin']})"), "bold")
        details = _facts()
        details.add_row("schemes", ", ".join(f"{s}://" for s in row["schemes"]))
        details.add_row("capabilities", ", ".join(row["capabilities"]) or "-")
        details.add_row("description", row["description"])
        details.add_row("install", row["install_hint"] or "-")
        out.table(details)


def _check_store(url: str, as_json: bool) -> None:
    """``stores --check URL``: open the store and print what a restart of its server keeps, as the
    store reports it (``durability()``, if it has one); exit status 1 when data is at risk."""
    store = _unopened_store(_store_url(url))

    async def check() -> tuple[bool | None, str]:
        logging.disable(logging.WARNING)  # the store's own warning is the line printed below
        try:
            await store.open()
        finally:
            logging.disable(logging.NOTSET)
        try:
            report = getattr(store, "durability", None)
            return report() if callable(report) else (None, "not reported by this store")
        finally:
            await store.close()

    keeps, line = _run(check)
    shown = redact_url(_store_url(url))
    if as_json:
        _emit_json({"store": shown, "opened": True, "restart_keeps_data": keeps, "durability": line})
    else:
        click.echo(_term.visible(f"{shown}: opened"))
        click.echo(_term.visible(f"durability: {line}"))
    if keeps is False:
        raise click.exceptions.Exit(1)


def register(group: click.Group) -> None:
    group.add_command(plugins_command)
    group.add_command(stores_command)
