"""How stored values are shown: JSON text, previews, sizes, times, durations and errors, for the CLI and
the viewer alike."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from durable._records import ErrorInfo
from durable.errors import ConfigurationError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_MAX_SECONDS = 100 * 365 * 86400.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"1h"``, ``"90m"``, ``"1h30m"``, ``"45s"``, ``"2w"``, or plain seconds."""
    cleaned = "".join(text.lower().split())
    try:
        seconds = float(cleaned)
    except ValueError:
        if not _DURATIONS.fullmatch(cleaned):
            raise ConfigurationError(
                f"invalid duration {text!r}: use a number with a unit s, m, h, d or w (e.g. 30m, 1h, 30d)"
            ) from None
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(cleaned))
    if not 0 <= seconds <= _MAX_SECONDS:
        raise ConfigurationError(f"invalid duration {text!r}: must be between 0 and 100 years")
    return timedelta(seconds=seconds)


DISPLAY_LIMIT = 64 * 1024
"""Stored values longer than this (characters of JSON text) are not decoded for display
(``load_timeline(..., max_value=DISPLAY_LIMIT)``): their preview is cut from the stored text and
says their size, so showing a run with a 100 MB value costs no more than a small one."""


def _decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # a store returning non-JSON is shown as is rather than hidden


def _size(text: str) -> str:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size < 1000:
        return f"{size} bytes"
    return f"{size / 1000:.1f} kB" if size < 1_000_000 else f"{size / 1_000_000:.1f} MB"


def _value(text: str | None, max_value: int | None) -> tuple[Any, bool]:
    """The decoded value of stored text, and whether it was left out (``None``) for being longer
    than ``max_value``."""
    if text is not None and max_value is not None and len(text) > max_value:
        return None, True
    return _decode(text), False


def preview(text: str | None, width: int = 60) -> str:
    """A one-line, bounded rendering of stored JSON text for tables. A value longer than
    ``DISPLAY_LIMIT`` is not decoded: its stored text is cut, and its size follows (``"aaa…
    (100.0 MB)"``)."""
    if text is None:
        return ""
    if len(text) > DISPLAY_LIMIT:
        size = f" ({_size(text)})"
        room = max(width - len(size), 8)
        return " ".join(text[: room * 2].split())[: room - 1] + "…" + size
    try:
        compact = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        compact = text
    compact = " ".join(compact.split())
    return compact if len(compact) <= width else compact[: width - 1] + "…"


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return "NaN" if data != data else ("Infinity" if data > 0 else "-Infinity")
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def json_text(data: Any, *, indent: int | None = None) -> str:
    """``data`` (views' ``to_json()``) as strict JSON, which every parser reads: NaN, Infinity
    and -Infinity, legal in stored values, are written as the strings ``"NaN"``, ``"Infinity"``
    and ``"-Infinity"``. What the CLI's ``--json`` prints and the viewer's endpoints answer."""
    try:
        return json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a non-finite float somewhere: the rare case pays for a second pass
        return json.dumps(_finite(data), indent=indent, ensure_ascii=False, allow_nan=False)


def iso_time(ts: float) -> str:
    """Epoch seconds as an ISO 8601 time in UTC: ``2026-12-03T09:16:39Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _error_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "type": error.type,
        "message": error.message,
        "traceback": error.traceback,
        "attempts": [{"type": t, "message": m} for t, m in error.attempts],
    }


def _error_of(text: str | None) -> ErrorInfo | None:
    if not text:
        return None
    try:
        return ErrorInfo.from_json(text)
    except (ValueError, KeyError, TypeError):
        return ErrorInfo("unknown", text)
