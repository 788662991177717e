"""Checkpoint values round-trip to the same type, guided by return annotations."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional

import pytest
from pydantic import BaseModel

from durable import Workflow, _codec
from durable.errors import SerializationError


class Item(BaseModel):
    name: str
    price: Decimal
    at: dt.datetime


@dataclass
class Point:
    x: int
    y: int
    tags: tuple[str, ...] = ()


VALUES: list[tuple[Any, Any]] = [
    ((1, "a", None), tuple[int, str, None]),
    ({1, 2, 3}, set[int]),
    (frozenset({"x"}), frozenset[str]),
    ({1: "int key", (1, 2): "tuple key"}, Any),
    (dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), dt.datetime),
    (dt.date(2026, 1, 2), dt.date),
    (dt.timedelta(days=1, microseconds=3), dt.timedelta),
    (uuid.UUID(int=42), uuid.UUID),
    (Decimal("1.10"), Decimal),
    (b"\x00\xffbytes", bytes),
    ({"__durable__": "not a tag", "v": 1}, dict[str, Any]),
    ([{"nested": (dt.date(2020, 1, 1),)}], list[dict[str, tuple[dt.date]]]),
]


@pytest.mark.parametrize(("value", "annotation"), VALUES)
def test_builtin_types_round_trip_exactly(value: Any, annotation: Any) -> None:
    decoded = _codec.loads(_codec.dumps(value), annotation)
    assert decoded == value and type(decoded) is type(value)


def test_models_and_dataclasses_rebuild_from_annotations() -> None:
    item = Item(name="pen", price=Decimal("2.50"), at=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    text = _codec.dumps([item, item])
    assert _codec.loads(text, list[Item]) == [item, item]
    assert _codec.loads(_codec.dumps(item), Optional[Item]) == item  # noqa: UP045 - the form users write
    assert _codec.loads(_codec.dumps(None), Item | None) is None
    point = Point(1, 2, ("a",))
    assert _codec.loads(_codec.dumps(point), Point) == point
    assert _codec.loads(_codec.dumps({"p": point}), dict[str, Point]) == {"p": point}


def test_unknown_types_raise_a_clear_error() -> None:
    with pytest.raises(SerializationError, match="socket"):
        import socket

        with socket.socket() as s:
            _codec.dumps(s)


def test_digest_ignores_object_addresses_but_not_values() -> None:
    class Client:
        pass

    assert _codec.digest([Client(), 1]) == _codec.digest([Client(), 1])
    assert _codec.digest([1, 2]) != _codec.digest([2, 1])
    assert _codec.digest({"a": "x-y", "b": "z"}) != _codec.digest({"a": "x", "b": "y-z"})


async def test_task_results_come_back_as_their_annotated_types_on_first_run_and_replay() -> None:
    wf = Workflow("codec", db="memory://")

    @wf.task
    async def make_items() -> list[Item]:
        return [Item(name="a", price=Decimal("1"), at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))]

    @wf.task
    async def make_point() -> Optional[Point]:  # noqa: UP045
        return Point(3, 4)

    @wf.workflow(id="types")
    async def flow() -> tuple[list[Item], Point | None]:
        return await make_items(), await make_point()

    first = await flow()
    again = await flow()
    assert first == again
    assert isinstance(first[0][0], Item) and isinstance(first[1], Point)


async def test_mutating_a_returned_value_does_not_corrupt_the_checkpoint() -> None:
    wf = Workflow("mut", db="memory://")

    @wf.task
    async def config() -> dict[str, list[int]]:
        return {"xs": [1, 2]}

    @wf.workflow(id="m")
    async def flow() -> dict[str, list[int]]:
        value = await config()
        value["xs"].append(99)
        return await config()

    # The second call is a new step; the first checkpoint must still read {"xs": [1, 2]}.
    assert await flow() == {"xs": [1, 2]}
    steps = await wf.get_steps("m")
    assert [s.result for s in steps] == ['{"xs":[1,2]}', '{"xs":[1,2]}']


# -- the fast paths give the same text and values as the reference json module ----------

FAST_PATH_SAMPLES: list[Any] = [
    None, True, 0, -7, 2**70, 1.5, float("inf"), "", "é\u2028\"\\", [], {}, [1, [2, [3]]],
    {"b": 1, "a": {"z": None, "é": [1.25, "x"]}}, {"k": float("nan")},
]  # fmt: skip


@pytest.mark.parametrize("sample", FAST_PATH_SAMPLES, ids=repr)
def test_encoders_write_what_json_writes(sample: Any) -> None:
    plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    canonical = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert _codec._encode(sample) == plain.encode(sample)
    assert _codec._canonical(sample) == canonical.encode(sample)


@pytest.mark.parametrize("text", ['{"a":[1,2.5,"x",null,true]}', " 12 ", "[1]\n", '"\\u00e9"', "1e400"])
def test_decoder_reads_what_json_reads(text: str) -> None:
    assert repr(_codec._decode(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["", "12 x", "[1,", "{'a': 1}", "nul"])
def test_decoder_rejects_what_json_rejects(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        _codec._decode(text)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        ((1, "a", None, 2.5, True), {}),
        ((1,), {"b": 2}),
        (([1, 2], {"x": (1,)}), {}),
        ((1, 2.0), {}),
        (('\u00e9"\\\n\x00\u2028 \U0001f600',), {}),
        ((float("nan"), float("inf"), -float("inf"), -0.0, 1e100, 1e-7, 0.1), {}),
        ((2**80, -3, False, None, ""), {}),
        # one argument has a path of its own
        ((7,), {}),
        ((False,), {}),
        ((None,), {}),
        ((float("-inf"),), {}),
        (("\u2028\x7f",), {}),
        (([7],), {}),
    ],
    ids=repr,
)
def test_digest_call_is_the_digest_of_the_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert _codec.digest_call(args, kwargs) == _codec.digest([list(args), kwargs])
    assert _codec.digest_call((1,), {}) != _codec.digest_call((True,), {}) != _codec.digest_call(("1",), {})


@pytest.mark.parametrize(
    "data",
    [
        ["step", "d" * 32, '"quoted"\n', None, 1, 1.5, -0.0, 1e300, "é ✓"],
        {"b": [1, {"a": None}], "a": True},
        [],
    ],
    ids=repr,
)
def test_compact_json_is_json_dumps_without_spaces_keeping_non_ascii(data: Any) -> None:
    from durable.store import compact_json

    assert compact_json(data) == json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    "value", [{}, {"a": 1, "b": [1.5, None, "x"]}, {"when": dt.date(2026, 1, 2), "n": {3, 1, 2}}]
)
def test_dumps_and_digest_is_dumps_and_digest(value: Any) -> None:
    assert _codec.dumps_and_digest(value) == (_codec.dumps(value), _codec.digest(value))


def test_dumps_and_digest_refuses_what_dumps_refuses() -> None:
    with pytest.raises(SerializationError):
        _codec.dumps_and_digest({"client": object()})
