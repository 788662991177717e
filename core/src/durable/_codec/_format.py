"""The stored format's vocabulary, shared by every walk: the tag that wraps what JSON lacks, the
depth limit, the scalar types, the codecs plugins registered, and the errors the walks raise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durable.errors import SerializationError
from durable.hookspecs import TypeCodec

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


_plugin_codecs: dict[type, TypeCodec] = {}
_plugin_decoders: dict[str, Callable[[Any], Any]] = {}
"""The types plugins taught the codec (``register_codec`` fills both): by type, by tag."""
