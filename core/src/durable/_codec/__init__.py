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

**The modules**, one idea each: ``_entry`` (the entry points), ``_write`` (values to JSON data),
``_read`` (JSON data to values), ``_classes`` (record classes and the class envelope),
``_annotations`` (what an annotation means), ``_json_text`` (the one-shot encoder and decoder),
``_digests``, ``_names`` (names for messages) and ``_format`` (tags, limits, errors). This package
re-exports what the rest of durable uses.
"""

from durable._codec._classes import loaded_class
from durable._codec._digests import (
    digest,
    digest_call,
    dumps_and_digest,
    previous_digest_call,
    recorded_digest,
)
from durable._codec._entry import coerce, dumps, loads, register_codec, to_data
from durable._codec._format import CLASS_TAG, MAX_DEPTH, TAG, Unreadable, WrongType
from durable._codec._json_text import _canonical, _decode, _encode
from durable._codec._names import _type_hints, _type_name, return_annotation
from durable._codec._read import from_data

__all__ = [
    "CLASS_TAG",
    "MAX_DEPTH",
    "TAG",
    "Unreadable",
    "WrongType",
    "_canonical",
    "_decode",
    "_encode",
    "_type_hints",
    "_type_name",
    "coerce",
    "digest",
    "digest_call",
    "dumps",
    "dumps_and_digest",
    "from_data",
    "loaded_class",
    "loads",
    "previous_digest_call",
    "recorded_digest",
    "register_codec",
    "return_annotation",
    "to_data",
]
