"""Drop-in compatibility with python-durable 0.2: code written for it works unchanged.

Each test is one promise that version's README, tests or API made, checked against ours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import RunContext as AgentContext

import durable
from durable import RunStatus, Store, Workflow, _codec
from durable.backoff import constant
from durable.store import Capability

from helpers import until_status


class User(BaseModel):
    id: int
    name: str


@dataclasses.dataclass
class Point:
    x: int
    y: int


# -- wf.complete before the run exists ---------------------------------------------------------


async def test_a_signal_delivered_before_the_run_exists_is_received_when_it_starts(store_url: str) -> None:
    wf = Workflow("early", db=store_url)

    @wf.workflow(id="order-{n}")
    async def order(n: int) -> Any:
        return await wf.signal("paid")

    assert await wf.complete("order-1", "paid", {"amount": 3}) is True
    assert await wf.complete("order-1", "paid", {"amount": 4}) is False  # first write wins
    assert await wf.get_run("order-1") is None
    assert await order(1) == {"amount": 3}
    await wf.close()


async def test_complete_still_accepts_create(store_url: str) -> None:
    wf = Workflow("early", db=store_url)
    assert await wf.complete("later", "go", 1, create=True) is True
    await wf.close()


# -- wf.signal(poll=...), DurableAgent.signal and DurableAgent.tool ------------------------------


async def test_signal_accepts_poll() -> None:
    wf = Workflow("poll", db="memory://")

    @wf.workflow(id="p")
    async def flow() -> Any:
        return await wf.signal("approval", poll=0.5)

    task = asyncio.ensure_future(flow())
    await until_status(wf, "p", RunStatus.WAITING)
    await wf.complete("p", "approval", {"ok": True})
    assert await asyncio.wait_for(task, 5) == {"ok": True}


def _agent(wf: Workflow, calls: list[str]) -> Any:
    from pydantic_ai import Agent
    from pydantic_ai.models.test import TestModel

    from durable.pydantic_ai import DurableAgent

    agent = Agent(TestModel(call_tools=[]), name="helper")

    @agent.tool_plain
    async def lookup(city: str, days: int = 1) -> str:
        calls.append(city)
        return f"{city} for {days} days: sunny"

    return DurableAgent(agent, wf)


async def test_durable_agent_tool_call_is_a_checkpointed_step() -> None:
    wf = Workflow("agent-tool", db="memory://", default_retries=0)
    calls: list[str] = []
    agent = _agent(wf, calls)

    @wf.workflow(id="trip")
    async def trip() -> list[str]:
        first = await agent.tool("lookup", {"city": "Oslo"}, step_id="oslo")
        second = await agent.tool("lookup", {"city": "Rome", "days": 2})
        return [first, second]

    expected = ["Oslo for 1 days: sunny", "Rome for 2 days: sunny"]
    assert await trip() == expected
    assert await trip.run("trip") == expected
    assert calls == ["Oslo", "Rome"]
    assert [s.key for s in await wf.get_steps("trip")] == ["helper.tool_call@oslo", "helper.tool_call"]
    # Outside a run it is a plain call, as there.
    assert await agent.tool("lookup", {"city": "Bergen"}) == "Bergen for 1 days: sunny"
    with pytest.raises(
        durable.errors.ConfigurationError, match=r"no function tool 'nope' \(available: lookup\)"
    ):
        await agent.tool("nope", {})


async def test_durable_agent_tool_still_registers_tools_and_signal_accepts_poll() -> None:
    wf = Workflow("agent-signal", db="memory://")
    agent = _agent(wf, [])

    @agent.tool
    async def today(ctx: AgentContext[None]) -> str:
        return "Monday"

    assert any("today" in getattr(toolset, "tools", {}) for toolset in agent.wrapped.toolsets)
    with pytest.raises(durable.errors.ConfigurationError, match="takes a RunContext"):
        await agent.tool("today", {})

    @wf.workflow(id="review")
    async def review() -> Any:
        return await agent.signal("approval", poll=2.0)

    await wf.complete("review", "approval", {"ok": True})
    assert await review() == {"ok": True}


# -- models and dataclasses without a return annotation --------------------------------------


async def test_a_model_or_dataclass_without_annotation_keeps_its_type_on_first_run_and_replay() -> None:
    wf = Workflow("types", db="memory://", default_retries=0)
    runs: list[str] = []
    crash = {"now": True}

    @wf.task
    async def fetch_user():  # type: ignore[no-untyped-def]
        runs.append("user")
        return User(id=1, name="Alice")

    @wf.task
    async def locate():  # type: ignore[no-untyped-def]
        runs.append("point")
        return Point(3, 4)

    @wf.workflow(id="t")
    async def flow():  # type: ignore[no-untyped-def]
        user, point = await fetch_user(), await locate()
        assert isinstance(user, User) and user.name == "Alice"  # the very first run, too
        assert isinstance(point, Point) and point.x == 3
        if crash["now"]:
            raise RuntimeError("crash after both steps")
        return user

    with pytest.raises(RuntimeError, match="crash"):
        await flow()
    crash["now"] = False
    first = await flow()  # both steps replayed: the assertions in the body ran on replay too
    assert isinstance(first, User) and first == User(id=1, name="Alice")
    again = await flow()  # the finished run's stored result
    assert again == first and isinstance(again, User)
    assert runs == ["user", "point"]


async def test_a_declared_annotation_wins_over_the_recorded_class() -> None:
    wf = Workflow("annotated", db="memory://")

    @wf.task
    async def as_dict() -> dict[str, Any]:
        return User(id=2, name="Bob")  # type: ignore[return-value]

    @wf.workflow(id="a")
    async def flow() -> Any:
        return await as_dict()

    assert await flow() == {"id": 2, "name": "Bob"}
    assert await flow() == {"id": 2, "name": "Bob"}


async def test_child_run_results_keep_their_type() -> None:
    wf = Workflow("children", db="memory://")

    @wf.workflow
    async def child(n: int):  # type: ignore[no-untyped-def]
        return Point(n, n)

    @wf.workflow(id="parent")
    async def parent() -> Any:
        point = await child(5)
        assert isinstance(point, Point)
        return [point.x]

    assert await parent() == [5]
    assert await parent() == [5]


def test_the_class_envelope_is_left_out_where_the_annotation_names_the_class() -> None:
    user = User(id=1, name="A")
    assert json.loads(_codec.dumps(user)) == {
        "__durable__": "class",
        "c": f"{__name__}:User",
        "v": {"id": 1, "name": "A"},
    }
    assert _codec.dumps(user, User) == '{"id":1,"name":"A"}'
    assert _codec.dumps([user], list[User]) == '[{"id":1,"name":"A"}]'
    # Nested without an annotation it names its class too, so that it comes back as one (issue 16).
    assert _codec.loads(_codec.dumps([user])) == [user]
    assert _codec.dumps({"id": 1}) == '{"id":1}'
    assert _codec.dumps((1, 2)) == '{"__durable__":"tuple","v":[1,2]}'


def test_a_class_that_is_not_loaded_gives_the_plain_data_and_nothing_is_imported() -> None:
    # Importing `this` prints the Zen of Python: decoding must not do it.
    assert "this" not in sys.modules
    text = json.dumps({"__durable__": "class", "c": "this:Zen", "v": {"a": 1}})
    assert _codec.loads(text) == {"a": 1}
    assert "this" not in sys.modules
    assert _codec.loads(json.dumps({"__durable__": "class", "c": "os:system", "v": 1})) == 1
    assert _codec.loads(json.dumps({"__durable__": "class", "c": "durable:RedisStore", "v": 1})) == 1


def test_a_class_defined_in_a_function_is_found_while_it_lives() -> None:
    class Local(BaseModel):
        a: int

    assert _codec.loads(_codec.dumps(Local(a=1))) == Local(a=1)


# -- a store written against 0.2's seven-method Store ------------------------------------------


class DictStore(Store):
    """python-durable 0.2's InMemoryStore, as a user would have copied it."""

    def __init__(self) -> None:
        self.steps: dict[tuple[str, str], Any] = {}
        self.runs: dict[str, str] = {}
        self.signals: dict[tuple[str, str], Any] = {}
        self.setups = 0

    async def setup(self) -> None:
        self.setups += 1

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        key = (run_id, step_id)
        return (True, json.loads(self.steps[key])) if key in self.steps else (False, None)

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        self.steps[(run_id, step_id)] = json.dumps(result)

    async def mark_run_done(self, run_id: str) -> None:
        self.runs[run_id] = "done"

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        self.runs[run_id] = f"failed: {error}"

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        key = (run_id, name)
        return (True, self.signals[key]) if key in self.signals else (False, None)

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        if (run_id, name) in self.signals:
            return False
        self.signals[(run_id, name)] = payload
        return True


SQLITE_STORE = '''
import json
import sqlite3
from typing import Any

from durable.store import Store


class SQLiteFileStore(Store):
    """A custom store as python-durable 0.2's README suggested: a subclass with seven methods."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None)

    async def setup(self) -> None:
        with self._db() as db:
            db.executescript("""
                CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, status TEXT, error TEXT);
                CREATE TABLE IF NOT EXISTS steps (
                    run_id TEXT, step_id TEXT, result TEXT, attempt INTEGER, PRIMARY KEY (run_id, step_id));
                CREATE TABLE IF NOT EXISTS signals (
                    run_id TEXT, name TEXT, payload TEXT, PRIMARY KEY (run_id, name));
            """)

    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]:
        with self._db() as db:
            row = db.execute(
                "SELECT result FROM steps WHERE run_id = ? AND step_id = ?", (run_id, step_id)
            ).fetchone()
        return (False, None) if row is None else (True, json.loads(row[0])["v"])

    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO steps VALUES (?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE "
                "SET result = excluded.result, attempt = excluded.attempt",
                (run_id, step_id, json.dumps({"v": result}), attempt),
            )

    async def mark_run_done(self, run_id: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO runs VALUES (?, 'done', NULL)", (run_id,))

    async def mark_run_failed(self, run_id: str, error: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO runs VALUES (?, 'failed', ?)", (run_id, error))

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        with self._db() as db:
            row = db.execute(
                "SELECT payload FROM signals WHERE run_id = ? AND name = ?", (run_id, name)
            ).fetchone()
        return (False, None) if row is None else (True, json.loads(row[0]))

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        with self._db() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO signals VALUES (?, ?, ?)", (run_id, name, json.dumps(payload))
            )
        return cursor.rowcount > 0
'''

APP = """
import asyncio
import os
import sys

from durable import Workflow
from legacy_sqlite_store import SQLiteFileStore

wf = Workflow("orders", db=SQLiteFileStore(sys.argv[1]), default_retries=0)
log = open(sys.argv[2], "a")


@wf.task
async def charge(order: str) -> str:
    print("charge", file=log, flush=True)
    return f"charged {order}"


@wf.task
async def ship(order: str) -> str:
    print("ship", file=log, flush=True)
    if sys.argv[3] == "crash":
        os._exit(3)  # the process dies mid-run, as with kill -9
    return f"shipped {order}"


@wf.workflow(id="order-{order}")
async def process(order: str) -> list:
    approval = await wf.signal("approve")
    return [await charge(order), await ship(order), approval]


async def main() -> None:
    if sys.argv[3] != "restart":
        await wf.complete("order-7", "approve", {"by": "ann"})
    print(await process("7"))


asyncio.run(main())
"""


@pytest.fixture
def sqlite_store_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "legacy_sqlite_store.py").write_text(textwrap.dedent(SQLITE_STORE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import legacy_sqlite_store

    yield legacy_sqlite_store
    sys.modules.pop("legacy_sqlite_store", None)


def _legacy_workflow(store: Store) -> Workflow:
    with pytest.warns(DeprecationWarning, match="durable-contract-tests") as caught:
        wf = Workflow("legacy", db=store, default_retries=1, default_backoff=constant(0))
    assert caught[0].filename == __file__  # the warning points at the user's line
    return wf


def test_a_seven_method_store_can_be_instantiated_and_a_new_style_one_must_be_complete() -> None:
    store = DictStore()
    assert type(store)._legacy_api

    class Incomplete(Store):
        async def open(self) -> None: ...

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]

    class Partial(Store):  # 0.2's names, but also one of today's methods: a new-style store
        async def create_run(self, run: Any) -> Any: ...

    assert not Partial._legacy_api


async def test_a_seven_method_store_explains_what_it_lacks_when_used_directly() -> None:
    with pytest.raises(TypeError, match=r"DictStore implements python-durable 0\.2's seven-method"):
        await DictStore().get_run("x")


async def test_a_dict_backed_legacy_store_replays_finished_steps_after_a_crash() -> None:
    store = DictStore()
    executed: list[str] = []
    crash = {"now": True}

    def define(wf: Workflow) -> Any:
        @wf.task
        async def fetch(user_id: str) -> dict[str, str]:
            executed.append("fetch")
            return {"id": user_id}

        @wf.task
        async def process(user: dict[str, str]):  # type: ignore[no-untyped-def]
            executed.append("process")
            return User(id=int(user["id"]), name="Bob")

        @wf.task
        async def save(user: User) -> None:
            executed.append("save")

        @wf.workflow(id="pipeline-{user_id}")
        async def pipeline(user_id: str) -> str:
            user = await process(await fetch(user_id))
            for i in range(2):
                await fetch(f"{user_id}-{i}", step_id=f"item-{i}")  # type: ignore[call-arg]
            if crash["now"]:
                raise RuntimeError("simulated crash before save")
            await save(user)
            return user.name

        return pipeline

    wf = _legacy_workflow(store)
    assert Capability.PERSISTENT not in (await wf.get_store()).capabilities
    assert Capability.MULTI_PROCESS not in (await wf.get_store()).capabilities
    with pytest.raises(RuntimeError, match="simulated crash"):
        await define(wf)("42")
    assert executed == ["fetch", "process", "fetch", "fetch"]
    assert store.runs == {"pipeline-42": "failed: simulated crash before save"}

    # A new process: nothing in memory, everything the seven methods kept.
    crash["now"] = False
    executed.clear()
    restarted = _legacy_workflow(store)
    assert await define(restarted)("42") == "Bob"
    assert executed == ["save"]
    assert store.runs == {"pipeline-42": "done"}
    assert store.setups == 2
    assert [s.key for s in await restarted.get_steps("pipeline-42")] == [
        "fetch", "process", "fetch@item-0", "fetch@item-1", "save",
    ]  # fmt: skip


async def test_a_legacy_store_receives_signals_early_late_and_once() -> None:
    store = DictStore()
    wf = _legacy_workflow(store)

    @wf.workflow(id="approval-{n}")
    async def approval(n: int) -> list[Any]:
        return [await wf.signal("manager"), await wf.signal("finance")]

    assert await wf.complete("approval-1", "manager", {"ok": True}) is True  # before the run exists
    assert await wf.complete("approval-1", "manager", {"ok": False}) is False
    task = asyncio.ensure_future(approval(1))
    await until_status(wf, "approval-1", RunStatus.WAITING)
    assert await wf.complete("approval-1", "finance", "yes") is True
    assert await asyncio.wait_for(task, 5) == [{"ok": True}, "yes"]
    assert store.signals == {("approval-1", "manager"): {"ok": True}, ("approval-1", "finance"): "yes"}
    # Several deliveries of one name, by delivery id, as today's API allows.
    assert await wf.complete("approval-2", "manager", 1, delivery_id="a") is True
    assert await wf.complete("approval-2", "manager", 2, delivery_id="b") is True
    assert await wf.complete("approval-2", "manager", 2, delivery_id="b") is False
    store_view = await wf.get_store()
    assert [(s.delivery_id, s.payload) for s in await store_view.list_signals("approval-2", "manager")] == [
        ("a", "1"),
        ("b", "2"),
    ]
    # A delivery written straight into the legacy store (another process, a webhook) is found.
    await store.set_signal("approval-3", "manager", "from elsewhere")
    await store.set_signal("approval-3", "finance", "too")
    assert await approval(3) == ["from elsewhere", "too"]


async def test_a_sqlite_backed_legacy_store_replays_after_the_process_is_killed(
    sqlite_store_module: Any, tmp_path: Path
) -> None:
    db, log = tmp_path / "orders.db", tmp_path / "log.txt"
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))

    def run(mode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-W", "ignore::DeprecationWarning", str(tmp_path / "app.py"), db, log, mode],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )

    crashed = run("crash")
    assert crashed.returncode == 3, crashed.stderr
    assert log.read_text().split() == ["charge", "ship"]
    resumed = run("restart")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "['charged 7', 'shipped 7', {'by': 'ann'}]"
    assert log.read_text().split() == ["charge", "ship", "ship"]  # charge replayed, not re-run
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("done",)]
        assert conn.execute("SELECT name, payload FROM signals").fetchall() == [("approve", '{"by": "ann"}')]
    # The same store in a third process (this one): the run is found again and every step replays.
    wf = _legacy_workflow(sqlite_store_module.SQLiteFileStore(str(db)))

    @wf.task
    async def charge(order: str) -> str:
        raise AssertionError("replayed, never executed")

    @wf.task
    async def ship(order: str) -> str:
        raise AssertionError("replayed, never executed")

    @wf.workflow(id="order-{order}")
    async def process(order: str) -> list[Any]:
        approval = await wf.signal("approve")
        return [await charge(order), await ship(order), approval]

    assert await process("7") == ["charged 7", "shipped 7", {"by": "ann"}]


def test_durable_store_and_durable_Store_are_the_same_base() -> None:
    assert durable.Store is durable.store.Store
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Workflow("plain", db="memory://")  # new-style stores: no warning


# -- RunContext.next_step_id -----------------------------------------------------------------


async def test_run_context_next_step_id_counts_as_in_0_2() -> None:
    wf = Workflow("ids", db="memory://")

    @wf.workflow(id="ids")
    async def flow() -> list[str]:
        ctx = durable.current_run()
        assert ctx is not None
        return [ctx.next_step_id("fetch"), ctx.next_step_id("fetch"), ctx.next_step_id("odd#name")]

    assert await flow() == ["fetch", "fetch#1", "odd%23name"]
