"""Checkpoint serialisation (JSON only, never pickle) and argument digests.

**The format.** ``dumps(value, annotation)`` writes JSON text. Types JSON lacks are wrapped as
``{"__durable__": tag, "v": data}``: ``tuple``, ``set``, ``frozenset``, ``dict`` (a dict whose
keys are not all strings, as ``[key, value]`` pairs), ``datetime``, ``date``, ``time``,
``timedelta``, ``uuid``, ``decimal``, ``bytes``, ``bytearray``, ``path``, ``pureposixpath``,
``purewindowspath`` and ``x:<tag>`` for a plugin's ``TypeCodec``. A dataclass, pydantic model,
NamedTuple or enum member is stored as its fields (its value for an enum) where the annotation
names its exact class, and elsewhere as ``{"__durable__": "class", "c": "module:QualName", "v":
fields}``, so that it comes back as its class without an annotation, nested or not.

**The guarantee.** For every value ``v`` that ``dumps`` accepts, ``loads(dumps(v, t), t) == v``
with the same types throughout, when ``v`` is a ``t`` (``t`` may be left out: ``Any``). The
exceptions are few and deliberate: a subclass of ``str``, ``int``, ``float``, ``list`` or
``dict`` that is not an enum comes back as its base type (equal, not the same type), a pydantic
model is whatever ``model_validate(model_dump(mode="json"))`` gives, and a class recorded in a
checkpoint is looked up only among modules already imported: a class that is not loaded gives
its fields as a dict (a set or dict key of them then cannot be rebuilt: ``SerializationError``).
What the codec cannot keep is refused when written, with ``SerializationError`` saying what:
unknown types, ints beyond ``sys.get_int_max_str_digits()`` digits, strings with lone
surrogates (UTF-8 cannot encode them), containers nested more than ``MAX_DEPTH`` levels or
containing themselves, datetimes in a zone other than a keyed ``zoneinfo.ZoneInfo`` (a pytz or
dateutil zone: its rules would be lost), dataclasses ``__init__`` cannot rebuild from their
fields. A fixed offset of another class than ``datetime.timezone`` (``pytz.utc``) comes back as a
``datetime.timezone`` of the same offset.

**Annotations.** ``loads(text, t)`` returns a ``t`` or raises ``SerializationError``: a stored
value of another type is converted where a conversion is lossless and obvious (a list to a
tuple, a ``str`` to a ``Path``, a model's fields to a dict, old checkpoints' plain fields to their
class) and refused otherwise (``-> int`` reading ``"not an int"``). ``dumps(v, t)`` refuses, before
anything is written, a ``v`` that ``loads(..., t)`` would refuse. Inside a dataclass, model or
NamedTuple the fields' own annotations guide rebuilding, without refusing: a field value that
does not match its annotation is kept as it was stored.

**Reading never imports or runs code it names.** Tags are decoded by this module; a recorded
class is looked up in ``sys.modules`` (and the classes this process encoded) by attribute reads,
and only a dataclass, pydantic model, NamedTuple or enum is ever used.

**Digests** (``digest``, ``digest_call``) fingerprint call arguments for the replay check: equal
arguments give one digest (dict keys of any type and set elements are put in a canonical order;
a task's keyword arguments are bound to its parameters first, see ``TaskFunction``), and
arguments that differ in their data give different digests. What a digest compares is the
value's data: a dataclass or model digests as its fields, a NamedTuple as a list, an enum member
as its value, a ``Path`` as its string, a ``bytearray`` as its bytes, a datetime as its ISO text
(fold and zone name left out), so a call that changes only such a type is not told apart.
A value the codec cannot store at all (a client, a connection, any other plain object) is
compared by its type alone: its state is not part of the digest, so ``Obj(1)`` and ``Obj(2)`` of
a plain class digest alike. durable logs a warning the first time a task is called with such
an argument (once per task and type); pass data instead, or register a ``TypeCodec``, to have
it compared.
"""

from __future__ import annotations

import base64
import collections.abc as cabc
import dataclasses
import datetime as dt
import enum
import hashlib
import inspect
import json
import json.encoder
import json.scanner
import logging
import math
import pathlib
import sys
import types
import typing
import uuid
import zoneinfo
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any
from weakref import WeakValueDictionary

from durable.errors import SerializationError
from durable.hookspecs import TypeCodec

log = logging.getLogger("durable")

TAG = "__durable__"
CLASS_TAG = "class"
MAX_DEPTH = 100
"""Containers nested deeper than this are refused when written, so that every checkpoint can be
read back within Python's recursion limit whatever the reader's own stack depth."""

_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_NoneType = type(None)


class _TooDeep(SerializationError):
    """Raised inside the walks; the entry points say whether the value is deep or cyclic."""


class _Unstorable(SerializationError):
    """A value of a type the codec does not know (digests compare such values by type)."""


class WrongType(SerializationError):
    """A checkpoint holds a value that its annotation refuses (``loads`` raises it)."""


class Unreadable(SerializationError):
    """A stored text is not JSON as ``dumps`` writes it (``loads`` raises it): the store's record
    was damaged or written by other software. Callers turn it into ``StoreCorrupted`` naming the
    run and the field (``durable._decode.decode_failure``)."""


class _Mismatch(Exception):
    """A value does not match its annotation where a mismatch is refused (not an error yet)."""


def _tagged(tag: str, data: Any) -> dict[str, Any]:
    return {TAG: tag, "v": data}


# == writing: values to JSON data =================================================================


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
        return _envelope(kind, record.dump(value, depth))
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


# -- the class envelope ------------------------------------------------------------------------

_encoded_classes: WeakValueDictionary[str, type] = WeakValueDictionary()
"""Classes this process encoded, by recorded name: finds classes that no module attribute
reaches (defined in a function, generic aliases), while they live."""


def _envelope(cls: type, data: Any) -> dict[str, Any]:
    name = f"{cls.__module__}:{cls.__qualname__}"
    _encoded_classes[name] = cls
    return {TAG: CLASS_TAG, "c": name, "v": data}


def _is_record_class(cls: Any) -> bool:
    """A class an envelope may name: a pydantic model, dataclass, NamedTuple or enum."""
    return isinstance(cls, type) and (
        _record(cls) is not None or issubclass(cls, enum.Enum) or dataclasses.is_dataclass(cls)
    )


def loaded_class(name: str) -> type | None:
    """The model, dataclass, NamedTuple or enum recorded as ``"module:QualName"``, if it is loaded.

    Reads only namespaces that exist (``sys.modules`` and class dictionaries): no import, no
    module ``__getattr__``, so decoding a checkpoint runs no code it names.
    """
    if not isinstance(name, str):
        return None
    module_name, _, qualname = name.partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split(".") if found is not None else ():
        try:
            found = vars(found).get(part)
        except TypeError:
            found = None
        if found is None:
            break
    if not (isinstance(found, type) and found.__module__ == module_name and found.__qualname__ == qualname):
        found = _encoded_classes.get(name)
    return found if _is_record_class(found) else None


# -- records: dataclasses, pydantic models, NamedTuples -----------------------------------------


class _Record:
    """How one record class is stored (its fields, guided by their annotations) and rebuilt."""

    __slots__ = ("_dumpers", "_loaders", "cls", "hints", "init", "kind", "names", "unbuildable")

    def __init__(self, cls: type, kind: str) -> None:
        self.cls, self.kind = cls, kind
        self.hints = _type_hints(cls)
        self.names: tuple[str, ...] = ()
        self.init: frozenset[str] = frozenset()
        self.unbuildable: str | None = None
        if kind == "dataclass":
            fields = dataclasses.fields(cls)
            self.names = tuple(f.name for f in fields)
            self.init = frozenset(f.name for f in fields if f.init)
            self.unbuildable = _unbuildable(cls, self.init)
        elif kind == "namedtuple":
            self.names = tuple(cls._fields)  # type: ignore[attr-defined]
        self._dumpers: list[_Dumper] | None = None  # compiled on first use: recursive classes
        self._loaders: dict[str, _Loader] | None = None

    def dump(self, value: Any, depth: int) -> Any:
        if self.kind == "model":
            return _dump_any(value.model_dump(mode="json"), depth)
        if self.unbuildable is not None:
            raise SerializationError(self.unbuildable)
        dumpers = self._dumpers
        if dumpers is None:
            dumpers = self._dumpers = [_dumper(self.hints.get(name, Any)) for name in self.names]
        if self.kind == "namedtuple":
            return [dump(v, depth, False) for dump, v in zip(dumpers, value, strict=True)]
        try:
            return {
                name: dump(getattr(value, name), depth, False)
                for name, dump in zip(self.names, dumpers, strict=True)
            }
        except AttributeError as exc:  # a field outside __init__ that was never set
            raise SerializationError(f"cannot store a {_type_name(self.cls)}: {exc}") from None

    def build(self, fields: Any, strict: bool) -> Any:
        """The instance ``fields`` (as ``dump`` wrote them) describe; fields are never refused."""
        try:
            return self._build(fields)
        except SerializationError:
            raise
        except Exception as exc:
            if not strict:
                return from_data(fields)
            raise SerializationError(
                f"cannot rebuild a {_type_name(self.cls)} from {_shown(fields)}: {exc}"
            ) from exc

    def _build(self, fields: Any) -> Any:
        cls = self.cls
        if self.kind == "model":
            return cls.model_validate(from_data(fields))  # type: ignore[attr-defined]
        loaders = self._loaders
        if loaders is None:
            loaders = self._loaders = {name: _loader(self.hints.get(name, Any)) for name in self.names}
        if self.kind == "namedtuple":
            if type(fields) is dict and fields.get(TAG) == "tuple":
                fields = fields["v"]
            if type(fields) is not list:
                raise TypeError(f"expected a list of its fields, found {_shown(fields)}")
            return cls(*(loaders[name](v, False) for name, v in zip(self.names, fields, strict=False)))
        if type(fields) is not dict or TAG in fields:
            raise TypeError(f"expected a dict of its fields, found {_shown(fields)}")
        init = {k: loaders[k](v, False) for k, v in fields.items() if k in self.init}
        obj = cls(**init)
        for k, v in fields.items():  # fields outside __init__ get the value they had
            if k in loaders and k not in self.init:
                object.__setattr__(obj, k, loaders[k](v, False))
        return obj


def _unbuildable(cls: type, init_fields: frozenset[str]) -> str | None:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    missing = [
        p.name
        for p in parameters
        if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name not in init_fields
    ]
    if not missing:
        return None
    return (
        f"cannot store a {_type_name(cls)}: its __init__ requires {', '.join(missing)}, which are not "
        "fields (InitVar), so it cannot be rebuilt from its fields; give them defaults or register a "
        "TypeCodec"
    )


@lru_cache(maxsize=1024)
def _record(cls: type) -> _Record | None:
    """How ``cls`` is stored if it is a record class (a model, dataclass or NamedTuple)."""
    if hasattr(cls, "model_validate") and hasattr(cls, "model_dump"):
        return _Record(cls, "model")
    if dataclasses.is_dataclass(cls):
        return _Record(cls, "dataclass")
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return _Record(cls, "namedtuple")
    return None


# -- annotation-guided writing ----------------------------------------------------------------

_Dumper = Callable[[Any, int, bool], Any]
"""``dumper(value, depth, strict)``: data for ``value`` under one annotation. Where the value
does not match it, raises ``_Mismatch`` if ``strict``, else writes self-describing data."""
_Loader = Callable[[Any, bool], Any]
"""``loader(data, strict)``: the annotated value for ``data``. Where the data cannot be one,
raises ``SerializationError`` if ``strict``, else gives the data decoded as it is."""

_dumpers: dict[Any, _Dumper] = {}
_loaders: dict[Any, _Loader] = {}


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
                return record.dump(value, depth + 1)
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


_SEQUENCES = frozenset({list, cabc.Sequence, cabc.MutableSequence, cabc.Iterable, cabc.Collection})
_SETS = frozenset({set, frozenset, cabc.Set, cabc.MutableSet})
_MAPPINGS = frozenset({dict, cabc.Mapping, cabc.MutableMapping})
_ACCEPTED: dict[Any, tuple[type, ...]] = {
    list: (list,),
    cabc.MutableSequence: (list,),
    cabc.Sequence: (list, tuple),
    cabc.Iterable: (list, tuple, set, frozenset),
    cabc.Collection: (list, tuple, set, frozenset),
    set: (set,),
    cabc.MutableSet: (set,),
    frozenset: (frozenset,),
    cabc.Set: (set, frozenset),
}
"""The concrete collection types each collection annotation stores as they are."""


_BARE: dict[Any, Any] = {
    list: list[Any],
    tuple: tuple[Any, ...],
    set: set[Any],
    frozenset: frozenset[Any],
    dict: dict[Any, Any],
    **{abc: abc[Any] for abc in (cabc.Sequence, cabc.MutableSequence, cabc.Iterable, cabc.Collection)},
    **{abc: abc[Any] for abc in (cabc.Set, cabc.MutableSet)},
    **{abc: abc[Any, Any] for abc in (cabc.Mapping, cabc.MutableMapping)},
}
"""Bare collection annotations, as the generic ones they mean."""


def _unwrap(tp: Any) -> Any:
    """The annotation that matters: ``Annotated``, ``NewType``, ``Required``... removed; type
    variables and unresolved forward references are ``Any``, ``list`` is ``list[Any]``."""
    while True:
        if tp is None:
            return _NoneType
        bare = _BARE.get(tp) if isinstance(tp, type) else None
        if bare is not None:
            return bare
        if tp is object or isinstance(tp, (typing.TypeVar, str, typing.ForwardRef)):
            return Any
        origin = typing.get_origin(tp)
        if origin is typing.Annotated or origin in (typing.Required, typing.NotRequired, typing.ClassVar):
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, typing.NewType):
            tp = tp.__supertype__
        else:
            return tp


# == the entry points ==========================================================================


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


# == reading: JSON data to values ==============================================================


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
        return record.build(fields, True)
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
_plugin_codecs: dict[type, TypeCodec] = {}
_plugin_decoders: dict[str, Callable[[Any], Any]] = {}


def register_codec(codec: TypeCodec) -> None:
    """Teach the codec one more type (the ``durable_type_codecs`` hook calls this)."""
    _plugin_codecs[codec.type] = codec
    _plugin_decoders["x:" + codec.tag] = codec.decode
    _dumpers.clear()
    _loaders.clear()


# -- annotation-guided reading ----------------------------------------------------------------


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
                return record.build(data, strict)
            if tag == CLASS_TAG:
                found = loaded_class(data.get("c"))  # type: ignore[arg-type]
                fields = data.get("v")
                if found is not None and found is not cls and issubclass(found, cls):
                    sub = _record(found)  # type: ignore[arg-type]
                    if sub is not None:
                        return sub.build(fields, strict)
                return record.build(fields, strict)  # another class recorded: the annotation wins
            if tag == "tuple" and record.kind == "namedtuple":
                return record.build(data, strict)
        elif kind is list and record.kind == "namedtuple":
            return record.build(data, strict)
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


# == JSON text =================================================================================


def _one_shot_encoder(*, sort_keys: bool) -> Callable[[Any], str]:
    """``json.dumps`` with fixed options, minus the Python set-up it repeats on every call.

    Calls the C encoder directly when it exists (it does in CPython); the output is the
    same text ``JSONEncoder.encode`` gives. No circular-reference check: every caller
    passes data that the walks here built (bounded by ``MAX_DEPTH``), or plain scalars.
    """
    reference = json.JSONEncoder(sort_keys=sort_keys, ensure_ascii=False, separators=(",", ":"))
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:
        return reference.encode
    chunks = make_encoder(
        None, reference.default, json.encoder.encode_basestring, None, ":", ",", sort_keys, False, True
    )
    return lambda data: "".join(chunks(data, 0))


def _one_shot_decoder() -> Callable[[str], Any]:
    """``json.loads`` minus its whitespace regexes; anything unusual takes the full path."""
    full = json.JSONDecoder()
    scan = json.scanner.make_scanner(full)  # type: ignore[arg-type]  # typeshed misnames the parameter type

    def decode(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration:
            return full.decode(text)  # raises JSONDecodeError with its position
        return value if end == len(text) else full.decode(text)

    return decode


_encode = _one_shot_encoder(sort_keys=False)
_canonical = _one_shot_encoder(sort_keys=True)
_decode = _one_shot_decoder()


# == digests ===================================================================================


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


# == names for messages ========================================================================


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp).replace("typing.", "")


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{_type_name(type(value))} {text}"


@lru_cache(maxsize=512)
def _type_hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=False)
    except Exception:
        return {}


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The declared return type of ``fn`` (``Any`` when absent or unresolvable)."""
    return _type_hints(fn).get("return", Any)
