"""The entry points: ``dumps``, ``loads``, ``coerce`` and ``to_data`` (see the package docstring for
the format and its guarantee), what they say when they refuse a value (a lone surrogate, too deep,
a cycle), and ``register_codec`` for plugins."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from durable._codec._format import (
    _SCALAR_TYPES,
    MAX_DEPTH,
    Unreadable,
    WrongType,
    _Mismatch,
    _plugin_codecs,
    _plugin_decoders,
    _TooDeep,
)
from durable._codec._json_text import _decode, _encode
from durable._codec._names import _type_name
from durable._codec._read import _loader, _loaders, from_data
from durable._codec._write import _dump_any, _dumper, _dumpers
from durable.errors import SerializationError
from durable.hookspecs import TypeCodec


def dumps(value: Any, annotation: Any = Any) -> str:
    """``value`` as JSON text that ``loads(text, annotation)`` reads back as the same value.

    Raises ``SerializationError`` for a value that cannot be kept exactly (see the module), or
    that ``loads(..., annotation)`` would refuse; nothing is written then.
    """
    kind = type(value)
    if kind in _SCALAR_TYPES and (annotation is kind or annotation is Any):  # the common result
        try:
            text = _encode(value)
        except ValueError as exc:  # an int longer than int-to-str conversion allows
            raise SerializationError(f"cannot store the value: {exc}") from None
        if not text.isascii():
            _check_utf8(text)
        return text
    return _text(_data(value, annotation))


def to_data(value: Any, annotation: Any = Any) -> Any:
    """The JSON data ``dumps`` writes as text."""
    data = _data(value, annotation)
    _text(data)  # refuses what the text would refuse
    return data


def _data(value: Any, annotation: Any) -> Any:
    try:
        if annotation is Any:
            data = _dump_any(value, 0)
        else:
            try:
                data = _dumper(annotation)(value, 0, True)
            except _Mismatch:
                data = _dump_any(value, 0)
                try:
                    _loader(annotation)(data, True)
                except SerializationError as exc:
                    raise SerializationError(
                        f"the value does not match its annotation {_type_name(annotation)}: {exc}"
                    ) from None
    except _TooDeep:
        raise SerializationError(_depth_problem(value)) from None
    return data


def loads(text: str, annotation: Any = Any) -> Any:
    """The value ``text`` (from ``dumps``) holds, as a ``annotation``; raises ``SerializationError``
    for a stored value that is not one (and cannot be converted without loss)."""
    try:
        try:
            data = _decode(text)
        except (ValueError, TypeError) as exc:  # JSONDecodeError, or not text at all
            raise Unreadable(f"not JSON text ({exc})") from None
        kind = type(data)
        if annotation is Any:
            return from_data(data) if kind is dict or kind is list else data
        if annotation is kind and kind in _SCALAR_TYPES:  # the common result
            return data
        loader = _loader(annotation)
    except RecursionError:
        raise SerializationError(
            f"cannot read a checkpoint nested more deeply than {MAX_DEPTH} levels"
        ) from None
    try:
        return loader(data, True)
    except SerializationError as exc:
        raise WrongType(f"the checkpoint is not a {_type_name(annotation)}: {exc}") from None
    except RecursionError:
        raise SerializationError(
            f"cannot read a checkpoint nested more deeply than {MAX_DEPTH} levels"
        ) from None


def coerce(value: Any, annotation: Any) -> Any:
    """``value`` (as a caller passed it, or as its stored form decodes) as an ``annotation``,
    converted as ``loads`` would; a value that cannot be one is given back as it is."""
    if annotation is Any or (type(value) is annotation and annotation in _SCALAR_TYPES):
        return value
    try:
        data = _dump_any(value, 0)
    except SerializationError:
        return value
    return _loader(annotation)(data, False)


def _text(data: Any) -> str:
    try:
        text = _encode(data)
    except ValueError as exc:  # an int longer than int-to-str conversion allows
        raise SerializationError(f"cannot store the value: {exc}") from None
    except (TypeError, RecursionError) as exc:  # a plugin codec's encode gave something else
        raise SerializationError(
            f"cannot store the value: a TypeCodec returned data JSON lacks ({exc})"
        ) from None
    if not text.isascii():
        _check_utf8(text)
    return text


def _check_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        near = text[max(0, exc.start - 20) : exc.start + 1]
        raise SerializationError(
            f"cannot store a string with a lone surrogate ({text[exc.start]!r}, in {near!r}): UTF-8 has "
            "no encoding for it (text decoded with errors='surrogateescape' holds them; keep such data "
            "as bytes)"
        ) from None


def _depth_problem(value: Any) -> str:
    if _contains_itself(value):
        return "cannot store a value that contains itself (a cycle of lists, dicts or other containers)"
    return f"cannot store a value nested more than {MAX_DEPTH} levels deep"


def _contains_itself(value: Any) -> bool:
    path: set[int] = set()

    def walk(v: Any, depth: int) -> bool:
        if type(v) in _SCALAR_TYPES or depth > MAX_DEPTH + 1:
            return False
        if id(v) in path:
            return True
        if isinstance(v, Mapping):
            children: Any = [x for kv in v.items() for x in kv]
        elif isinstance(v, (list, tuple, set, frozenset)):
            children = v
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            children = [getattr(v, f.name) for f in dataclasses.fields(v)]
        else:
            return False
        path.add(id(v))
        found = any(walk(c, depth + 1) for c in children)
        path.discard(id(v))
        return found

    return walk(value, 0)


def register_codec(codec: TypeCodec) -> None:
    """Teach the codec one more type (the ``durable_type_codecs`` hook calls this)."""
    _plugin_codecs[codec.type] = codec
    _plugin_decoders["x:" + codec.tag] = codec.decode
    _dumpers.clear()
    _loaders.clear()
