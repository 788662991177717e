"""Checkpoint serialisation: JSON only, never pickle.

``to_data`` turns a value into JSON-compatible data. Types JSON lacks (tuples, sets,
datetimes, UUIDs, decimals, bytes, dicts with non-string keys) are wrapped as
``{"__durable__": tag, "v": data}``; decoding a tag never imports or runs code.
Classes (pydantic models, dataclasses, enums) are stored as their fields and
rebuilt from the caller's type annotation by ``coerce``.

A value that *is* a pydantic model or a dataclass (not one nested in a list or a dict)
is stored as ``{"__durable__": "class", "c": "module:QualName", "v": fields}``, so that a
task without a return annotation gets the same type back, on its first run and on replay.
Decoding looks the class up only among modules already imported (``sys.modules``, then the
classes this process encoded) and never imports one: a class that is not loaded leaves the
plain fields. A declared annotation wins over the recorded class.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import json
import json.encoder
import json.scanner
import math
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import lru_cache
from pathlib import PurePath
from typing import Any
from weakref import WeakValueDictionary

from durable.errors import SerializationError
from durable.hookspecs import TypeCodec

TAG = "__durable__"
_SCALARS = (str, int, float, bool, type(None))

# Tag -> (encode, decode) for the types the core knows; plugin codecs are added by tag.
_builtin_decoders: dict[str, Callable[[Any], Any]] = {
    "tuple": lambda v: tuple(from_data(x) for x in v),
    "set": lambda v: {from_data(x) for x in v},
    "frozenset": lambda v: frozenset(from_data(x) for x in v),
    "dict": lambda v: {from_data(k): from_data(x) for k, x in v},
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": uuid.UUID,
    "decimal": Decimal,
    "bytes": base64.b64decode,
}
_plugin_codecs: dict[type, TypeCodec] = {}
_plugin_decoders: dict[str, Callable[[Any], Any]] = {}


def register_codec(codec: TypeCodec) -> None:
    """Teach the codec one more type (the ``durable_type_codecs`` hook calls this)."""
    tag = "x:" + codec.tag
    _plugin_codecs[codec.type] = codec
    _plugin_decoders[tag] = codec.decode


def _tagged(tag: str, data: Any) -> dict[str, Any]:
    return {TAG: tag, "v": data}


def to_data(value: Any) -> Any:
    """JSON-compatible data for ``value``; raises ``SerializationError`` for unknown types."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [to_data(v) for v in value]
    if kind is dict:
        if all(type(k) is str for k in value) and TAG not in value:
            return {k: to_data(v) for k, v in value.items()}
        return _tagged("dict", [[to_data(k), to_data(v)] for k, v in value.items()])
    return _to_data_slow(value)


def _to_data_slow(value: Any) -> Any:
    codec = _plugin_codecs.get(type(value))
    if codec is not None:
        return _tagged("x:" + codec.tag, codec.encode(value))
    if isinstance(value, enum.Enum):
        return to_data(value.value)
    if isinstance(value, (str, int, float)):  # subclasses such as IntFlag members handled above
        return value
    if hasattr(value, "model_dump") and hasattr(type(value), "model_validate"):
        return to_data(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        if hasattr(value, "_fields"):  # NamedTuple: its fields, rebuilt from the annotation
            return [to_data(v) for v in value]
        return _tagged("tuple", [to_data(v) for v in value])
    if isinstance(value, (set, frozenset)):
        items = sorted((to_data(v) for v in value), key=_canonical)
        return _tagged("frozenset" if isinstance(value, frozenset) else "set", items)
    if isinstance(value, Mapping):
        return to_data(dict(value))
    if isinstance(value, list):
        return [to_data(v) for v in value]
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
    if isinstance(value, PurePath):
        return str(value)
    raise SerializationError(
        f"cannot serialise a value of type {type(value).__module__}.{type(value).__qualname__}; "
        "return JSON data, a dataclass, a pydantic model, or register a TypeCodec"
    )


def from_data(data: Any) -> Any:
    """Undo ``to_data``'s tags; classes stay dicts until ``coerce`` sees an annotation."""
    kind = type(data)
    if kind is list:
        return [from_data(v) for v in data]
    if kind is dict:
        tag = data.get(TAG)
        if tag is None:
            return {k: from_data(v) for k, v in data.items()}
        if tag == CLASS_TAG:
            return _from_class_envelope(data)
        decoder = _builtin_decoders.get(tag) or _plugin_decoders.get(tag)
        if decoder is None:
            raise SerializationError(f"checkpoint holds a value tagged {tag!r} that no installed codec reads")
        return decoder(data["v"])
    return data


def _one_shot_encoder(*, sort_keys: bool) -> Callable[[Any], str]:
    """``json.dumps`` with fixed options, minus the Python set-up it repeats on every call.

    Calls the C encoder directly when it exists (it does in CPython); the output is the
    same text ``JSONEncoder.encode`` gives. No circular-reference check: every caller
    passes data that ``to_data`` already walked, or plain scalars.
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
# Annotations whose values need no rebuilding after from_data.
_AS_IS = frozenset({Any, object, int, str, bool, type(None), None})


def dumps(value: Any) -> str:
    data = to_data(value)
    if type(data) is dict and type(value) is not dict:  # fields of something else: maybe a class
        data = _with_class(value, data)
    return _encode(data)


def loads(text: str, annotation: Any = Any) -> Any:
    data = _decode(text)
    if type(data) is dict and TAG in data and annotation is not Any and data[TAG] == CLASS_TAG:
        data = data["v"]  # a declared type wins over the recorded class
    value = from_data(data)
    return value if annotation in _AS_IS else coerce(value, annotation)


# -- the class envelope: a top-level model or dataclass names its class -------------------

CLASS_TAG = "class"
_encoded_classes: WeakValueDictionary[str, type] = WeakValueDictionary()
"""Classes this process encoded, by recorded name: finds classes that no module attribute
reaches (defined in a function, generic aliases), while they live."""


def _is_record_class(cls: type) -> bool:
    """A pydantic model or dataclass class: what ``to_data`` stores as fields."""
    return (hasattr(cls, "model_validate") and hasattr(cls, "model_dump")) or dataclasses.is_dataclass(cls)


def _with_class(value: Any, data: Any) -> Any:
    """``data`` (``to_data(value)``) in the class envelope if ``value`` is a model or dataclass."""
    cls = type(value)
    if cls in _plugin_codecs or not _is_record_class(cls):
        return data
    name = f"{cls.__module__}:{cls.__qualname__}"
    _encoded_classes[name] = cls
    return {TAG: CLASS_TAG, "c": name, "v": data}


def _from_class_envelope(data: dict[str, Any]) -> Any:
    value = from_data(data["v"])
    name = data.get("c")
    cls = loaded_class(name) if isinstance(name, str) else None
    return value if cls is None else coerce(value, cls)


def loaded_class(name: str) -> type | None:
    """The pydantic model or dataclass recorded as ``"module:QualName"``, if it is loaded.

    Reads only namespaces that exist (``sys.modules`` and class dictionaries): no import, no
    module ``__getattr__``, so decoding a checkpoint runs no code it names.
    """
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
    return found if isinstance(found, type) and _is_record_class(found) else None


def digest_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
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
        else:
            return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return digest([list(args), kwargs])


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


def digest(value: Any) -> str:
    """A stable fingerprint of call arguments; values that cannot be serialised count by type."""
    try:
        data = to_data(value)
    except SerializationError:
        data = _lenient(value)
    return hashlib.blake2b(_canonical(data).encode(), digest_size=16).hexdigest()


def dumps_and_digest(value: Any) -> tuple[str, str]:
    """``(dumps(value), digest(value))``, walking ``value`` once; raises as ``dumps`` does."""
    data = to_data(value)
    return _encode(data), hashlib.blake2b(_canonical(data).encode(), digest_size=16).hexdigest()


def _lenient(value: Any) -> Any:
    # Arguments such as clients or connections cannot be stored; their type is still part
    # of the call's identity, their address (which changes every run) is not.
    if isinstance(value, (list, tuple)):
        return [_lenient(v) for v in value]
    if isinstance(value, dict):
        return [[_lenient(k), _lenient(v)] for k, v in value.items()]
    try:
        return to_data(value)
    except SerializationError:
        return _tagged("opaque", f"{type(value).__module__}.{type(value).__qualname__}")


# -- annotation-guided rebuilding -------------------------------------------------


def coerce(value: Any, annotation: Any) -> Any:
    """Rebuild ``value`` (from ``from_data``) into the type ``annotation`` describes."""
    try:
        return _coerce(value, annotation)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f"cannot rebuild a checkpoint as {annotation!r}: {exc}") from exc


def _coerce(value: Any, tp: Any) -> Any:
    if tp is Any or tp is object or isinstance(tp, (typing.TypeVar, str)):
        return value
    origin = typing.get_origin(tp)
    if origin is None:
        return _coerce_class(value, tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        last: Exception | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except Exception as exc:
                last = exc
        raise SerializationError(f"value matches no member of {tp!r}") from last
    if origin is typing.Annotated:
        return _coerce(value, args[0])
    if origin is typing.Literal:
        return value
    if origin in (list, typing.Sequence, typing.MutableSequence, _abc("Sequence"), _abc("Iterable")):
        item = args[0] if args else Any
        return [_coerce(v, item) for v in value]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if args:
            return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
        return tuple(value)
    if origin in (set, _abc("Set"), _abc("MutableSet")):
        return {_coerce(v, args[0] if args else Any) for v in value}
    if origin is frozenset:
        return frozenset(_coerce(v, args[0] if args else Any) for v in value)
    if origin in (dict, _abc("Mapping"), _abc("MutableMapping")):
        key_tp, val_tp = args if args else (Any, Any)
        return {_coerce(k, key_tp): _coerce(v, val_tp) for k, v in value.items()}
    if isinstance(origin, type):
        return _coerce_class(value, origin)
    return value


def _abc(name: str) -> Any:
    import collections.abc

    return getattr(collections.abc, name)


def _coerce_class(value: Any, cls: Any) -> Any:
    if not isinstance(cls, type):
        return value
    if cls in (int, str, bool, type(None)):
        return value
    if cls is float:
        return float(value) if type(value) is int else value
    if hasattr(cls, "model_validate") and isinstance(value, dict):
        return cls.model_validate(value)
    if dataclasses.is_dataclass(cls) and isinstance(value, dict):
        hints = _type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        kwargs = {k: _coerce(v, hints.get(k, Any)) for k, v in value.items() if k in fields}
        return cls(**kwargs)
    if issubclass(cls, enum.Enum) and not isinstance(value, cls):
        return cls(value)
    if issubclass(cls, tuple) and hasattr(cls, "_fields") and isinstance(value, (list, tuple)):
        hints = _type_hints(cls)
        return cls(*(_coerce(v, hints.get(f, Any)) for v, f in zip(value, cls._fields, strict=False)))
    if isinstance(value, str) and cls in _FROM_STRING:
        return _FROM_STRING[cls](value)
    if cls in (tuple, set, frozenset, list) and isinstance(value, (list, tuple, set, frozenset)):
        return cls(value)
    return value


_FROM_STRING: dict[type, Callable[[str], Any]] = {
    dt.datetime: dt.datetime.fromisoformat,
    dt.date: dt.date.fromisoformat,
    dt.time: dt.time.fromisoformat,
    uuid.UUID: uuid.UUID,
    Decimal: Decimal,
}


@lru_cache(maxsize=512)
def _type_hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:
        return {}


def return_annotation(fn: Callable[..., Any]) -> Any:
    """The declared return type of ``fn`` (``Any`` when absent or unresolvable)."""
    return _type_hints(fn).get("return", Any)
