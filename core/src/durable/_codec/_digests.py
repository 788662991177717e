"""Digests: fingerprints of call arguments for the replay check (see the package docstring for
what they compare), as this release takes them and as the previous one did."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import json
import json.encoder
import logging
import math
import pathlib
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from durable._codec import _format
from durable._codec._entry import _check_utf8, _data, _depth_problem, _text
from durable._codec._format import (
    _SCALAR_TYPES,
    MAX_DEPTH,
    TAG,
    _tagged,
    _TooDeep,
    _Unstorable,
)
from durable._codec._json_text import _canonical
from durable._codec._names import _type_name
from durable.errors import SerializationError

log = logging.getLogger("durable")

# The registry ``register_codec`` fills, assigned rather than imported: CPython compiles ``.get`` on an
# imported name without its method-call fast path, which this walk would pay for per value.
_plugin_codecs = _format._plugin_codecs


def _digest_walker(sort_pairs: bool) -> tuple[Callable[[Any, int], Any], Callable[[Any, int, Any], Any]]:
    """The data a digest is taken of, as this release takes it (``sort_pairs``) or as durable
    the previous release (0.3.0) did (dict pairs in insertion order): ``(walk, lenient)``.

    ``walk`` raises ``_Unstorable`` for a value of a type the codec does not know; ``lenient``
    then stands in its type for each such value inside lists, tuples and dicts.
    """

    def walk(value: Any, depth: int) -> Any:
        kind = type(value)
        if kind in _SCALAR_TYPES:
            return value
        if depth >= MAX_DEPTH:
            raise _TooDeep("nested too deeply")
        depth += 1
        if kind is list:
            return [walk(v, depth) for v in value]
        if kind is dict:
            for key in value:
                if type(key) is not str:
                    break
            else:
                if TAG not in value:
                    return {k: walk(v, depth) for k, v in value.items()}
            return _tagged("dict", pairs([[walk(k, depth), walk(v, depth)] for k, v in value.items()]))
        return other(value, kind, depth)

    def pairs(items: list[list[Any]]) -> list[list[Any]]:
        if sort_pairs:
            items.sort(key=_canonical)
        return items

    def other(value: Any, kind: type, depth: int) -> Any:
        codec = _plugin_codecs.get(kind)
        if codec is not None:
            return _tagged("x:" + codec.tag, codec.encode(value))
        if isinstance(value, enum.Enum):
            return walk(value.value, depth)
        if isinstance(value, (str, int, float)):
            return value
        if hasattr(value, "model_dump") and hasattr(kind, "model_validate"):
            return walk(value.model_dump(mode="json"), depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: walk(getattr(value, f.name), depth) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            items = [walk(v, depth) for v in value]
            return items if hasattr(value, "_fields") else _tagged("tuple", items)
        if isinstance(value, (set, frozenset)):
            items = sorted((walk(v, depth) for v in value), key=_canonical)
            return _tagged("frozenset" if isinstance(value, frozenset) else "set", items)
        if isinstance(value, Mapping):
            return walk(dict(value), depth - 1)
        if isinstance(value, list):
            return [walk(v, depth) for v in value]
        if isinstance(value, dt.datetime):
            return _tagged("datetime", value.isoformat())
        if isinstance(value, dt.date):
            return _tagged("date", value.isoformat())
        if isinstance(value, dt.time):
            return _tagged("time", value.isoformat())
        if isinstance(value, dt.timedelta):
            return _tagged("timedelta", [value.days, value.seconds, value.microseconds])
        if isinstance(value, uuid.UUID):
            return _tagged("uuid", str(value))
        if isinstance(value, Decimal):
            return _tagged("decimal", str(value))
        if isinstance(value, (bytes, bytearray)):
            return _tagged("bytes", base64.b64encode(value).decode("ascii"))
        if isinstance(value, pathlib.PurePath):
            return str(value)
        raise _Unstorable(f"cannot digest a {_type_name(kind)}")

    def lenient(value: Any, depth: int, where: Any) -> Any:
        # Arguments such as clients or connections cannot be stored; their type is still part
        # of the call's identity, their state (and address, which changes every run) is not.
        if depth >= MAX_DEPTH:
            raise _TooDeep("nested too deeply")
        if isinstance(value, (list, tuple)):
            return [lenient(v, depth + 1, where) for v in value]
        if isinstance(value, dict):
            return pairs(
                [[lenient(k, depth + 1, where), lenient(v, depth + 1, where)] for k, v in value.items()]
            )
        try:
            return walk(value, depth)
        except _Unstorable:
            if where is not None:
                _warn_compared_by_type(type(value), where)
            return _tagged("opaque", f"{type(value).__module__}.{type(value).__qualname__}")

    return walk, lenient


_walk, _lenient = _digest_walker(sort_pairs=True)
_walk_previous, _lenient_previous = _digest_walker(sort_pairs=False)
_warned: set[tuple[str, type]] = set()


def _warn_compared_by_type(kind: type, where: str) -> None:
    if (where, kind) in _warned or len(_warned) > 10_000:
        return
    _warned.add((where, kind))
    log.warning(
        "task %r: an argument of type %s cannot be digested, so replays compare only its type: a "
        "call with another %s is not told apart. Pass JSON data, a dataclass or a pydantic model "
        "to have it compared (or register a TypeCodec); a client or connection is fine as it is. "
        "(Logged once per task and type.)",
        where,
        _type_name(kind),
        kind.__qualname__,
    )


def _digest_data(value: Any, where: Any, walk: Any = _walk, lenient: Any = _lenient) -> Any:
    try:
        return walk(value, 0)
    except _Unstorable:
        try:
            return lenient(value, 0, where)
        except _TooDeep:
            raise SerializationError(_depth_problem(value).replace("store", "digest")) from None
    except _TooDeep:
        raise SerializationError(_depth_problem(value).replace("store", "digest")) from None


def _hash(text: str) -> str:
    try:
        raw = text.encode()
    except UnicodeEncodeError:
        _check_utf8(text)
        raise
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _hash_data(data: Any) -> str:
    try:
        text = _canonical(data)
    except ValueError as exc:
        raise SerializationError(f"cannot digest the value: {exc}") from None
    return _hash(text)


def digest(value: Any, where: str | None = None) -> str:
    """A stable fingerprint of call arguments (see the module docstring for what it compares).

    A value of a type the codec does not know counts by its type; ``where`` (a task name) asks
    for the warning that says so. Raises ``SerializationError`` for what ``dumps`` refuses for
    its size, depth, cycles or lone surrogates.
    """
    return _hash_data(_digest_data(value, where))


def digest_call(args: tuple[Any, ...], kwargs: dict[str, Any], where: str | None = None) -> str:
    """``digest([list(args), kwargs])``, without walking plain scalar arguments (the common case).

    Every task call takes this digest, replayed or not; for scalars the canonical text is
    written here, which costs less than a call of the JSON encoder.
    """
    if not kwargs:
        try:
            if len(args) == 1:  # the most common call, without building a list
                text = "[[" + _SCALAR_TEXT[type(args[0])](args[0]) + "],{}]"
            else:
                text = "[[" + ",".join([_SCALAR_TEXT[type(arg)](arg) for arg in args]) + "],{}]"
        except KeyError:  # not only scalars (an exact type match: no bool for int, no enum)
            pass
        except ValueError as exc:  # an int too long for int-to-str conversion
            raise SerializationError(f"cannot digest the value: {exc}") from None
        else:
            try:
                return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
            except UnicodeEncodeError:
                _check_utf8(text)  # raises, saying where
                raise
    return digest([list(args), kwargs], where)


def previous_digest_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The digest the previous release (0.3.0) took of this call: arguments as passed (not bound to
    parameters), dicts with keys that are not all strings in insertion order."""
    return _hash_data(_digest_data([list(args), kwargs], None, _walk_previous, _lenient_previous))


def recorded_digest(recorded: str, taken: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``recorded`` if it is the digest the previous release took of this very call, else ``taken``:
    a step recorded by that release replays, though this release digests the call otherwise."""
    try:
        return recorded if previous_digest_call(args, kwargs) == recorded else taken
    except SerializationError:
        return taken


def _float_text(value: float) -> str:
    # As the JSON encoder writes floats (it allows NaN and infinities).
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


_SCALAR_TEXT: dict[type, Callable[[Any], str]] = {
    str: json.encoder.encode_basestring,  # as _canonical writes strings (ensure_ascii=False)
    int: int.__repr__,
    float: _float_text,
    bool: lambda value: "true" if value else "false",
    type(None): lambda _: "null",
}
"""The canonical JSON text of each scalar type, exactly as ``_canonical`` writes it."""


def dumps_and_digest(value: Any) -> tuple[str, str]:
    """``(dumps(value), digest(value))``, walking ``value`` once for plain JSON data (the usual
    run inputs); raises as ``dumps`` does."""
    data = _data(value, Any)
    text = _text(data)
    if TAG not in text:  # plain JSON: the digest's data is the stored data
        return text, _hash_data(data)
    return text, digest(value)
