"""Properties of the codec and the argument digests, over nested values of every supported type.

- ``loads(dumps(v, t), t)`` is ``v``, with the same types throughout, with and without ``t``.
- Equal arguments give one digest (whatever the order of dict keys and set elements); arguments
  whose data differ give different digests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import os
import random
import uuid
import zoneinfo
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from durable import Workflow, _codec

PROPERTY = settings(
    max_examples=int(os.environ.get("DURABLE_HYPOTHESIS_EXAMPLES", "300")),  # more for a longer search
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclasses.dataclass(frozen=True)
class FrozenPoint:
    x: int
    y: int


class Pair(NamedTuple):
    n: int
    label: str


class Color(enum.Enum):
    RED = 1
    GREEN = "green"


@dataclasses.dataclass
class Box:
    """A dataclass whose field holds anything: its value must come back as it was."""

    content: Any
    tags: tuple[str, ...] = ()


class Item(BaseModel):
    name: str
    count: int


# -- a representation that tells types apart --------------------------------------------------


def typed(value: Any) -> Any:
    """``value`` as nested tuples that differ whenever a type or a value differs anywhere
    (floats by repr, so NaN equals NaN and -0.0 differs from 0.0)."""
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(value, float):
        return (name, repr(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (name, tuple((f.name, typed(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, BaseModel):
        return (name, typed(value.model_dump()))
    if isinstance(value, (list, tuple)):
        return (name, tuple(typed(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return (name, tuple(sorted((typed(v) for v in value), key=repr)))
    if isinstance(value, dict):
        return (name, tuple(sorted(((typed(k), typed(v)) for k, v in value.items()), key=repr)))
    if isinstance(value, (dt.datetime, dt.time)):
        tz = value.tzinfo
        zone = getattr(tz, "key", None) or (None if tz is None else repr(tz))
        return (name, value.isoformat(), value.fold, zone)
    return (name, repr(value))


# -- values of every supported type -------------------------------------------------------------


def _zones() -> st.SearchStrategy[Any]:
    fixed = st.builds(
        dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23), max_value=dt.timedelta(hours=23))
    )
    zones = [st.none(), st.just(dt.UTC), fixed]
    named = [z for z in ("Europe/Paris", "America/New_York", "Asia/Kolkata") if _has_zone(z)]
    if named:  # the system's time zone database (or the tzdata package)
        zones.append(st.sampled_from(named).map(zoneinfo.ZoneInfo))
    return st.one_of(*zones)


def _has_zone(key: str) -> bool:
    try:
        zoneinfo.ZoneInfo(key)
    except zoneinfo.ZoneInfoNotFoundError:
        return False
    return True


texts = st.text(max_size=8)  # hypothesis leaves out lone surrogates; the codec refuses them
hashable_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    texts,
    st.binary(max_size=8),
    st.dates(),
    st.datetimes(timezones=_zones()).flatmap(lambda d: st.sampled_from([d, d.replace(fold=1)])),
    st.times().flatmap(lambda t: st.sampled_from([t, t.replace(fold=1)])),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=False),
    st.just(Decimal("NaN")),
    st.builds(Path, texts),
    st.builds(PurePosixPath, texts),
    st.sampled_from(Color),
    st.builds(FrozenPoint, st.integers(), st.integers()),
    st.builds(Pair, st.integers(), texts),
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.one_of(
        st.tuples(inner, inner), st.frozensets(inner, max_size=3), st.builds(Pair, st.integers(), texts)
    ),
    max_leaves=6,
)
leaves = st.one_of(hashable_leaves, st.builds(bytearray, st.binary(max_size=8)))
values = st.recursive(
    st.one_of(leaves, hashables),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(texts, inner, max_size=3),
        st.dictionaries(hashables, inner, max_size=3),
        st.sets(hashables, max_size=3),
        st.frozensets(hashables, max_size=3),
        st.builds(Box, inner, st.lists(texts, max_size=2).map(tuple)),
        st.builds(Item, name=texts, count=st.integers(-(2**60), 2**60)),
    ),
    max_leaves=12,
)


def annotated() -> st.SearchStrategy[tuple[Any, Any]]:
    """``(value, annotation)`` pairs where the value is an instance of the annotation."""
    base = st.one_of(
        st.tuples(st.integers(), st.just(int)),
        st.tuples(texts, st.just(str)),
        st.tuples(st.floats(), st.just(float)),
        st.tuples(st.integers(), st.just(float)),
        st.tuples(st.booleans(), st.just(bool)),
        st.tuples(st.none(), st.just(None)),
        st.tuples(st.builds(Path, texts), st.just(Path)),
        st.tuples(st.builds(bytearray, st.binary(max_size=8)), st.just(bytearray)),
        st.tuples(st.binary(max_size=8), st.just(bytes)),
        st.tuples(st.builds(FrozenPoint, st.integers(), st.integers()), st.just(FrozenPoint)),
        st.tuples(st.builds(Pair, st.integers(), texts), st.just(Pair)),
        st.tuples(st.sampled_from(Color), st.just(Color)),
        st.tuples(st.datetimes(timezones=_zones()), st.just(dt.datetime)),
        st.tuples(st.decimals(allow_nan=False), st.just(Decimal)),
        st.tuples(st.uuids(), st.just(uuid.UUID)),
        st.tuples(values, st.just(Any)),
        st.tuples(st.builds(Box, values), st.just(Box)),
    )
    hashable = st.one_of(
        st.tuples(st.builds(FrozenPoint, st.integers(), st.integers()), st.just(FrozenPoint)),
        st.tuples(st.builds(Pair, st.integers(), texts), st.just(Pair)),
        st.tuples(st.integers(), st.just(int)),
        st.tuples(texts, st.just(str)),
        st.tuples(hashables, st.just(Any)),
    )

    def extend(inner: st.SearchStrategy[tuple[Any, Any]]) -> st.SearchStrategy[tuple[Any, Any]]:
        lists = inner.flatmap(
            lambda vt: st.tuples(st.lists(st.just(vt[0]), max_size=3), st.just(list[vt[1]]))
        )
        tuples = inner.flatmap(
            lambda vt: st.tuples(st.lists(st.just(vt[0]), max_size=3).map(tuple), st.just(tuple[vt[1], ...]))
        )
        optional = inner.flatmap(
            lambda vt: st.tuples(st.sampled_from([vt[0], None]), st.just(Optional[vt[1]]))  # noqa: UP045
        )
        sets = hashable.flatmap(
            lambda vt: st.tuples(st.sets(st.just(vt[0]), max_size=1), st.sampled_from([set[vt[1]], set]))
        )
        frozensets = hashable.flatmap(
            lambda vt: st.tuples(st.frozensets(st.just(vt[0]), max_size=1), st.just(frozenset[vt[1]]))
        )
        dicts = st.tuples(hashable, inner).flatmap(
            lambda kv: st.tuples(
                st.dictionaries(st.just(kv[0][0]), st.just(kv[1][0]), max_size=1),
                st.just(dict[kv[0][1], kv[1][1]]),
            )
        )
        pairs = st.tuples(inner, inner).map(lambda ab: ((ab[0][0], ab[1][0]), tuple[ab[0][1], ab[1][1]]))
        return st.one_of(lists, tuples, optional, sets, frozensets, dicts, pairs)

    return st.recursive(base, extend, max_leaves=6)


# -- the round trip ------------------------------------------------------------------------------


@PROPERTY
@given(values)
def test_every_value_comes_back_as_it_was_without_annotation(value: Any) -> None:
    assert typed(_codec.loads(_codec.dumps(value))) == typed(value)


@PROPERTY
@given(annotated())
def test_every_value_comes_back_as_it_was_under_its_annotation(value_and_annotation: tuple[Any, Any]) -> None:
    value, annotation = value_and_annotation
    text = _codec.dumps(value, annotation)
    assert typed(_codec.loads(text, annotation)) == typed(value)
    assert typed(_codec.loads(_codec.dumps(value), annotation)) == typed(value)  # written without it


# -- digests -------------------------------------------------------------------------------------


def reordered(value: Any, rng: random.Random) -> Any:
    """An equal copy of ``value`` with every dict built in another key order and every set
    from its elements in another order."""
    if isinstance(value, dict):
        items = [(reordered(k, rng), reordered(v, rng)) for k, v in value.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(value, (set, frozenset)):
        elements = [reordered(v, rng) for v in value]
        rng.shuffle(elements)
        return type(value)(elements)
    if isinstance(value, list):
        return [reordered(v, rng) for v in value]
    if type(value) is tuple:
        return tuple(reordered(v, rng) for v in value)
    if isinstance(value, Box):
        return Box(reordered(value.content, rng), value.tags)
    return value


def digested(value: Any) -> Any:
    """What a digest compares (the module docstring of durable._codec): ``typed`` with a record's
    class, a NamedTuple's, an enum's, a Path's, a bytearray's and a datetime's fold and zone name
    left out."""
    if isinstance(value, enum.Enum):
        return digested(value.value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return digested(list(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return digested({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, BaseModel):
        return digested(value.model_dump(mode="json"))
    if isinstance(value, (Path, PurePosixPath)):
        return typed(str(value))
    if isinstance(value, bytearray):
        return typed(bytes(value))
    if isinstance(value, (dt.datetime, dt.time)):
        return (type(value).__qualname__, value.isoformat())
    if isinstance(value, list):
        return ("list", tuple(digested(v) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(digested(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return (type(value).__qualname__, tuple(sorted((digested(v) for v in value), key=repr)))
    if isinstance(value, dict):
        return ("dict", tuple(sorted(((digested(k), digested(v)) for k, v in value.items()), key=repr)))
    return typed(value)


@PROPERTY
@given(values, st.randoms(use_true_random=False))
def test_equal_values_give_one_digest(value: Any, rng: random.Random) -> None:
    assert _codec.digest(reordered(value, rng)) == _codec.digest(value)
    assert _codec.digest(_codec.loads(_codec.dumps(value))) == _codec.digest(value)
    args = (value, 1)
    assert _codec.digest_call(args, {}) == _codec.digest([list(args), {}])


@PROPERTY
@given(values, values)
def test_values_whose_data_differ_give_different_digests(a: Any, b: Any) -> None:
    assert (_codec.digest(a) == _codec.digest(b)) == (digested(a) == digested(b))


@PROPERTY
@given(st.integers(), st.integers(), texts, st.sampled_from(["positional", "keyword", "mixed"]))
def test_a_call_digests_alike_however_its_arguments_are_passed(a: int, b: int, c: str, style: str) -> None:
    wf = Workflow("digests", db="memory://")

    async def fn(a: int, b: int, *, c: str) -> None: ...

    task = wf.task(fn)
    if style == "positional":
        args, kwargs = (a, b), {"c": c}
    elif style == "keyword":
        args, kwargs = (), {"c": c, "b": b, "a": a}
    else:
        args, kwargs = (a,), {"c": c, "b": b}
    assert task._bound_digest(args, kwargs) == task._bound_digest((a, b), {"c": c})


@pytest.mark.parametrize(
    "value", [{2: "b", 1: "a"}, {(1, 2): 0, (0,): 1}, {FrozenPoint(1, 1): 1, FrozenPoint(0, 0): 2}]
)
def test_the_digest_of_dict_keys_of_any_type_ignores_their_order(value: dict[Any, Any]) -> None:
    assert _codec.digest(value) == _codec.digest(dict(reversed(value.items())))
    assert _codec.digest([value, {"k": value}]) == _codec.digest(
        [dict(reversed(value.items())), {"k": value}]
    )
