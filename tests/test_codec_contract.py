"""The codec's contract, each test a defect of issue 16 (items 3 to 6 and the ids of item 14):
what dumps accepts comes back as it was, what it cannot keep is refused before anything is
written, equal calls digest alike, and a type never changes between a first run and a replay."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import sqlite3
import sys
import zoneinfo
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from test_codec_properties import Color, FrozenPoint, Pair, typed

from durable import RunStatus, Workflow, _codec
from durable.errors import ConfigurationError, NondeterminismError, SerializationError

from helpers import Calls


@dataclasses.dataclass
class Point:
    x: int
    y: int


def _zone(key: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(key)
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip(f"no time zone database with {key}")


# -- item 3: what dumps accepts, loads reads back -----------------------------------------------

HASHED: list[tuple[Any, Any]] = [
    ({FrozenPoint(0, 0), FrozenPoint(1, 2)}, set[FrozenPoint]),
    (frozenset({Pair(1, "a"), Pair(2, "b")}), frozenset[Pair]),
    ({FrozenPoint(0, 0): "origin"}, dict[FrozenPoint, str]),
    ({Pair(1, "a"): [FrozenPoint(1, 1)]}, dict[Pair, list[FrozenPoint]]),
    (({FrozenPoint(0, 0)}, (Pair(2, "b"),)), tuple[set[FrozenPoint], tuple[Pair, ...]]),
    ({Color.RED: {frozenset({FrozenPoint(3, 4)})}}, dict[Color, set[frozenset[FrozenPoint]]]),
]


@pytest.mark.parametrize(("value", "annotation"), HASHED, ids=repr)
def test_sets_and_dict_keys_of_frozen_dataclasses_and_namedtuples_come_back(
    value: Any, annotation: Any
) -> None:
    assert typed(_codec.loads(_codec.dumps(value, annotation), annotation)) == typed(value)
    assert typed(_codec.loads(_codec.dumps(value))) == typed(value)
    assert typed(_codec.loads(_codec.dumps(value), annotation)) == typed(value)


@pytest.mark.parametrize(
    "value",
    [[Point(1, 2)], {"p": Pair(1, "a")}, [Color.RED, Color.GREEN], (Point(0, 0), {FrozenPoint(1, 1)})],
    ids=repr,
)
def test_records_and_enums_nested_without_annotation_come_back_as_their_class(value: Any) -> None:
    assert typed(_codec.loads(_codec.dumps(value))) == typed(value)


async def test_a_set_of_frozen_dataclasses_checkpoints_and_replays(wf: Workflow, calls: Calls) -> None:
    crash = {"now": True}

    @wf.task
    async def corners() -> set[FrozenPoint]:
        calls("corners")
        return {FrozenPoint(0, 0), FrozenPoint(1, 1)}

    @wf.workflow(id="corners")
    async def flow() -> int:
        points = await corners()
        assert points == {FrozenPoint(0, 0), FrozenPoint(1, 1)}
        if crash["now"]:
            raise RuntimeError("crash")
        return len(points)

    with pytest.raises(RuntimeError):
        await flow()
    crash["now"] = False
    assert await flow() == 2
    assert calls.count("corners") == 1


async def test_a_signal_payload_and_run_inputs_of_frozen_dataclasses_are_read_back(wf: Workflow) -> None:
    @wf.workflow(id="wait-{n}")
    async def waiter(n: int, points: set[FrozenPoint]) -> list[Any]:
        payload = await wf.signal("go", timeout=10)
        return [sorted(points, key=lambda p: p.x), payload]

    run_id = await waiter.start(1, {FrozenPoint(2, 2), FrozenPoint(1, 1)})
    assert await wf.complete(run_id, "go", {FrozenPoint(5, 5): Pair(1, "x")})
    assert await wf.resume(run_id) == [
        [FrozenPoint(1, 1), FrozenPoint(2, 2)],
        {FrozenPoint(5, 5): Pair(1, "x")},
    ]


# -- item 4: what the codec cannot keep is refused, with SerializationError, before writing ------


def _cyclic_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _cyclic_dict() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = {"again": value}
    return value


def _nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


class _Zone(dt.tzinfo):
    """A zone of a library other than zoneinfo (as pytz's and dateutil's are): its offset
    depends on the date, so a fixed offset would lose its rules."""

    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta | None:
        return None if d is None else dt.timedelta(hours=2 if 4 <= d.month <= 10 else 1)

    def dst(self, d: dt.datetime | None) -> dt.timedelta | None:
        return None if d is None else dt.timedelta(hours=1 if 4 <= d.month <= 10 else 0)


class _Utc(dt.tzinfo):
    """A fixed offset of another class (as pytz.utc is)."""

    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def dst(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)


@dataclasses.dataclass
class NeedsInitVar:
    x: int
    seed: dataclasses.InitVar[int]


def _name(value: Any) -> str:
    return type(value).__name__


REFUSED: list[tuple[Any, str]] = [
    (10**5000, "digits"),
    (_nested(5000), "nested more than 100 levels"),
    (_cyclic_list(), "contains itself"),
    (_cyclic_dict(), "contains itself"),
    ("a\ud800", "lone surrogate"),
    ({"key\udfff": 1}, "lone surrogate"),
    ([{"deep": ("x\ud800",)}], "lone surrogate"),
    (dt.datetime(2026, 1, 1, tzinfo=_Zone()), "a zone this codec cannot name"),
    (NeedsInitVar(1, 2), "InitVar"),
]


@pytest.mark.parametrize(("value", "reason"), REFUSED, ids=_name)
def test_values_the_codec_cannot_keep_are_refused_saying_why(value: Any, reason: str) -> None:
    with pytest.raises(SerializationError, match=reason):
        _codec.dumps(value)
    with pytest.raises(SerializationError, match=reason):
        _codec.dumps_and_digest({"arg": value})


@pytest.mark.parametrize(("value", "reason"), REFUSED[:7], ids=_name)
def test_arguments_that_cannot_be_digested_are_refused_saying_why(value: Any, reason: str) -> None:
    with pytest.raises(SerializationError, match=reason):
        _codec.digest_call((value,), {})
    with pytest.raises(SerializationError, match=reason):
        _codec.digest_call((1,), {"x": value})


def test_a_fixed_offset_of_another_class_comes_back_as_a_timezone() -> None:
    value = dt.datetime(2026, 1, 1, 12, tzinfo=_Utc())
    back = _codec.loads(_codec.dumps(value), dt.datetime)
    assert back == value and back.tzinfo is dt.UTC


def test_the_deepest_value_written_is_read_back_from_a_deep_stack() -> None:
    text = _codec.dumps([_nested(_codec.MAX_DEPTH - 2)], list[Any])

    def read_at(depth: int) -> Any:
        return _codec.loads(text, list[Any]) if depth == 0 else read_at(depth - 1)

    assert read_at(sys.getrecursionlimit() - 400) == [_nested(_codec.MAX_DEPTH - 2)]


@pytest.mark.parametrize("value", [10**5000, "a\ud800", _cyclic_list()], ids=_name)
async def test_a_task_result_that_cannot_be_kept_names_the_task_and_writes_nothing(
    wf: Workflow, value: Any
) -> None:
    @wf.task(retries=0)
    async def produce() -> Any:
        return value

    @wf.workflow(id="produce")
    async def flow() -> None:
        await produce()

    with pytest.raises(SerializationError, match=r"task 'produce' \(run 'produce', step 'produce'\)"):
        await flow()
    assert [s.key for s in await wf.get_steps("produce")] == []


@pytest.mark.parametrize("value", [10**5000, "a\ud800", _cyclic_list()], ids=_name)
async def test_a_task_argument_that_cannot_be_digested_names_the_task_before_its_body(
    wf: Workflow, calls: Calls, value: Any
) -> None:
    @wf.task
    async def consume(x: Any) -> None:
        calls("consume")

    @wf.workflow(id="consume")
    async def flow() -> None:
        await consume(value)

    with pytest.raises(
        SerializationError, match=r"task 'consume' \(run 'consume', step 'consume'\).*digested"
    ):
        await flow()
    assert calls.count("consume") == 0


async def test_workflow_inputs_and_signal_payloads_that_cannot_be_kept_write_nothing(wf: Workflow) -> None:
    @wf.workflow(id="in-{n}")
    async def flow(n: int, text: str) -> None: ...

    with pytest.raises(SerializationError, match=r"'in-1'.*lone surrogate"):
        await flow(1, "a\ud800")
    assert await wf.get_run("in-1") is None

    @wf.workflow(name="digested")
    async def by_digest(text: str) -> None: ...

    with pytest.raises(SerializationError, match=r"workflow 'digested'.*lone surrogate"):
        await by_digest("a\ud800")
    await flow(2, "fine")
    with pytest.raises(SerializationError, match=r"'in-2'.*'go'.*lone surrogate"):
        await wf.complete("in-2", "go", {"text": "a\ud800"})
    assert await wf.get_signals("in-2") == []


# -- items 4 and 14: ids that no store can keep are refused, naming the id ------------------------


async def test_step_ids_with_nul_or_a_lone_surrogate_are_refused_before_the_body(
    wf: Workflow, calls: Calls
) -> None:
    @wf.task
    async def step() -> None:
        calls("step")

    @wf.workflow
    async def flow(code: int) -> None:
        await step(step_id=f"a{chr(code)}b")  # type: ignore[call-arg]

    with pytest.raises(ConfigurationError, match=r"task 'step': step_id 'a\\x00b' contains NUL"):
        await flow.run("nul", 0)
    with pytest.raises(
        ConfigurationError, match=r"task 'step': step_id 'a\\ud800b' contains a lone surrogate"
    ):
        await flow.run("surrogate", 0xD800)
    assert calls.count("step") == 0
    assert await wf.get_steps("nul") == [] and await wf.get_steps("surrogate") == []


async def test_run_ids_signal_names_and_delivery_ids_no_store_can_keep_are_refused(wf: Workflow) -> None:
    @wf.workflow
    async def flow() -> None:
        await wf.signal("go\ud800", timeout=1)

    with pytest.raises(ConfigurationError, match=r"run id 'r\\ud800' contains a lone surrogate"):
        await flow.run("r\ud800")
    with pytest.raises(ConfigurationError, match=r"signal name 'go\\ud800' contains a lone surrogate"):
        await flow.run("ok")
    for args, what in [
        (("r\ud800", "go"), "run id"),
        (("ok", "go\x00"), "signal name"),
        (("ok", "go\ud800"), "signal name"),
    ]:
        with pytest.raises(ConfigurationError, match=what):
            await wf.complete(*args)
    with pytest.raises(ConfigurationError, match=r"delivery id 'd\\udc80' contains a lone surrogate"):
        await wf.complete("ok", "go", delivery_id="d\udc80")
    assert await wf.get_signals("ok") == []


def test_the_run_id_error_says_which_of_length_and_nul_is_at_fault() -> None:
    wf = Workflow("ids", db="memory://")

    @wf.workflow(id="{name}")
    async def flow(name: str) -> None: ...

    with pytest.raises(ConfigurationError) as long:
        flow.run_id_for("y" * 2000)
    assert "longer than 1024 characters (2000)" in str(long.value) and "NUL" not in str(long.value)
    with pytest.raises(ConfigurationError) as nul:
        flow.run_id_for("a\x00b")
    assert "contains NUL" in str(nul.value) and "longer" not in str(nul.value)


# -- item 5: equal calls digest alike, changed ones do not -----------------------------------------


def test_dicts_with_keys_of_any_type_digest_alike_whatever_their_order() -> None:
    assert _codec.digest({1: "a", 2: "b"}) == _codec.digest({2: "b", 1: "a"})
    assert _codec.digest([{(1, 2): 1, (0,): 2}]) == _codec.digest([{(0,): 2, (1, 2): 1}])
    assert _codec.digest({"__durable__": 1, "v": 2}) == _codec.digest({"v": 2, "__durable__": 1})
    assert _codec.digest({1: "a", 2: "b"}) != _codec.digest({1: "b", 2: "a"})


async def test_a_keyword_call_replays_a_positional_one(wf: Workflow, calls: Calls) -> None:
    by_keyword = {"now": False}

    @wf.task
    async def double(x: int, *, label: str = "") -> int:
        calls("double")
        return 2 * x

    @wf.workflow(id="kw")
    async def flow() -> int:
        if by_keyword["now"]:
            return await double(x=21, label="l")
        value = await double(21, label="l")
        raise RuntimeError(f"crash after {value}")

    with pytest.raises(RuntimeError):
        await flow()
    by_keyword["now"] = True  # the same call, spelled with keywords: not a changed argument
    assert await flow() == 42
    assert calls.count("double") == 1


class Obj:
    def __init__(self, value: int) -> None:
        self.value = value


async def test_an_argument_that_cannot_be_digested_is_compared_by_type_and_said_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wf = Workflow("objects", db="memory://")

    @wf.task
    async def use(obj: Obj) -> int:
        return obj.value

    @wf.workflow(id="obj")
    async def flow() -> list[int]:
        return [await use(Obj(1)), await use(Obj(2))]

    with caplog.at_level(logging.WARNING, logger="durable"):
        assert await flow() == [1, 2]
    warnings = [r.getMessage() for r in caplog.records if "cannot be digested" in r.getMessage()]
    assert len(warnings) == 1  # once per task and type
    assert "task 'use'" in warnings[0] and f"{__name__}.Obj" in warnings[0] and "only its type" in warnings[0]


def _previous_digest(text: str) -> str:
    """How the previous release (0.3.0) digested a call: the blake2b of its canonical JSON, as written."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


async def test_steps_recorded_by_the_previous_release_with_keywords_or_unordered_keys_still_replay(
    tmp_path: Path, calls: Calls
) -> None:
    path = tmp_path / "old.db"
    wf = Workflow("old", db=f"sqlite:///{path}", default_retries=0)
    crash = {"now": True}

    @wf.task
    async def echo(x: Any) -> Any:
        calls("echo")
        return x

    @wf.workflow(id="old")
    async def flow() -> list[Any]:
        first = await echo(x=1)
        second = await echo({2: "b", 1: "a"})
        if crash["now"]:
            raise RuntimeError("crash")
        return [first, second]

    with pytest.raises(RuntimeError):
        await flow()
    await wf.close()
    with sqlite3.connect(path) as db:  # the digests the previous release recorded for these two calls
        db.execute("UPDATE steps SET args_digest = ? WHERE key = 'echo'", (_previous_digest('[[],{"x":1}]'),))
        db.execute(
            "UPDATE steps SET args_digest = ? WHERE key = 'echo#1'",
            (_previous_digest('[[{"__durable__":"dict","v":[[2,"b"],[1,"a"]]}],{}]'),),
        )
    crash["now"] = False
    assert await flow() == [1, {2: "b", 1: "a"}]
    assert calls.count("echo") == 2  # both replayed
    await wf.close()


async def test_a_changed_argument_is_still_told_apart(wf: Workflow) -> None:
    value = {"arg": {1: "a", 2: "b"}}

    @wf.task
    async def echo(x: Any) -> Any:
        return x

    @wf.workflow(id="changed")
    async def flow() -> None:
        await echo(value["arg"])
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        await flow()
    value["arg"] = {1: "a", 2: "c"}
    with pytest.raises(NondeterminismError):
        await flow()


# -- item 6: types never change between the first run and a replay --------------------------------


def _kept() -> list[tuple[Any, Any]]:
    paris = _zone("Europe/Paris")
    return [
        (Path("a/b"), Path),
        (PurePosixPath("c/d"), PurePosixPath),
        (bytearray(b"\x00bytes"), bytearray),
        (dt.datetime(2026, 7, 1, 12, tzinfo=paris), dt.datetime),
        (dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=paris), dt.datetime),
        (dt.datetime(2026, 10, 25, 2, 30, fold=1), dt.datetime),
        (dt.time(1, 30, fold=1), dt.time),
        (Color.GREEN, Color),
        (Pair(1, "a"), Pair),
        ({"when": dt.datetime(2026, 1, 1, tzinfo=paris), "where": Path("x")}, dict[str, Any]),
    ]


def test_annotated_values_keep_their_type_zone_and_fold() -> None:
    for value, annotation in _kept():
        assert typed(_codec.loads(_codec.dumps(value, annotation), annotation)) == typed(value), value
        assert typed(_codec.loads(_codec.dumps(value))) == typed(value), value


async def test_task_results_keep_their_type_zone_and_fold_on_first_run_and_replay(wf: Workflow) -> None:
    kept = _kept()
    seen: list[Any] = []
    crash = {"now": True}

    @wf.task
    async def as_path() -> Path:
        return kept[0][0]  # type: ignore[no-any-return]

    @wf.task
    async def as_bytearray() -> bytearray:
        return kept[2][0]  # type: ignore[no-any-return]

    @wf.task
    async def as_datetime(i: int) -> dt.datetime:
        return kept[i][0]  # type: ignore[no-any-return]

    @wf.workflow(id="kept")
    async def flow() -> None:
        seen.append(
            typed([await as_path(), await as_bytearray(), await as_datetime(3), await as_datetime(4)])
        )
        if crash["now"]:
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        await flow()
    crash["now"] = False
    await flow()
    expected = typed([kept[0][0], kept[2][0], kept[3][0], kept[4][0]])
    assert seen == [expected, expected]


async def test_resumed_runs_see_inputs_equal_to_the_first_calls(wf: Workflow) -> None:
    paris = _zone("Europe/Paris")
    seen: list[Any] = []
    crash = {"now": True}

    @wf.workflow(id="inputs")
    async def flow(
        where: Path,
        raw: bytearray,
        when: dt.datetime,
        corners: set[FrozenPoint],
        items: list,  # type: ignore[type-arg]
        pair: Pair,
        by_key: dict[FrozenPoint, tuple[int, ...]],
        rate: float,
    ) -> None:
        seen.append(typed([where, raw, when, corners, items, pair, by_key, rate]))
        if crash["now"]:
            raise RuntimeError("crash")

    args = (
        Path("in/put"),
        bytearray(b"raw"),
        dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=paris),
        {FrozenPoint(0, 0), FrozenPoint(1, 1)},
        [Point(1, 2), Color.RED],
        Pair(3, "c"),
        {FrozenPoint(2, 2): (1, 2)},
        1,
    )
    with pytest.raises(RuntimeError):
        await flow(*args)
    crash["now"] = False
    await wf.resume("inputs")
    assert seen[0] == seen[1] == typed(list(args))
    run = await wf.get_run("inputs")
    assert run is not None and run.status is RunStatus.COMPLETED


async def test_a_recorded_result_of_another_type_raises_naming_the_step(wf: Workflow) -> None:
    version = {"now": 1}

    @wf.task(name="count")
    async def count_v1() -> str:
        return "not an int"

    @wf.task(name="count")
    async def count_v2() -> int:
        return 1

    @wf.workflow(id="typed")
    async def flow() -> Any:
        value = await (count_v1() if version["now"] == 1 else count_v2())
        if version["now"] == 1:
            raise RuntimeError("crash")
        return value

    with pytest.raises(RuntimeError):
        await flow()
    version["now"] = 2  # the code now says -> int; the checkpoint holds a str
    with pytest.raises(
        SerializationError, match=r"task 'count' \(run 'typed', step 'count'\).*int.*'not an int'"
    ):
        await flow()


async def test_a_result_that_does_not_match_its_annotation_is_refused_before_it_is_written(
    wf: Workflow,
) -> None:
    @wf.task(retries=0)
    async def count() -> int:
        return "seven"  # type: ignore[return-value]

    @wf.workflow(id="mismatch")
    async def flow() -> None:
        await count()

    with pytest.raises(SerializationError, match=r"task 'count'.*annotation int.*'seven'"):
        await flow()
    assert await wf.get_steps("mismatch") == []


def test_a_declared_annotation_still_converts_what_it_can() -> None:
    assert _codec.loads(_codec.dumps((1, 2), list[int]), list[int]) == [1, 2]
    assert _codec.loads(_codec.dumps("a/b", Path), Path) == Path("a/b")
    assert _codec.loads('{"x":1,"y":2}', Point) == Point(1, 2)  # a checkpoint of the previous release
    assert _codec.loads('"2026-01-02"', dt.date) == dt.date(2026, 1, 2)
