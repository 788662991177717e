"""Record classes (dataclasses, pydantic models, NamedTuples) and the class envelope: the
``{"__durable__": "class", "c": "module:QualName", "v": fields}`` that names a value's class, and
finding that class again without importing or running anything."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import sys
from functools import lru_cache
from typing import Any
from weakref import WeakValueDictionary

from durable._codec._annotations import _Dumper, _Loader
from durable._codec._format import CLASS_TAG, TAG
from durable._codec._names import _type_hints, _type_name

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
    """How one record class is stored: its fields, their annotations, and whether its ``__init__``
    rebuilds it from them (``_write._dump_record`` writes one, ``_read._build_record`` rebuilds it)."""

    __slots__ = ("cls", "dumpers", "hints", "init", "kind", "loaders", "names", "unbuildable")

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
        self.dumpers: list[_Dumper] | None = None  # compiled on first use: recursive classes
        self.loaders: dict[str, _Loader] | None = None


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
