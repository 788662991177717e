"""The contract suite's teeth (issue 21): plausible store bugs, planted one at a time in the example
third-party store (``durable_example_store.JsonFileStore``), each make the suite fail, within its
time limit, in the test meant for it, with a message that points at the cause; the unchanged
store passes the same tests. Also the engine's and the CLI's halves: a store that refuses to claim
a run nobody holds is reported instead of waited for, and the CLI creates no store for a URL that
names none.

The planted stores are defined here (importable as ``test_contract_teeth``: ``tests/`` is on the
path) because the suite sends stores to other processes by pickling them. One pytest process runs
every defect's tests (``inner_run``), so this module costs one start-up, not one per defect.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from durable import Workflow, _codec
from durable import _runner as runner
from durable.backoff import constant
from durable.cli import cli
from durable.errors import StoreError
from durable.store import Capability, Lease, RunRecord, RunStatus, StepRecord
from durable_example_store import JsonFileStore
from durable_example_store import _store as example

T = TypeVar("T")

# -- the planted defects -----------------------------------------------------------------------


class BlockingLock(JsonFileStore):
    """Holds a ``threading.Lock`` across an ``await``: two concurrent creations block the event
    loop for good (no asyncio timeout can fire)."""

    _blocking = threading.Lock()

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        with self._blocking:
            await asyncio.sleep(0.01)
            return await super().create_run(run)


class RefusesFailedClaims(JsonFileStore):
    """``claim_run`` refuses a failed run (it reads ``failed`` as final)."""

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        run = await self.get_run(run_id)
        if run is not None and run.status is RunStatus.FAILED:
            return None
        return await super().claim_run(run_id, owner, lease_seconds)


class RefusesExpiredClaims(JsonFileStore):
    """``claim_run`` refuses every run that has an owner, whether or not its lease expired."""

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        run = await self.get_run(run_id)
        if run is not None and run.owner is not None:
            return None
        return await super().claim_run(run_id, owner, lease_seconds)


def _fold(key: str) -> str:
    # As a case-insensitive file system naming files, after "cleaning" the name.
    return unicodedata.normalize("NFKC", key).casefold().strip().replace("_", "-").replace(".", "-")


class _FoldedKeys(dict[str, Any]):
    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(_fold(key))

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(_fold(key), value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(_fold(key))

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(_fold(key), default)

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        return super().pop(_fold(key), *default)

    def setdefault(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().setdefault(_fold(key), default)


class LossyIds(JsonFileStore):
    """Keys runs, steps and deliveries by a folded id (case, Unicode form, spaces, ``-_.``)."""

    def _read(self) -> dict[str, Any]:
        doc = super()._read()
        for part in ("runs", "steps", "signals"):
            doc[part] = _FoldedKeys(doc[part])
        return doc


class PolledNotify(JsonFileStore):
    """Declares ``notify`` but only polls: the base class's local wake-up makes a delivery through
    the same store object look pushed."""

    capabilities = frozenset({*JsonFileStore.capabilities, Capability.NOTIFY})

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        recorded = await super().send_signal(run_id, name, delivery_id, payload)
        if recorded:
            self.wake_local_waiters(run_id, name)
        return recorded


class InPlaceWrites(JsonFileStore):
    """Rewrites its file in place (truncate, then write) on a slow disk: a crash mid-write leaves
    half a document."""

    def _write(self, doc: dict[str, Any]) -> None:
        text = json.dumps(doc, ensure_ascii=False)
        with open(self.path, "w", encoding="utf-8") as file:
            file.write(text[: len(text) // 2])
            file.flush()
            time.sleep(0.05)
            file.write(text[len(text) // 2 :])


class TornReads(InPlaceWrites):
    """Writes in place, and reads without the lock (so readers never wait, it was thought)."""

    def _transact_sync(self, change: Callable[[dict[str, Any]], T], write: bool) -> T:
        if write:
            return super()._transact_sync(change, write)
        return change(self._read())


class DropsEarlySignals(JsonFileStore):
    """``create_run`` starts the new run with no deliveries, dropping those sent before it."""

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        def change(doc: dict[str, Any]) -> tuple[RunRecord, bool]:
            existing = doc["runs"].get(run.run_id)
            if existing is not None:
                return example._run_from(existing), False
            doc["runs"][run.run_id] = example._run_to(run)
            doc["signals"][run.run_id] = []
            return run, True

        return await self._transact(change)


class MismatchedCapabilities(JsonFileStore):
    """Its plugin declares fewer capabilities than the class (``durable stores`` shows those)."""


class MisspeltCapability(JsonFileStore):
    """Declares ``multiprocess``: every multi-process test would skip, silently."""

    capabilities = frozenset({Capability.PERSISTENT, "multiprocess"})


class IgnoresCreate(JsonFileStore):
    """``open(create=False)`` creates the file anyway."""

    async def open(self, *, create: bool = True) -> None:
        await super().open()


class ResetsAnyRun(JsonFileStore):
    """``reset_run`` makes any run pending, a running or completed one too."""

    async def reset_run(self, run_id: str) -> RunRecord | None:
        def change(doc: dict[str, Any]) -> RunRecord | None:
            data = doc["runs"].get(run_id)
            if data is None:
                return None
            data.update(status="pending", cancel_requested=False, error=None, wake_at=None, activity=None)
            data["updated_at"] = time.time()
            return example._run_from(data)

        return await self._transact(change)


class OrdersStepsByStart(JsonFileStore):
    """``load_steps`` orders checkpoints by ``started_at``."""

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        return sorted(await super().load_steps(run_id), key=lambda step: step.started_at)


class RenewalTouchesUpdatedAt(JsonFileStore):
    """``renew_lease`` moves ``updated_at``: every heartbeat looks like a change."""

    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        await super().renew_lease(lease, lease_seconds, activity=activity)

        def touch(doc: dict[str, Any]) -> RunRecord:
            doc["runs"][lease.run_id]["updated_at"] = time.time()
            return example._run_from(doc["runs"][lease.run_id])

        return await self._transact(touch)


@dataclass(frozen=True)
class Defect:
    store: str
    """The planted store class, above."""
    catches: tuple[str, ...]
    """The contract tests that must fail on it (a parametrized test: ``name[param]``)."""
    says: str
    """What their failure message must say."""
    shared_data: bool = False
    """The factory gives every fresh store the same file (a backend whose isolated_url is wrong)."""


DEFECTS: dict[str, Defect] = {
    # 1: hangs
    "holds_a_blocking_lock_across_an_await": Defect(
        "BlockingLock", ("test_of_many_concurrent_creators_exactly_one_creates_the_run",), "time limit"
    ),
    "refuses_to_claim_a_failed_run": Defect(
        "RefusesFailedClaims",
        (
            "test_a_released_run_that_is_not_final_can_be_claimed[failed]",
            "test_a_claim_succeeds_exactly_for_claimable_runs_nobody_holds_a_live_lease_on",
        ),
        "CLAIMABLE",
    ),
    # 2: ids that collide after normalisation
    "folds_ids_into_one_key": Defect(
        "LossyIds",
        (
            "test_runs_whose_ids_look_alike_are_stored_side_by_side_and_read_back_as_themselves",
            "test_deleting_a_run_leaves_its_lookalikes_alone",
        ),
        "look-alike",
    ),
    # 3: notify that cannot fail
    "declares_notify_but_polls": Defect(
        "PolledNotify",
        (
            "test_a_delivery_through_another_store_object_wakes_a_long_waiting_waiter_promptly",
            "test_a_delivery_from_another_process_wakes_a_long_waiting_waiter_promptly",
        ),
        "by a poll, not a notification",
    ),
    # 4: torn writes
    "writes_its_file_in_place": Defect(
        "InPlaceWrites",
        ("test_a_process_killed_while_writing_leaves_every_record_whole",),
        "the reopened store shows",
    ),
    "reads_without_the_lock_while_writing_in_place": Defect(
        "TornReads", ("test_a_reader_never_sees_half_of_a_write_another_process_is_making",), "torn or failed"
    ),
    # 5: a signal sent before its run exists
    "drops_signals_sent_before_the_run_was_created": Defect(
        "DropsEarlySignals",
        ("test_a_signal_sent_before_its_run_is_created_is_kept_when_the_run_is_created",),
        "the delivery of signal 'approve' (delivery id 'hook-1') sent to run 'early-pending'",
    ),
    # 6: two declarations of capabilities
    "declares_other_capabilities_in_its_plugin": Defect(
        "MismatchedCapabilities",
        ("test_the_plugin_declares_the_capabilities_the_store_class_declares",),
        "declare one frozenset and use it in both",
    ),
    "misspells_a_capability": Defect(
        "MisspeltCapability", ("test_the_store_declares_only_capabilities_the_suite_knows",), "'multiprocess'"
    ),
    # 7: where test stores go
    "gives_every_test_store_the_same_data": Defect(
        "JsonFileStore", ("test_two_fresh_stores_share_no_data",), "gave two fresh stores the same data", True
    ),
    # 8: does this store exist, may I create it
    "creates_its_file_when_told_not_to": Defect(
        "IgnoresCreate",
        ("test_opening_data_that_does_not_exist_without_create_raises_store_not_found_and_creates_nothing",),
        "DID NOT RAISE",
    ),
    # the written spec
    "resets_runs_that_are_not_failed_or_cancelled": Defect(
        "ResetsAnyRun",
        ("test_a_reset_makes_exactly_the_failed_and_cancelled_runs_pending_and_leaves_the_others_alone",),
        "status <RunStatus.PENDING: 'pending'> (expected <RunStatus.RUNNING: 'running'>)",
    ),
    "orders_steps_by_their_start": Defect(
        "OrdersStepsByStart", ("test_steps_load_in_the_order_they_finished",), "by finished_at"
    ),
    "moves_updated_at_on_a_heartbeat": Defect(
        "RenewalTouchesUpdatedAt",
        ("test_every_write_that_changes_a_run_sets_updated_at_to_now_and_a_renewal_leaves_it",),
        "a heartbeat is not a change",
    ),
}

LIMIT = 10.0
"""The inner run's per-test time limit (``--durable-timeout``): the hanging store must fail by it."""
INNER_TIMEOUT = 600.0
"""The whole inner run, at most (it takes about a minute)."""

INNER_CONFTEST = """
from durable._plugins import get_plugin_manager
from durable.hookspecs import StoreBackend, hookimpl
from durable.store import Capability
from test_contract_teeth import MismatchedCapabilities


class MismatchedPlugin:
    @hookimpl
    def durable_store_backends(self):
        # The class says persistent and multi-process; the plugin (what `durable stores` shows) less.
        return [StoreBackend("mismatched", ("mismatched",), "planted defect", MismatchedCapabilities,
                             capabilities=frozenset({Capability.PERSISTENT}))]

    @hookimpl
    def durable_store_from_url(self, url, options):
        return MismatchedCapabilities.from_url(url) if url.startswith("mismatched:") else None


get_plugin_manager().register(MismatchedPlugin(), name="planted-mismatch")
"""

INNER_TESTS = """
import uuid

import pytest

import test_contract_teeth as planted
from durable_contract_tests import StoreContract


def contract_for(cls, shared_data):
    class Contract(StoreContract):
        @pytest.fixture
        def store_factory(self, tmp_path):
            def make(same_data_as=None):
                if same_data_as is not None:
                    return cls(same_data_as.path)
                return cls(tmp_path / ("shared.json" if shared_data else f"{uuid.uuid4().hex}.json"))

            return make

    return Contract


TestCorrect = contract_for(planted.JsonFileStore, False)
"""


def _inner_class(name: str) -> str:
    return "Test" + "".join(part.title() for part in name.split("_"))


def _selection() -> str:
    """A ``-k`` expression: each defect's class with its tests, and the correct store with all."""

    def tests(names: set[str]) -> str:
        return " or ".join(sorted(name.split("[")[0] for name in names))

    every = {test for defect in DEFECTS.values() for test in defect.catches}
    parts = [f"(TestCorrect and ({tests(every)}))"]
    parts += [f"({_inner_class(name)} and ({tests(set(d.catches))}))" for name, d in DEFECTS.items()]
    return " or ".join(parts)


@dataclass(frozen=True)
class Outcome:
    failed: bool
    skipped: bool
    message: str
    seconds: float


@dataclass(frozen=True)
class InnerRun:
    outcomes: dict[tuple[str, str], Outcome]
    """By (class, test name with its parameters)."""
    output: str
    seconds: float


@pytest.fixture(scope="module")
def inner_run(tmp_path_factory: pytest.TempPathFactory) -> InnerRun:
    """The suite over every planted store (and the correct one), in one pytest process."""
    directory = tmp_path_factory.mktemp("teeth")
    (directory / "conftest.py").write_text(INNER_CONFTEST)
    classes = "".join(
        f"{_inner_class(name)} = contract_for(planted.{defect.store}, {defect.shared_data})\n"
        for name, defect in DEFECTS.items()
    )
    (directory / "test_planted.py").write_text(INNER_TESTS + classes)
    report = directory / "report.xml"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("DURABLE_TEST_TIMEOUT", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", f"--junitxml={report}",
         "--durable-timeout", str(LIMIT), "-k", _selection(), "test_planted.py"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=INNER_TIMEOUT,
    )  # fmt: skip
    seconds = time.monotonic() - started
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        outcomes[(case.get("classname", "").rsplit(".", 1)[-1], case.get("name", ""))] = Outcome(
            problem is not None,
            case.find("skipped") is not None,
            "" if problem is None else f"{problem.get('message', '')}\n{problem.text or ''}",
            float(case.get("time", "0")),
        )
    return InnerRun(outcomes, done.stdout + done.stderr, seconds)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DEFECTS))
def test_the_suite_fails_a_store_that(inner_run: InnerRun, name: str) -> None:
    defect = DEFECTS[name]
    for test in defect.catches:
        found = inner_run.outcomes.get((_inner_class(name), test))
        assert found is not None, f"{test} did not run for {defect.store}:\n{inner_run.output[-3000:]}"
        assert found.failed, f"{test} passed on {defect.store}, whose defect it is meant to catch"
        assert defect.says in found.message, (
            f"{test} failed on {defect.store} saying:\n{found.message[:3000]}"
        )
        # Within its time limit, the watchdog's grace included: no test hangs the run.
        assert found.seconds < LIMIT + 5, f"{test} took {found.seconds:.1f} s on {defect.store}"


@pytest.mark.slow
def test_the_unchanged_example_store_passes_every_test_that_catches_a_defect(inner_run: InnerRun) -> None:
    every = {test for defect in DEFECTS.values() for test in defect.catches}
    needs_notify = set(DEFECTS["declares_notify_but_polls"].catches)  # the example store polls
    for test in sorted(every):
        found = inner_run.outcomes.get(("TestCorrect", test))
        assert found is not None and not found.failed and found.skipped is (test in needs_notify), (
            f"{test} on the unchanged example store: {found}\n{inner_run.output[-3000:]}"
        )


@pytest.mark.slow
def test_a_store_authors_run_prints_no_pytest_asyncio_loop_scope_warning(inner_run: InnerRun) -> None:
    assert '"asyncio_default_fixture_loop_scope" is unset' not in inner_run.output
    assert "PytestDeprecationWarning" not in inner_run.output


@pytest.mark.slow
def test_the_hanging_store_is_reported_with_the_stacks_of_its_threads_and_tasks(inner_run: InnerRun) -> None:
    name = "holds_a_blocking_lock_across_an_await"
    [test] = DEFECTS[name].catches
    message = inner_run.outcomes[(_inner_class(name), test)].message
    assert f"time limit of {LIMIT:g} s per test" in message
    assert "--- main thread (most recent call last):" in message
    assert "in create_run" in message and "with self._blocking:" in message  # where it blocked
    assert "The event loop's tasks:" in message


# -- the engine: a store refusing a claim it must grant is reported, not waited for ------------


def _apps(path: Path, store_class: type[JsonFileStore]) -> tuple[Workflow, Any, list[str], dict[str, bool]]:
    wf = Workflow("teeth", db=store_class(path), default_retries=0, default_backoff=constant(0))
    executed: list[str] = []
    fail = {"now": True}

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        executed.append(f"job-{n}")
        if fail["now"]:
            raise RuntimeError("first attempt fails")
        return n

    return wf, job, executed, fail


async def test_the_engine_reports_a_store_that_refuses_to_claim_a_failed_run(tmp_path: Path) -> None:
    wf, job, executed, fail = _apps(tmp_path / "store.json", RefusesFailedClaims)
    with pytest.raises(RuntimeError, match="first attempt fails"):
        await job(n=1)
    fail["now"] = False
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        await asyncio.wait_for(job(n=1), 10.0)  # before: waited forever, then "executed by None"
    assert time.monotonic() - started < 5.0
    message = str(caught.value)
    assert "refused 3 claims of run 'job-1' (failed, no live lease)" in message
    assert "claim_run must take a run in durable._lifecycle.CLAIMABLE" in message
    assert "None" not in message.split(":")[0]
    assert caught.value.run_id == "job-1"
    assert executed == ["job-1"]
    await wf.close()


async def test_the_engine_gives_up_on_an_expired_lease_its_store_will_not_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "CLOCK_TOLERANCE", 1.0, raising=False)
    wf, _, executed, _ = _apps(tmp_path / "store.json", RefusesExpiredClaims)
    store = await wf.get_store()
    # A run whose owner died a minute ago on another host: its lease expired, nobody renews it.
    now = time.time()
    inputs, digest = _codec.dumps_and_digest({"n": 2})
    await store.create_run(
        RunRecord("job-2", "job", RunStatus.RUNNING, inputs, digest, now - 60, now - 60,
                  owner="gone-host:1", lease_token=1, lease_expires_at=now - 45)
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        await asyncio.wait_for(wf.resume("job-2"), 10.0)  # before: waited forever
    assert 1.0 <= time.monotonic() - started < 5.0
    assert "refused to claim run 'job-2' (running)" in str(caught.value)
    assert "'gone-host:1'" in str(caught.value) and "claim_run must take a run whose lease" in str(
        caught.value
    )
    assert executed == []
    await wf.close()


# -- the CLI: a URL naming no store is an error, and creates none ------------------------------


@contextmanager
def _no_schema_left(url: str, schema: str) -> Iterator[None]:
    import asyncpg

    async def exists() -> bool:
        conn = await asyncpg.connect(url)
        try:
            found = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema)
            if found:
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')  # left by a failing run
            return bool(found)
        finally:
            await conn.close()

    yield
    assert not asyncio.run(exists()), f"the CLI created schema {schema!r}"


@contextmanager
def _no_keys_left(url: str, prefix: str) -> Iterator[None]:
    import redis.asyncio as aioredis

    async def keys() -> list[Any]:
        client = aioredis.from_url(url)
        try:
            found = [key async for key in client.scan_iter(match=f"{prefix}:*")]
            if found:
                await client.delete(*found)  # left by a failing run
            return found
        finally:
            await client.aclose()

    yield
    assert not asyncio.run(keys()), f"the CLI created keys under prefix {prefix!r}"


def _one_line_error(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr.removeprefix("error: ").strip()


def test_the_cli_creates_no_file_or_directory_for_a_mistyped_file_store_url(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "store.json"
    message = _one_line_error("runs", "list", "--store", f"jsonfile:///{missing}")
    assert message == f"store file {str(missing)!r} does not exist (check --store)"
    assert not (tmp_path / "typo").exists()


def test_the_cli_creates_no_schema_for_a_postgres_url_naming_none() -> None:
    base = os.environ.get("DURABLE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("DURABLE_TEST_POSTGRES_URL is not set")
    schema = f"teeth_{secrets.token_hex(4)}"
    with _no_schema_left(base, schema):
        message = _one_line_error("runs", "list", "--store", f"{base}?schema={schema}")
    assert f"schema {schema!r} holds no durable store (check --store)" in message


def test_the_cli_creates_no_keys_for_a_redis_url_naming_no_store() -> None:
    base = os.environ.get("DURABLE_TEST_REDIS_URL")
    if not base:
        pytest.skip("DURABLE_TEST_REDIS_URL is not set")
    prefix = f"teeth-{secrets.token_hex(4)}"
    with _no_keys_left(base, prefix):
        message = _one_line_error("runs", "list", "--store", f"{base}?prefix={prefix}")
    assert f"no durable store is stored under key prefix {prefix!r} (check --store)" in message


def test_the_cli_opens_a_store_that_exists(tmp_path: Path) -> None:
    path = tmp_path / "store.json"

    async def create() -> None:
        store = JsonFileStore(path)
        await store.open()
        await store.create_run(_record("run-1"))
        await store.close()

    asyncio.run(create())
    result = CliRunner().invoke(cli, ["runs", "list", "--store", f"jsonfile:///{path}", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["run_id"] for row in json.loads(result.stdout)] == ["run-1"]


def _record(run_id: str) -> RunRecord:
    now = time.time()
    return RunRecord(run_id, "wf", RunStatus.PENDING, "{}", "d", now, now)


# -- Store.__repr__: where the store is, without its password ------------------------------------


class _Secretive(JsonFileStore):
    """Made from a URL holding a password; the base class's repr is all it has."""

    @classmethod
    def from_url(cls, url: str) -> _Secretive:
        return cls("/var/lib/app/store.json")


def test_a_store_made_from_a_url_shows_the_url_without_its_password() -> None:
    from durable._plugins import get_plugin_manager
    from durable.hookspecs import StoreBackend, hookimpl

    class Plugin:
        @hookimpl
        def durable_store_backends(self) -> list[StoreBackend]:
            return [StoreBackend("secretive", ("files",), "test", _Secretive)]

        @hookimpl
        def durable_store_from_url(self, url: str, options: dict[str, Any]) -> _Secretive | None:
            return _Secretive.from_url(url) if url.startswith("files:") else None

    manager = get_plugin_manager()
    manager.register(Plugin(), name="secretive-plugin")
    try:
        store = manager.store_from_url("files://admin:hunter22@nas/var/lib/app?token=t0ken22")
    finally:
        manager.unregister("secretive-plugin")
    assert repr(store) == "<_Secretive files://admin:***@nas/var/lib/app?token=***>"
    assert repr(_Secretive("/var/lib/app/store.json")) == "<_Secretive '/var/lib/app/store.json'>"
