"""How ``durable`` commands print: tables of bounded widths, times, durations, run statuses and
progress on stderr. Stored text goes through ``durable._term``, which shows terminal controls as
escapes."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

import click

from durable import _inspect, _term
from durable._inspect import InFlight, RunSummary, WaitingFor
from durable._term import Cell, Column, Table

BAR_AFTER = 0.5
"""Seconds a command runs before it shows a progress bar on a terminal."""


def _out() -> _term.Writer:
    return _term.Writer(sys.stdout)


def _emit_json(data: Any) -> None:
    click.echo(_inspect.json_text(data, indent=2))


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


_STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "waiting": "blue",
    "pending": "magenta",
    "interrupted": "bright_red",
}


def _status(status: str, detail: str = "") -> Cell:
    return (f"{status} ({detail})" if detail else status, _STATUS_STYLE.get(status, ""))


def _in_flight_text(f: InFlight) -> str:
    if f.known:
        return ", ".join(f"in {key}, attempt {attempt}" for key, attempt in f.steps)
    where = "before the first checkpoint" if f.after is None else f"after checkpoint {f.after}"
    return f"step in flight unknown, {where}"


def _waiting_text(w: WaitingFor) -> str:
    if w.kind == "sleep" and w.until is not None:
        return f"sleep until {fmt_time(w.until)}"
    text = f"signal {w.signal}"
    if w.timeout is not None:
        text += f", timeout {fmt_duration(w.timeout)}"
    return text + (", delivered" if w.delivered else "")


def _status_detail(r: RunSummary) -> str:
    """What a listing says after the status: what a waiting run waits for, where an interrupted
    run stopped."""
    if r.status == "interrupted":
        if r.waiting_for is not None and r.in_flight is None:
            return "was waiting for " + _waiting_text(r.waiting_for)
        return "" if r.in_flight is None else _in_flight_text(r.in_flight)
    if r.waiting_for is not None:
        return _waiting_text(r.waiting_for)
    return ""


# Every column has a bounded width: a 10,000-character value cannot push the others away.
# Identifiers fold onto more lines (never cut: they are typed back into commands); free text is
# cut with an ellipsis; times and counts keep their width.
_COLUMNS = {
    "RUN ID": Column("RUN ID", 100, fold=True),
    "KEY": Column("KEY", 100, fold=True),
    "NAME": Column("NAME", 64, fold=True),
    "DELIVERY ID": Column("DELIVERY ID", 64, fold=True),
    "HOOKS": Column("HOOKS", 100, fold=True),
    "WORKFLOW": Column("WORKFLOW", 40),
    "TASK": Column("TASK", 40),
    "STATUS": Column("STATUS", 80),
    "ERROR": Column("ERROR", 60),
    "RESULT": Column("RESULT", 60),
    "PAYLOAD": Column("PAYLOAD", 60),
}


def _table(*headers: str) -> Table:
    return Table(*(_COLUMNS.get(h) or Column(h, 24, shrink=False) for h in headers))


def _facts() -> Table:
    """Label and value, no header: a value folds onto more lines within the terminal's width."""
    return Table(Column("", 20, shrink=False), Column("", None, fold=True), header=False)


class _Progress:
    """Progress on stderr: a bar on a terminal, a few plain lines in logs, nothing if quiet."""

    def __init__(self, what: str, *, quiet: bool = False) -> None:
        self.what = what
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._last_line = -1.0
        self._started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or total == 0:
            return
        if self.tty:
            if self._bar is None and time.monotonic() - self._started < BAR_AFTER:
                return  # a quick command shows no bar (and does not import rich for one)
            if self._bar is None:
                from rich.console import Console
                from rich.progress import Progress

                self._bar = Progress(console=Console(file=sys.stderr), transient=True)
                self._bar.start()
                self._task = self._bar.add_task(self.what, total=total)
            self._bar.update(self._task, completed=done, total=total)
            return
        now = time.monotonic()
        if done in (0, total) or now - self._last_line >= 1.0:
            self._last_line = now
            click.echo(f"{self.what}: {done}/{total}", err=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
