"""A Redis that keeps nothing on disk (issue 15, item 5): said at open, refused on request, and a
loss of its data is reported as such, not as another executor owning the run or an unknown run.

Every test starts a redis-server of its own (``--save "" --appendonly no`` unless it says
otherwise) and restarts or stops only that one.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import RedisServer, free_port

from durable import Workflow
from durable.errors import ConfigurationError, LeaseLost, StoreError, UnknownRunError
from durable_redis import RedisDataLost, RedisStore

pytestmark = pytest.mark.slow

PASSWORD = "s3cret-pw"
NOTHING_ON_DISK = ("--save", "", "--appendonly", "no")


class Server:
    """A redis-server of the test's own, started with ``args`` (nothing on disk by default)."""

    def __init__(self, directory: Path, *args: str, password: str | None = None) -> None:
        self.port, self.dir, self.args, self.password = free_port(), directory, args, password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen([*command, *self.args], stdout=subprocess.DEVNULL)
        for _ in range(200):
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout:
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def server(servers: list[Server], tmp_path: Path, *args: str, password: str | None = None) -> Server:
    directory = tmp_path / f"redis-{len(servers)}"
    directory.mkdir()
    made = Server(directory, *args, password=password)
    made.start()
    servers.append(made)
    return made


def warnings_of(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


# -- at open ------------------------------------------------------------------------------------


async def test_a_server_that_keeps_nothing_on_disk_is_logged_once_naming_it_and_its_settings(
    servers: list[Server], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volatile = server(servers, tmp_path, *NOTHING_ON_DISK, password=PASSWORD)
    caplog.set_level(logging.INFO, logger="durable_redis")
    for _ in range(3):  # three stores on one server, as a process opens one per event loop
        store = RedisStore(volatile.url)
        await store.open()
        assert store.durability() == (
            False,
            "at risk: the server keeps nothing on disk: a restart loses every run, completed ones "
            "included (appendonly no, save '', maxmemory-policy noeviction)",
        )
        await store.close()
    [warning] = warnings_of(caplog, "keeps nothing on disk")
    assert f"redis://:***@127.0.0.1:{volatile.port}/0" in warning
    assert "appendonly no, save ''" in warning and "require_persistence=True" in warning
    assert PASSWORD not in caplog.text


async def test_require_persistence_refuses_a_server_that_keeps_nothing_on_disk(
    servers: list[Server], tmp_path: Path
) -> None:
    volatile = server(servers, tmp_path, *NOTHING_ON_DISK)
    with pytest.raises(ConfigurationError, match=r"keeps nothing on disk.*require_persistence=True"):
        await RedisStore(volatile.url, require_persistence=True).open()
    wf = Workflow("refused", db=volatile.url + "?require_persistence=1")
    with pytest.raises(ConfigurationError, match=f"127.0.0.1:{volatile.port}.*appendonly no"):
        await wf.get_run("anything")
    await wf.close()


async def test_a_server_that_keeps_snapshots_only_is_logged_and_refused_on_request(
    servers: list[Server], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshots = server(servers, tmp_path, "--save", "3600 1", "--appendonly", "no")
    caplog.set_level(logging.WARNING, logger="durable_redis")
    store = RedisStore(snapshots.url)
    await store.open()
    await store.close()
    [warning] = warnings_of(caplog, "snapshots only")
    assert "a crash loses everything written since the last snapshot" in warning
    assert "save '3600 1'" in warning
    with pytest.raises(ConfigurationError, match="snapshots only"):
        await RedisStore(snapshots.url, require_persistence=True).open()


async def test_a_server_that_evicts_any_key_is_logged(
    servers: list[Server], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    evicting = server(servers, tmp_path, "--appendonly", "yes", "--maxmemory-policy", "allkeys-lru")
    caplog.set_level(logging.WARNING, logger="durable_redis")
    store = RedisStore(evicting.url)
    await store.open()
    await store.close()
    assert len(warnings_of(caplog, "evicts keys when its memory is full")) == 1


async def test_a_server_with_an_append_only_file_is_neither_logged_nor_refused(
    servers: list[Server], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer(tmp_path)  # appendonly yes, appendfsync always
    redis.start()
    try:
        caplog.set_level(logging.INFO, logger="durable_redis")
        store = RedisStore(redis.url, require_persistence=True)
        await store.open()
        safe, line = store.durability()
        await store.close()
    finally:
        redis.stop()
    assert safe is True and line.startswith("kept on disk (appendonly yes")
    assert not [r for r in caplog.records if r.name == "durable_redis"]


async def test_a_server_whose_config_command_is_disabled_is_reported_as_not_checked(
    servers: list[Server], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    managed = server(servers, tmp_path, *NOTHING_ON_DISK, "--rename-command", "CONFIG", "")
    caplog.set_level(logging.INFO, logger="durable_redis")
    store = RedisStore(managed.url)
    await store.open()
    safe, line = store.durability()
    assert safe is None and line.startswith("could not be checked (CONFIG GET appendonly answered ")
    assert await store.get_run("anything") is None  # the store works: only its persistence is unknown
    await store.close()
    assert not warnings_of(caplog, "")
    assert any("persistence could not be checked" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigurationError, match="could not be checked"):
        await RedisStore(managed.url, require_persistence=True).open()


# -- after a loss -------------------------------------------------------------------------------


async def test_a_restart_that_loses_everything_mid_run_is_reported_as_data_loss(
    servers: list[Server], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volatile = server(servers, tmp_path, *NOTHING_ON_DISK)
    caplog.set_level(logging.WARNING)
    wf = Workflow("lost", db=volatile.url, default_retries=0)
    executed: Counter[str] = Counter()
    midway, resume = asyncio.Event(), asyncio.Event()

    @wf.task
    async def step(name: str) -> str:
        executed[name] += 1
        if name == "b":
            midway.set()
            await resume.wait()
        return name

    @wf.workflow(id="busy")
    async def busy() -> list[str]:
        return [await step("a"), await step("b"), await step("c")]

    @wf.workflow(id="done")
    async def done() -> str:
        return await step("d")

    assert await done() == "d"
    waiter = Workflow("lost", db=volatile.url)  # another process, which saw the run complete
    assert await waiter.wait_for("done") == "d"
    poller = RedisStore(volatile.url)  # an idle worker's store
    await poller.open()

    running = asyncio.ensure_future(busy())
    await midway.wait()
    volatile.restart()  # nothing on disk: every key is gone
    resume.set()

    with pytest.raises(RedisDataLost, match=r"lost its data \(restart without persistence\?\)") as lost:
        await running
    assert not isinstance(lost.value, LeaseLost) and isinstance(lost.value, StoreError)
    assert lost.value.run_id == "busy"
    with pytest.raises(RedisDataLost, match="run 'done' is gone"):
        await waiter.wait_for("done")
    assert await poller.due_runs(time.time()) == []
    assert await poller.due_runs(time.time()) == []
    # Step b ran once and its checkpoint found the run gone: nothing ran again, c never started.
    assert executed == {"a": 1, "b": 1, "d": 1}
    # Each of the three stores said it once, at WARNING, naming the server and its settings.
    said = warnings_of(caplog, "durable-redis: the Redis server at")
    assert len(said) == 3, said
    assert all(f"127.0.0.1:{volatile.port}" in line and "appendonly no, save ''" in line for line in said)
    assert not warnings_of(caplog, "another executor owns the run")

    # The store carries on with new runs; the loss is not reported again.
    @wf.workflow(id="after")
    async def after() -> str:
        return await step("e")

    assert await after() == "e"
    assert len(warnings_of(caplog, "durable-redis: the Redis server at")) == 3
    await poller.close()
    await waiter.close()
    await wf.close()


async def test_a_store_opened_after_the_loss_knows_nothing_of_it(
    servers: list[Server], tmp_path: Path
) -> None:
    volatile = server(servers, tmp_path, *NOTHING_ON_DISK)
    first = RedisStore(volatile.url)
    await first.open()
    await first.close()
    volatile.restart()
    fresh = Workflow("later", db=volatile.url)
    with pytest.raises(UnknownRunError):  # it never saw the run: an unknown run, as before
        await fresh.wait_for("never-seen")
    await fresh.close()


async def test_deleting_every_key_on_purpose_is_not_a_loss(servers: list[Server], tmp_path: Path) -> None:
    volatile = server(servers, tmp_path, *NOTHING_ON_DISK)
    store = RedisStore(volatile.url)
    await store.open()
    await store.drop_all()
    assert await store.get_run("gone") is None
    await store.close()


# -- durable stores --check ---------------------------------------------------------------------


def check(url: str, *options: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from durable.cli import cli

    result = CliRunner().invoke(cli, ["stores", "--check", url, *options])
    return result.exit_code, result.output


def test_stores_check_reports_a_server_that_keeps_nothing_and_exits_1(
    servers: list[Server], tmp_path: Path
) -> None:
    volatile = server(servers, tmp_path, *NOTHING_ON_DISK, password=PASSWORD)
    code, output = check(volatile.url)
    assert (code, output.splitlines()) == (
        1,
        [
            f"redis://:***@127.0.0.1:{volatile.port}/0: opened",
            "durability: at risk: the server keeps nothing on disk: a restart loses every run, completed "
            "ones included (appendonly no, save '', maxmemory-policy noeviction)",
        ],
    )
    code, output = check(volatile.url, "--json")
    assert code == 1 and '"restart_keeps_data": false' in output and PASSWORD not in output


def test_stores_check_reports_a_server_with_an_append_only_file(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        code, output = check(redis.url)
    finally:
        redis.stop()
    assert code == 0
    assert output.splitlines()[1].startswith("durability: kept on disk (appendonly yes, save '',")


def test_stores_check_says_when_it_could_not_check(servers: list[Server], tmp_path: Path) -> None:
    managed = server(servers, tmp_path, *NOTHING_ON_DISK, "--rename-command", "CONFIG", "")
    code, output = check(managed.url)
    assert code == 0
    assert output.splitlines()[1].startswith(
        "durability: could not be checked (CONFIG GET appendonly answered"
    )


def test_stores_check_of_an_unreachable_server_is_one_error_line(tmp_path: Path) -> None:
    code, output = check(f"redis://127.0.0.1:{free_port()}/0?operation_timeout=1")
    assert code == 1 and output.startswith("error: Redis at redis://127.0.0.1:") and output.count("\n") == 1
