"""What an annotation means to the codec: the annotation that matters (``Annotated``, ``NewType``...
removed), the collection annotations and the concrete types each keeps, and the signatures of the
dumpers and loaders compiled for one annotation."""

from __future__ import annotations

import collections.abc as cabc
import typing
from collections.abc import Callable
from typing import Any

from durable._codec._format import _NoneType

_Dumper = Callable[[Any, int, bool], Any]
"""``dumper(value, depth, strict)``: data for ``value`` under one annotation. Where the value
does not match it, raises ``_Mismatch`` if ``strict``, else writes self-describing data."""
_Loader = Callable[[Any, bool], Any]
"""``loader(data, strict)``: the annotated value for ``data``. Where the data cannot be one,
raises ``SerializationError`` if ``strict``, else gives the data decoded as it is."""


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
