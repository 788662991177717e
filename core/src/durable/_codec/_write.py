"""Writing: values to JSON data. Self-describing data (``_dump_any``: types JSON lacks tagged,
records in their class envelope) and data guided by an annotation (``_dumper``: a record the
annotation names is stored as its fields alone)."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import pathlib
import types
import typing
import uuid
import zoneinfo
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from durable._codec import _format
from durable._codec._annotations import _ACCEPTED, _MAPPINGS, _SEQUENCES, _SETS, _Dumper, _unwrap
from durable._codec._classes import _envelope, _Record, _record
from durable._codec._format import (
    _SCALAR_TYPES,
    MAX_DEPTH,
    TAG,
    _Mismatch,
    _NoneType,
    _tagged,
    _TooDeep,
    _Unstorable,
)
from durable._codec._json_text import _canonical
from durable._codec._names import _type_hints, _type_name
from durable._codec._read import _loader
from durable.errors import SerializationError

# The registry ``register_codec`` fills, assigned rather than imported: CPython compiles ``.get`` on an
# imported name without its method-call fast path, which this walk would pay for per value.
_plugin_codecs = _format._plugin_codecs


def _dump_any(value: Any, depth: int) -> Any:
    """Self-describing data for ``value``: it comes back without an annotation."""
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return value
    if depth >= MAX_DEPTH:
        raise _TooDeep("nested too deeply")
    depth += 1
    if kind is list:
        return [_dump_any(v, depth) for v in value]
    if kind is dict:
        for key in value:
            if type(key) is not str:
                break
        else:
            if TAG not in value:
                return {k: _dump_any(v, depth) for k, v in value.items()}
        return _tagged("dict", [[_dump_any(k, depth), _dump_any(v, depth)] for k, v in value.items()])
    return _dump_other(value, kind, depth)


def _dump_other(value: Any, kind: type, depth: int) -> Any:
    codec = _plugin_codecs.get(kind)
    if codec is not None:
        return _tagged("x:" + codec.tag, codec.encode(value))
    tagger = _TAGGERS.get(kind)
    if tagger is not None:
        return tagger(value, depth)
    if isinstance(value, enum.Enum):
        return _envelope(kind, _dump_any(value.value, depth))
    record = _record(kind)
    if record is not None:
        return _envelope(kind, _dump_record(record, value, depth))
    if isinstance(value, (str, int, float)):  # subclasses: stored as their base type
        return value
    for base, tagger in _BASE_TAGGERS:
        if isinstance(value, base):
            return tagger(value, depth)
    if isinstance(value, Mapping):
        return _dump_any(dict(value), depth - 1)
    raise _Unstorable(
        f"cannot serialise a value of type {_type_name(kind)}; "
        "return JSON data, a dataclass, a pydantic model, or register a TypeCodec"
    )


def _dump_items(value: Any, depth: int) -> list[Any]:
    return [_dump_any(v, depth) for v in value]


def _dump_set(tag: str) -> Callable[[Any, int], Any]:
    def dump(value: Any, depth: int) -> Any:
        items = [_dump_any(v, depth) for v in value]
        items.sort(key=_canonical)
        return _tagged(tag, items)

    return dump


def _dump_datetime(value: dt.datetime, _depth: int) -> Any:
    zone = _zone_of(value)
    if zone is None and not value.fold:
        return _tagged("datetime", value.isoformat())
    return _tagged("datetime", [value.isoformat(), value.fold, zone])


def _dump_time(value: dt.time, _depth: int) -> Any:
    if value.tzinfo is not None and not _fixed_offset(value.tzinfo):
        raise SerializationError(
            f"cannot store the time {value!r} exactly: a time's tzinfo must be a datetime.timezone "
            "(a zone's offset depends on the date: store a datetime instead)"
        )
    return _tagged("time", value.isoformat() if not value.fold else [value.isoformat(), 1])


def _zone_of(value: dt.datetime) -> str | None:
    """The ZoneInfo key of an aware datetime (None for naive and fixed offsets); refuses others."""
    tz = value.tzinfo
    if tz is None or _fixed_offset(tz):
        return None
    if isinstance(tz, zoneinfo.ZoneInfo) and tz.key is not None:
        return tz.key
    raise SerializationError(
        f"cannot store the datetime {value!r} exactly: its tzinfo is a {_type_name(type(tz))}, a zone "
        "this codec cannot name; use zoneinfo.ZoneInfo(key) or a datetime.timezone offset"
    )


def _fixed_offset(tz: dt.tzinfo) -> bool:
    """Whether ``tz`` has one offset whatever the date (it gives it for ``None``): a
    ``datetime.timezone``, or ``pytz.utc`` and dateutil's ``tzutc``, read back as a timezone."""
    if type(tz) is dt.timezone:
        return True
    try:
        return tz.utcoffset(None) is not None
    except Exception:
        return False


def _dump_bytes(tag: str) -> Callable[[Any, int], Any]:
    return lambda value, _depth: _tagged(tag, base64.b64encode(value).decode("ascii"))


def _dump_path(value: pathlib.PurePath, _depth: int) -> Any:
    if isinstance(value, pathlib.Path):
        tag = "path"
    elif isinstance(value, pathlib.PureWindowsPath):
        tag = "purewindowspath"
    else:
        tag = "pureposixpath"
    return _tagged(tag, str(value))


_TAGGERS: dict[type, Callable[[Any, int], Any]] = {
    tuple: lambda value, depth: _tagged("tuple", _dump_items(value, depth)),
    set: _dump_set("set"),
    frozenset: _dump_set("frozenset"),
    dt.datetime: _dump_datetime,
    dt.date: lambda value, _depth: _tagged("date", value.isoformat()),
    dt.time: _dump_time,
    dt.timedelta: lambda value, _depth: _tagged("timedelta", [value.days, value.seconds, value.microseconds]),
    uuid.UUID: lambda value, _depth: _tagged("uuid", str(value)),
    Decimal: lambda value, _depth: _tagged("decimal", str(value)),
    bytes: _dump_bytes("bytes"),
    bytearray: _dump_bytes("bytearray"),
    pathlib.PosixPath: _dump_path,
    pathlib.WindowsPath: _dump_path,
    pathlib.PurePosixPath: _dump_path,
    pathlib.PureWindowsPath: _dump_path,
}
"""How each exact type JSON lacks is tagged."""

_BASE_TAGGERS: tuple[tuple[type, Callable[[Any, int], Any]], ...] = (
    (tuple, _TAGGERS[tuple]),  # a tuple subclass that is not a NamedTuple: stored as a tuple
    (frozenset, _TAGGERS[frozenset]),
    (set, _TAGGERS[set]),
    (list, _dump_items),
    (dt.datetime, _dump_datetime),
    (dt.date, _TAGGERS[dt.date]),
    (dt.time, _dump_time),
    (dt.timedelta, _TAGGERS[dt.timedelta]),
    (uuid.UUID, _TAGGERS[uuid.UUID]),
    (Decimal, _TAGGERS[Decimal]),
    (bytes, _TAGGERS[bytes]),
    (bytearray, _TAGGERS[bytearray]),
    (pathlib.PurePath, _dump_path),
)
"""Subclasses of those types, stored as the type they extend."""


# -- records: their fields --------------------------------------------------------------------


def _dump_record(record: _Record, value: Any, depth: int) -> Any:
    """The fields of ``value``, a ``record.cls``, each written as its annotation says."""
    if record.kind == "model":
        return _dump_any(value.model_dump(mode="json"), depth)
    if record.unbuildable is not None:
        raise SerializationError(record.unbuildable)
    dumpers = record.dumpers
    if dumpers is None:
        dumpers = record.dumpers = [_dumper(record.hints.get(name, Any)) for name in record.names]
    if record.kind == "namedtuple":
        return [dump(v, depth, False) for dump, v in zip(dumpers, value, strict=True)]
    try:
        return {
            name: dump(getattr(value, name), depth, False)
            for name, dump in zip(record.names, dumpers, strict=True)
        }
    except AttributeError as exc:  # a field outside __init__ that was never set
        raise SerializationError(f"cannot store a {_type_name(record.cls)}: {exc}") from None


# -- annotation-guided writing ----------------------------------------------------------------

_dumpers: dict[Any, _Dumper] = {}


def _dump_as_any(value: Any, depth: int, strict: bool) -> Any:
    return _dump_any(value, depth)


def _dumper(tp: Any) -> _Dumper:
    try:
        found = _dumpers.get(tp)
    except TypeError:  # an unhashable annotation (Annotated with a dict, say): not cached
        return _compile_dumper(tp)
    if found is None:
        if len(_dumpers) > 4096:
            _dumpers.clear()
        found = _dumpers[tp] = _compile_dumper(tp)
    return found


def _mismatched(value: Any, depth: int, strict: bool) -> Any:
    if strict:
        raise _Mismatch
    return _dump_any(value, depth)


def _compile_dumper(tp: Any) -> _Dumper:
    tp = _unwrap(tp)
    if tp is Any:
        return _dump_as_any
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None:
        return _class_dumper(tp) if isinstance(tp, type) else _dump_as_any
    if origin is typing.Union or origin is types.UnionType:
        return _union_dumper(tp, args)
    if origin is typing.Literal:

        def dump_literal(value: Any, depth: int, strict: bool) -> Any:
            if any(type(value) is type(a) and value == a for a in args):
                return _dump_any(value, depth)
            return _mismatched(value, depth, strict)

        return dump_literal
    if origin is tuple:
        return _tuple_dumper(args)
    if origin in _MAPPINGS:
        return _mapping_dumper(*(args or (Any, Any)))
    if origin in _SEQUENCES or origin in _SETS:
        return _collection_dumper(origin, _dumper(args[0] if args else Any))
    if isinstance(origin, type):  # a generic class: MyBox[int]
        return _class_dumper(origin)
    return _dump_as_any


def _class_dumper(cls: type) -> _Dumper:
    if typing.is_typeddict(cls):
        return _mapping_dumper(str, Any, _type_hints(cls))
    if cls is float:
        exact: tuple[type, ...] = (float, int)
    elif cls is int:
        exact = (int, bool)
    else:
        exact = (cls,)
    record = _record(cls)
    if record is not None:

        def dump_record(value: Any, depth: int, strict: bool) -> Any:
            if type(value) is cls:  # the annotation names the class: its fields, no envelope
                if depth >= MAX_DEPTH:
                    raise _TooDeep("nested too deeply")
                return _dump_record(record, value, depth + 1)
            if isinstance(value, cls):
                return _dump_any(value, depth)
            return _mismatched(value, depth, strict)

        return dump_record
    if issubclass(cls, enum.Enum):

        def dump_enum(value: Any, depth: int, strict: bool) -> Any:
            if type(value) is cls:
                return _dump_any(value.value, depth)
            return _mismatched(value, depth, strict)

        return dump_enum

    def dump_instance(value: Any, depth: int, strict: bool) -> Any:
        if type(value) in exact:
            return value if type(value) in _SCALAR_TYPES else _dump_any(value, depth)
        try:
            matches = isinstance(value, exact)
        except TypeError:  # a class isinstance() refuses (a Protocol without runtime_checkable)
            matches = True
        if matches:
            return _dump_any(value, depth)  # a subclass (an IntEnum for int): it tells its type
        return _mismatched(value, depth, strict)

    return dump_instance


def _union_dumper(tp: Any, args: tuple[Any, ...]) -> _Dumper:
    members = [a for a in args if a is not _NoneType]
    optional = len(members) < len(args)
    if len(members) == 1:
        inner = _dumper(members[0])

        def dump_optional(value: Any, depth: int, strict: bool) -> Any:
            return None if value is None and optional else inner(value, depth, strict)

        return dump_optional

    def dump_union(value: Any, depth: int, strict: bool) -> Any:
        data = _dump_any(value, depth)  # self-describing: the loader need not guess the member
        if strict and not (value is None and optional):
            try:
                _loader(tp)(data, True)
            except SerializationError:
                raise _Mismatch from None
        return data

    return dump_union


def _tuple_dumper(args: tuple[Any, ...]) -> _Dumper:
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        item = _dumper(args[0] if args else Any)
        fixed: list[_Dumper] | None = None
    else:
        item, fixed = _dump_as_any, [_dumper(a) for a in args if a != ()]

    def dump_tuple(value: Any, depth: int, strict: bool) -> Any:
        if type(value) is tuple and (fixed is None or len(fixed) == len(value)):
            if depth >= MAX_DEPTH:
                raise _TooDeep("nested too deeply")
            if fixed is None:
                return _tagged("tuple", [item(v, depth + 1, strict) for v in value])
            return _tagged("tuple", [d(v, depth + 1, strict) for d, v in zip(fixed, value, strict=True)])
        if isinstance(value, tuple) and type(value) is not tuple:
            return _dump_any(value, depth)  # a NamedTuple: it names its class
        return _mismatched(value, depth, strict)

    return dump_tuple


def _mapping_dumper(key_tp: Any, value_tp: Any, hints: dict[str, Any] | None = None) -> _Dumper:
    key, val = _dumper(key_tp), _dumper(value_tp)

    def dump_mapping(value: Any, depth: int, strict: bool) -> Any:
        if type(value) is not dict:
            if not isinstance(value, Mapping) or _record(type(value)) is not None:
                return _mismatched(value, depth, strict)
            value = dict(value)
        if depth >= MAX_DEPTH:
            raise _TooDeep("nested too deeply")
        depth += 1
        for k in value:
            if type(k) is not str:
                break
        else:
            if TAG not in value:
                if hints is not None:
                    return {k: _dumper(hints.get(k, Any))(v, depth, strict) for k, v in value.items()}
                if val is _dump_as_any:
                    return {k: _dump_any(v, depth) for k, v in value.items()}
                return {k: val(v, depth, strict) for k, v in value.items()}
        return _tagged("dict", [[key(k, depth, strict), val(v, depth, strict)] for k, v in value.items()])

    return dump_mapping


def _collection_dumper(origin: Any, item: _Dumper) -> _Dumper:
    """``list[T]``, ``set[T]``, ``frozenset[T]`` and the abstract collections (which keep the
    concrete type they were given: a tuple is a ``Sequence``, a frozenset an ``AbstractSet``)."""
    accepted = _ACCEPTED[origin]

    def dump_collection(value: Any, depth: int, strict: bool) -> Any:
        kind = type(value)
        if kind in accepted:
            if depth >= MAX_DEPTH:
                raise _TooDeep("nested too deeply")
            if item is _dump_as_any:
                items = [_dump_any(v, depth + 1) for v in value]
            else:
                items = [item(v, depth + 1, strict) for v in value]
            if kind is list:
                return items
            if kind is tuple:
                return _tagged("tuple", items)
            items.sort(key=_canonical)
            return _tagged("set" if kind is set else "frozenset", items)
        if isinstance(value, accepted) and not isinstance(value, (str, bytes, bytearray)):
            return _dump_any(value, depth)
        return _mismatched(value, depth, strict)

    return dump_collection
