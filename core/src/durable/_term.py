"""Text for terminals: stored strings shown safely, and plain tables with bounded columns.

Run ids, step keys, signal names, workflow names and error messages come from the store, so
from whoever wrote to it. ``visible`` shows every character a terminal would act on (ESC,
CR, backspace, C1 controls such as CSI, bidirectional overrides, lone surrogates, ...) as a
Python escape (``\\x1b``, ``\\u202e``), so no stored value can change the title, clear the
screen, move the cursor or forge a line. ``Table`` lays cells out in columns of bounded width:
identifiers fold onto more lines and are never cut, free text is cut with an ellipsis, and a
huge value cannot push the other columns away. Only the standard library: ``durable``'s
listings do not wait for a rendering library to import.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

__all__ = ["Column", "Table", "Writer", "cell_text", "clip", "one_line", "visible", "width"]

ELLIPSIS = "…"
MAX_CELL = 4000
"""Characters of one cell shown at most, whatever the column (a folded identifier included)."""

STYLES = {
    "bold": "1",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "bright_red": "91",
}


def _escape(char: str) -> str:
    return repr(char)[1:-1]


def visible(text: str, *, newlines: bool = False) -> str:
    """``text`` with every character that is not printable shown as its Python escape (a space
    stays a space; with ``newlines``, line breaks and tabs stay too, for multi-line blocks such
    as tracebacks)."""
    if text.isprintable():
        return text
    keep = "\n\t" if newlines else ""
    return "".join(c if c.isprintable() or c in keep else _escape(c) for c in text)


def one_line(text: str, limit: int = MAX_CELL) -> str:
    """Free text (a message, a preview) on one line: runs of whitespace, line breaks included,
    become one space; at most ``limit`` characters, a longer text ends in an ellipsis."""
    shown = " ".join(text[:limit].split())
    return shown + ELLIPSIS if len(text) > limit else shown


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal (East Asian wide characters take two, combining
    marks none)."""
    if text.isascii():
        return len(text)
    return sum(_char_width(c) for c in text)


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def clip(text: str, columns: int) -> str:
    """``text`` cut to ``columns`` terminal columns, ending in an ellipsis when cut."""
    if len(text) <= columns and width(text) <= columns:
        return text
    room, used = columns - 1, 0
    for i, char in enumerate(text):
        used += _char_width(char)
        if used > room:
            return text[:i] + ELLIPSIS
    return text


def _fold(text: str, columns: int) -> list[str]:
    """``text`` in pieces of at most ``columns`` terminal columns."""
    if width(text) <= columns:
        return [text]
    pieces, start, used = [], 0, 0
    for i, char in enumerate(text):
        w = _char_width(char)
        if used + w > columns and i > start:
            pieces.append(text[start:i])
            start, used = i, 0
        used += w
    pieces.append(text[start:])
    return pieces


def cell_text(text: str, *, limit: int = MAX_CELL, multiline: bool = False) -> str:
    """A stored string as a cell shows it: escaped (line breaks too, unless ``multiline``), at
    most ``limit`` characters (a longer one ends in an ellipsis). Only the shown part is looked
    at, so a 100 MB string costs no more than a short one."""
    shown = visible(text[:limit], newlines=multiline)
    if multiline:
        shown = shown.replace("\t", "    ")
    return shown + ELLIPSIS if len(text) > limit else shown


@dataclass(frozen=True)
class Column:
    header: str
    max_width: int | None = 60
    """Widest the column gets; ``None``: as wide as the terminal allows."""
    fold: bool = False
    """Fold a long cell onto more lines (identifiers: never cut) instead of cutting it."""
    shrink: bool = True
    """May be narrowed below its content when the table is wider than the terminal."""


Cell = str | tuple[str, str]
"""A cell's text, or its text and a style name from ``STYLES``."""


class Table:
    """Columns separated by two spaces, no borders; a header line unless ``header=False``."""

    def __init__(self, *columns: Column, header: bool = True) -> None:
        self.columns = columns
        self.header = header
        self.rows: list[list[tuple[list[str], str]]] = []

    def add_row(self, *cells: Cell, multiline: bool = False) -> None:
        """One row; its cells are escaped here (``multiline``: line breaks in them are kept)."""
        row = []
        for cell in cells:
            text, style = (cell, "") if isinstance(cell, str) else cell
            shown = cell_text(text, multiline=multiline)
            row.append((shown.split("\n") if multiline else [shown], style))
        self.rows.append(row)

    def _widths(self, available: int | None) -> list[int]:
        widths = []
        for i, column in enumerate(self.columns):
            natural = max(
                [width(column.header) if self.header else 0]
                + [width(line) for row in self.rows for line in row[i][0]]
            )
            widths.append(natural if column.max_width is None else min(natural, column.max_width))
        if available is not None:
            # Too wide: narrow the widest shrinkable columns a column at a time, so that they
            # end up alike rather than one of them squeezed to nothing.
            excess = sum(widths) + 2 * (len(widths) - 1) - available
            floors = [min(w, max(8, width(c.header))) for w, c in zip(widths, self.columns, strict=True)]
            while excess > 0:
                narrowable = [i for i, c in enumerate(self.columns) if c.shrink and widths[i] > floors[i]]
                if not narrowable:
                    break
                widest = max(widths[i] for i in narrowable)
                for i in narrowable:
                    if widths[i] == widest and excess > 0:
                        widths[i] -= 1
                        excess -= 1
        return widths

    def lines(self, available: int | None = None, *, color: bool = False) -> list[str]:
        """The table's lines, at most ``available`` columns wide where it can be narrowed."""
        widths = self._widths(available)
        out = []
        if self.header:
            header = [([column.header], "bold") for column in self.columns]
            out += self._layout(header, widths, color)
        for row in self.rows:
            out += self._layout(row, widths, color)
        return out

    def _layout(self, row: Sequence[tuple[list[str], str]], widths: list[int], color: bool) -> list[str]:
        cells: list[tuple[list[str], str]] = []
        for (texts, style), column, room in zip(row, self.columns, widths, strict=True):
            if column.fold:
                cells.append(([piece for text in texts for piece in _fold(text, room)], style))
            else:
                cells.append(([clip(text, room) for text in texts], style))
        height = max(len(texts) for texts, _ in cells)
        lines = []
        for n in range(height):
            parts = []
            for (texts, style), room in zip(cells, widths, strict=True):
                text = texts[n] if n < len(texts) else ""
                pad = " " * max(0, room - width(text))
                if color and style and text:
                    text = f"\x1b[{STYLES[style]}m{text}\x1b[0m"
                parts.append(text + pad)
            lines.append("  ".join(parts).rstrip(" "))
        return lines


class Writer:
    """Where the command's text goes: the stream, its width and whether it takes colour (a
    terminal, unless ``NO_COLOR`` is set or ``TERM=dumb``). Piped output is laid out wide (200
    columns, or ``$COLUMNS``) for grep and logs, without colour."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        tty = stream.isatty()
        self.color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            self.width = int(columns)
        elif tty:
            import shutil

            self.width = shutil.get_terminal_size().columns
        else:
            self.width = 200

    def line(self, text: str = "", style: str = "") -> None:
        """One line of already escaped text."""
        if self.color and style and text:
            text = f"\x1b[{STYLES[style]}m{text}\x1b[0m"
        self.stream.write(text + "\n")

    def block(self, text: str, indent: str = "") -> None:
        """Stored multi-line text (a traceback): escaped, its lines kept, each indented."""
        for line in cell_text(text, limit=len(text), multiline=True).split("\n"):
            self.stream.write((indent + line).rstrip(" ") + "\n")

    def table(self, table: Table) -> None:
        for line in table.lines(self.width, color=self.color):
            self.stream.write(line + "\n")
