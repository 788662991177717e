"""Reading: JSON data to values. Self-describing data (``from_data``: tags decoded, a recorded
class rebuilt when it is loaded) and data read as an annotation says (``_loader``: converted where
lossless, refused otherwise)."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import pathlib
import types
import typing
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from durable._codec import _format
from durable._codec._annotations import _ACCEPTED, _MAPPINGS, _SEQUENCES, _SETS, _Loader, _unwrap
from durable._codec._classes import _Record, _record, loaded_class
from durable._codec._format import _SCALAR_TYPES, CLASS_TAG, TAG, _NoneType
from durable._codec._names import _shown, _type_hints, _type_name
from durable.errors import SerializationError

# The registry ``register_codec`` fills, assigned rather than imported: CPython compiles ``.get`` on an
# imported name without its method-call fast path, which this walk would pay for per value.
_plugin_decoders = _format._plugin_decoders


def from_data(data: Any) -> Any:
    """The value self-describing ``data`` holds: tags decoded, recorded classes rebuilt when loaded."""
    kind = type(data)
    if kind is list:
        return [from_data(v) for v in data]
    if kind is dict:
        tag = data.get(TAG)
        if tag is None:
            return {k: from_data(v) for k, v in data.items()}
        return _from_tagged(tag, data)
    return data


def _from_tagged(tag: Any, data: dict[str, Any]) -> Any:
    if tag == CLASS_TAG:
        return _from_envelope(data)
    decoder = _builtin_decoders.get(tag) if type(tag) is str else None
    if decoder is None:
        decoder = _plugin_decoders.get(tag) if type(tag) is str else None
        if decoder is None:
            raise SerializationError(f"checkpoint holds a value tagged {tag!r} that no installed codec reads")
    try:
        return decoder(data["v"])
    except SerializationError:
        raise
    except TypeError as exc:
        if "unhashable" in str(exc):
            raise SerializationError(
                f"cannot rebuild a {tag} from a checkpoint: an element decodes to an unhashable value "
                f"({exc}); a set element or dict key of a dataclass or NamedTuple needs its class "
                "loaded (import its module) or an annotation"
            ) from None
        raise SerializationError(f"cannot read a {tag} from a checkpoint: {exc}") from exc
    except Exception as exc:
        raise SerializationError(f"cannot read a {tag} from a checkpoint: {exc}") from exc


def _from_envelope(data: dict[str, Any]) -> Any:
    cls = loaded_class(data.get("c"))  # type: ignore[arg-type]
    fields = data.get("v")
    if cls is None:
        return from_data(fields)
    record = _record(cls)
    if record is not None:
        return _build_record(record, fields, True)
    value = from_data(fields)
    try:
        return cls(value)  # an enum member, by value
    except (ValueError, TypeError) as exc:
        raise SerializationError(f"cannot rebuild a {_type_name(cls)} from {_shown(value)}: {exc}") from None


def _load_datetime(v: Any) -> dt.datetime:
    if type(v) is str:
        return dt.datetime.fromisoformat(v)
    iso, fold, zone = v
    value = dt.datetime.fromisoformat(iso)
    if zone is not None:
        value = value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return value.replace(fold=fold)


def _load_time(v: Any) -> dt.time:
    if type(v) is str:
        return dt.time.fromisoformat(v)
    return dt.time.fromisoformat(v[0]).replace(fold=v[1])


def _load_pairs(v: Any) -> dict[Any, Any]:
    result = {}
    for key, value in v:
        result[from_data(key)] = from_data(value)
    return result


_builtin_decoders: dict[str, Callable[[Any], Any]] = {
    "tuple": lambda v: tuple(from_data(x) for x in v),
    "set": lambda v: {from_data(x) for x in v},
    "frozenset": lambda v: frozenset(from_data(x) for x in v),
    "dict": _load_pairs,
    "datetime": _load_datetime,
    "date": dt.date.fromisoformat,
    "time": _load_time,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": uuid.UUID,
    "decimal": Decimal,
    "bytes": base64.b64decode,
    "bytearray": lambda v: bytearray(base64.b64decode(v)),
    "path": pathlib.Path,
    "pureposixpath": pathlib.PurePosixPath,
    "purewindowspath": pathlib.PureWindowsPath,
}


# -- records: rebuilt from their fields ---------------------------------------------------------


def _build_record(record: _Record, fields: Any, strict: bool) -> Any:
    """The ``record.cls`` that ``fields`` (as ``_dump_record`` wrote them) describe; fields are never
    refused."""
    try:
        return _build_fields(record, fields)
    except SerializationError:
        raise
    except Exception as exc:
        if not strict:
            return from_data(fields)
        raise SerializationError(
            f"cannot rebuild a {_type_name(record.cls)} from {_shown(fields)}: {exc}"
        ) from exc


def _build_fields(record: _Record, fields: Any) -> Any:
    cls = record.cls
    if record.kind == "model":
        return cls.model_validate(from_data(fields))  # type: ignore[attr-defined]
    loaders = record.loaders
    if loaders is None:
        loaders = record.loaders = {name: _loader(record.hints.get(name, Any)) for name in record.names}
    if record.kind == "namedtuple":
        if type(fields) is dict and fields.get(TAG) == "tuple":
            fields = fields["v"]
        if type(fields) is not list:
            raise TypeError(f"expected a list of its fields, found {_shown(fields)}")
        return cls(*(loaders[name](v, False) for name, v in zip(record.names, fields, strict=False)))
    if type(fields) is not dict or TAG in fields:
        raise TypeError(f"expected a dict of its fields, found {_shown(fields)}")
    init = {k: loaders[k](v, False) for k, v in fields.items() if k in record.init}
    obj = cls(**init)
    for k, v in fields.items():  # fields outside __init__ get the value they had
        if k in loaders and k not in record.init:
            object.__setattr__(obj, k, loaders[k](v, False))
    return obj


# -- annotation-guided reading ----------------------------------------------------------------

_loaders: dict[Any, _Loader] = {}


def _loader(tp: Any) -> _Loader:
    try:
        found = _loaders.get(tp)
    except TypeError:
        return _compile_loader(tp)
    if found is None:
        if len(_loaders) > 4096:
            _loaders.clear()
        found = _loaders[tp] = _compile_loader(tp)
    return found


def _load_as_any(data: Any, strict: bool) -> Any:
    return from_data(data)


def _refused(strict: bool, tp: Any, data: Any) -> Any:
    """What a loader gives for ``data`` that is not a ``tp``: an error, or the data as it is."""
    value = from_data(data)
    if strict:
        raise SerializationError(f"expected {_type_name(tp)}, found {_shown(value)}")
    return value


def _compile_loader(tp: Any) -> _Loader:
    tp = _unwrap(tp)
    if tp is Any:
        return _load_as_any
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None:
        return _class_loader(tp) if isinstance(tp, type) else _load_as_any
    if origin is typing.Union or origin is types.UnionType:
        return _union_loader(tp, args)
    if origin is typing.Literal:

        def load_literal(data: Any, strict: bool) -> Any:
            value = from_data(data)
            if any(type(value) is type(a) and value == a for a in args):
                return value
            return _refused(strict, tp, value)

        return load_literal
    if origin is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return _collection_loader(tp, tuple, _loader(args[0] if args else Any))
        return _fixed_tuple_loader(tp, [_loader(a) for a in args if a != ()])
    if origin in _MAPPINGS:
        return _mapping_loader(tp, *(args or (Any, Any)))
    if origin in _SEQUENCES or origin in _SETS:
        return _collection_loader(tp, origin, _loader(args[0] if args else Any))
    if isinstance(origin, type):
        return _class_loader(origin)
    return _load_as_any


def _is_envelope(data: Any) -> bool:
    return type(data) is dict and data.get(TAG) == CLASS_TAG


def _class_loader(cls: type) -> _Loader:
    if typing.is_typeddict(cls):
        return _mapping_loader(cls, str, Any, _type_hints(cls))
    if cls in _SCALAR_TYPES:
        return _scalar_loader(cls)
    record = _record(cls)
    if record is not None:
        return _record_loader(cls, record)
    convert = _CONVERSIONS.get(cls)
    if convert is None:
        if issubclass(cls, pathlib.PurePath):
            convert = (str, pathlib.PurePath), cls
        elif issubclass(cls, (str, int, float, bytes)) and not issubclass(cls, enum.Enum):
            base = next(b for b in (bool, str, int, float, bytes) if issubclass(cls, b))
            convert = (base,), cls

    def load_instance(data: Any, strict: bool) -> Any:
        value = from_data(data) if type(data) in (dict, list) else data
        try:
            if isinstance(value, cls):
                return value
        except TypeError:  # a class isinstance() refuses (a Protocol without runtime_checkable)
            return value
        if issubclass(cls, enum.Enum):
            try:
                return cls(value)
            except (ValueError, TypeError):
                return _refused(strict, cls, value)
        if convert is not None and isinstance(value, convert[0]) and not isinstance(value, bool):
            try:
                return convert[1](value)
            except (ValueError, TypeError) as exc:
                if strict:
                    raise SerializationError(
                        f"expected {_type_name(cls)}, found {_shown(value)}: {exc}"
                    ) from None
                return value
        return _refused(strict, cls, value)

    return load_instance


_CONVERSIONS: dict[type, tuple[tuple[type, ...], Callable[[Any], Any]]] = {
    # Stored values of another type that an annotation converts without loss (older checkpoints
    # held some of these as plain strings).
    dt.datetime: ((str,), dt.datetime.fromisoformat),
    dt.date: ((str,), dt.date.fromisoformat),
    dt.time: ((str,), dt.time.fromisoformat),
    uuid.UUID: ((str,), uuid.UUID),
    Decimal: ((str, int), Decimal),
    bytes: ((bytearray,), bytes),
    bytearray: ((bytes,), bytearray),
}


def _scalar_loader(cls: type) -> _Loader:
    accepted: tuple[type, ...] = (int, float) if cls is float else (cls,)
    exact = frozenset({int, float} if cls is float else {int, bool} if cls is int else {cls})

    def load_scalar(data: Any, strict: bool) -> Any:
        if type(data) in exact:
            return data
        value = from_data(data) if type(data) in (dict, list) else data
        if isinstance(value, accepted):
            return value  # an IntEnum for int, a str enum for str: what was stored
        return _refused(strict, cls, value)

    return load_scalar


def _record_loader(cls: type, record: _Record) -> _Loader:
    def load_record(data: Any, strict: bool) -> Any:
        kind = type(data)
        if kind is dict:
            tag = data.get(TAG)
            if tag is None:
                return _build_record(record, data, strict)
            if tag == CLASS_TAG:
                found = loaded_class(data.get("c"))  # type: ignore[arg-type]
                fields = data.get("v")
                if found is not None and found is not cls and issubclass(found, cls):
                    sub = _record(found)  # type: ignore[arg-type]
                    if sub is not None:
                        return _build_record(sub, fields, strict)
                return _build_record(record, fields, strict)  # another class recorded: the annotation wins
            if tag == "tuple" and record.kind == "namedtuple":
                return _build_record(record, data, strict)
        elif kind is list and record.kind == "namedtuple":
            return _build_record(record, data, strict)
        return _refused(strict, cls, data)

    return load_record


def _union_loader(tp: Any, args: tuple[Any, ...]) -> _Loader:
    members = [a for a in args if a is not _NoneType]
    optional = len(members) < len(args)
    if len(members) == 1:
        inner = _loader(members[0])

        def load_optional(data: Any, strict: bool) -> Any:
            return None if data is None and optional else inner(data, strict)

        return load_optional
    loaders = [(_loader(m), _shallow_type(m)) for m in members]

    def load_union(data: Any, strict: bool) -> Any:
        if data is None and optional:
            return None
        value = from_data(data)
        for load, shallow in loaders:  # the member the stored value is an instance of
            if shallow is not None and isinstance(value, shallow):
                try:
                    return load(data, True)
                except SerializationError:
                    continue
        for load, _ in loaders:  # else the first member it converts to (older checkpoints)
            try:
                return load(data, True)
            except SerializationError:
                continue
        return _refused(strict, tp, value)

    return load_union


def _shallow_type(tp: Any) -> type | tuple[type, ...] | None:
    tp = _unwrap(tp)
    origin = typing.get_origin(tp) or tp
    if origin in _ACCEPTED:
        return _ACCEPTED[origin]
    if origin in _MAPPINGS:
        return dict
    if tp is float:
        return (int, float)
    return origin if isinstance(origin, type) and not typing.is_typeddict(origin) else None


def _items_of(data: Any) -> tuple[str, Any] | None:
    """``(kind, items)`` of stored collection data: a list or a tagged tuple, set or frozenset."""
    kind = type(data)
    if kind is list:
        return "list", data
    if kind is dict:
        tag = data.get(TAG)
        if tag in ("tuple", "set", "frozenset") and type(data.get("v")) is list:
            return tag, data["v"]
    return None


_BUILD = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}
_KIND_OF = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}


def _collection_loader(tp: Any, origin: Any, item: _Loader) -> _Loader:
    accepted = _ACCEPTED.get(origin, (origin,))
    accepted_kinds = {_KIND_OF[t] for t in accepted}
    target = accepted[0]

    def load_collection(data: Any, strict: bool) -> Any:
        found = _items_of(data)
        if found is None:
            if _is_envelope(data):  # a NamedTuple for a tuple or a Sequence: what was stored
                value = _from_envelope(data)
                if isinstance(value, accepted):
                    return value
                return load_collection(data.get("v"), strict)
            return _refused(strict, tp, data)
        kind, items = found
        build = _BUILD[kind] if kind in accepted_kinds else target
        values = [item(v, strict) for v in items]
        try:
            return build(values)
        except TypeError as exc:
            raise SerializationError(f"cannot rebuild a {_type_name(tp)}: {exc}") from None

    return load_collection


def _fixed_tuple_loader(tp: Any, items: list[_Loader]) -> _Loader:
    def load_tuple(data: Any, strict: bool) -> Any:
        found = _items_of(data)
        if found is None:
            if _is_envelope(data):
                value = _from_envelope(data)
                if isinstance(value, tuple) and len(value) == len(items):
                    return value
                return load_tuple(data.get("v"), strict)
            return _refused(strict, tp, data)
        values = found[1]
        if len(values) != len(items):
            return _refused(strict, tp, data)
        return tuple(load(v, strict) for load, v in zip(items, values, strict=True))

    return load_tuple


def _mapping_loader(tp: Any, key_tp: Any, value_tp: Any, hints: dict[str, Any] | None = None) -> _Loader:
    key, val = _loader(key_tp), _loader(value_tp)

    def value_loader(k: Any) -> _Loader:
        return val if hints is None else _loader(hints.get(k, Any))

    def load_mapping(data: Any, strict: bool) -> Any:
        if type(data) is dict:
            tag = data.get(TAG)
            if tag is None:
                return {key(k, strict): value_loader(k)(v, strict) for k, v in data.items()}
            if tag == "dict" and type(data.get("v")) is list:
                result = {}
                try:
                    for k, v in data["v"]:
                        loaded = key(k, strict)
                        result[loaded] = value_loader(loaded)(v, strict)
                except TypeError as exc:
                    raise SerializationError(f"cannot rebuild a {_type_name(tp)}: {exc}") from None
                return result
            if tag == CLASS_TAG:  # a model or dataclass stored for a mapping: its fields
                return load_mapping(data.get("v"), strict)
        return _refused(strict, tp, data)

    return load_mapping
