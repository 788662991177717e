"""examples/streaming_agent: a run's stream relayed over SSE by a web process, written by worker
processes, read by a client and by a real Chromium; workers SIGKILLed mid-stream, connections
dropped and resumed from their last offset.

Every process is real (uvicorn, ``durable worker``) and they share one SQLite file (the
reconnect test also one Postgres schema and one Redis key prefix). Counts are
exact: every offset once, every token once, and which worker generated which token (the
side-effect log).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the streaming example needs starlette and uvicorn")
pytest.importorskip("uvicorn", reason="the streaming example needs starlette and uvicorn")
pytest.importorskip("pydantic_ai", reason="the streaming example runs a pydantic-ai agent")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

from streaming_agent import client  # noqa: E402
from streaming_agent.agent import REPLY, STREAM, tokens  # noqa: E402

from durable import Workflow  # noqa: E402
from durable._plugins import get_plugin_manager  # noqa: E402
from durable.store import Capability  # noqa: E402
from durable_contract_tests import server_url  # noqa: E402

HANG_AT = 6
CHROMIUM = os.environ.get("DURABLE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

pytestmark = pytest.mark.slow


class Deployment:
    """The example's processes around one SQLite file: a web server, workers, a side-effect log."""

    def __init__(self, tmp: Path, store: str | None = None) -> None:
        self.store = store or f"sqlite:///{tmp / 'streaming.db'}"
        self.log = tmp / "agent.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(EXAMPLES),
            "DURABLE_STORE": self.store,
            "STREAMING_AGENT_LOG": str(self.log),
        }
        self.processes: list[subprocess.Popen[str]] = []
        self.url = ""
        self.web: subprocess.Popen[str] | None = None

    def spawn(self, args: list[str], stderr: int | None = None, **env: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(args, cwd=EXAMPLES, env={**self.env, **env}, text=True, stderr=stderr)
        self.processes.append(process)
        return process

    def start_web(self, port: int = 0) -> str:
        args = ["-m", "uvicorn", "streaming_agent.web:app", "--host", "127.0.0.1", "--port", str(port)]
        # Its stderr is read up to the line naming the port; little follows (shutdown lines).
        self.web = web = self.spawn([sys.executable, *args, "--no-access-log"], stderr=subprocess.PIPE)
        assert web.stderr is not None
        for line in web.stderr:
            found = re.search(r"Uvicorn running on (http://\S+)", line)
            if found:
                self.url = found.group(1)
                return self.url
        raise AssertionError(f"uvicorn exited with {web.wait()}")

    def worker(self, **env: str) -> subprocess.Popen[str]:
        durable = str(Path(sys.executable).with_name("durable"))
        return self.spawn([durable, "worker", "streaming_agent.agent:wf", "--poll", "0.05", "-q"], **env)

    def hung_worker(self) -> subprocess.Popen[str]:
        return self.worker(STREAMING_AGENT_HANG=str(HANG_AT))

    def wait_for_log(self, text: str) -> None:
        deadline = time.monotonic() + 60
        while text not in self.lines_text():
            assert time.monotonic() < deadline, f"no {text!r} in the log:\n{self.lines_text()}"
            time.sleep(0.02)

    def lines_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def kill(self, process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL

    def generated(self) -> list[list[int]]:
        """The token indexes the model generated, per worker process in order (the side-effect log)."""
        by_pid: dict[str, list[int]] = {}
        for pid, n in re.findall(r"^\[pid (\d+)\] token (\d+)$", self.lines_text(), re.MULTILINE):
            by_pid.setdefault(pid, []).append(int(n))
        return list(by_pid.values())

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    running = Deployment(tmp_path)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh store of each kind that keeps streams (a Postgres schema or a Redis key
    prefix of its own, removed after), a SQLite file otherwise."""
    kind, tag = request.param, f"stream_example_{os.getpid()}_{secrets.token_hex(3)}"
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'streaming.db'}"
        return
    base = server_url(kind, f"{kind}://127.0.0.1")
    url = f"{base}{'&' if '?' in base else '?'}" + (
        f"schema={tag}" if kind == "postgres" else f"prefix={tag}&ttl=0"
    )
    store = get_plugin_manager().store_from_url(url)
    if Capability.STREAMS not in store.capabilities:
        pytest.skip(f"{store!r} does not keep streams yet")
    try:
        yield url
    finally:

        async def remove() -> None:
            await store.open()
            try:
                await (store.drop_schema() if kind == "postgres" else store.drop_all())  # type: ignore[attr-defined]
            finally:
                await store.close()

        asyncio.run(remove())


def store_view(store: str, run_id: str) -> tuple[str, list[tuple[int, Any]]]:
    """The run's status and every item of its stream, read straight from the store."""

    async def read() -> tuple[str, list[tuple[int, Any]]]:
        async with Workflow("reader", db=store) as wf:
            run = await wf.get_run(run_id)
            assert run is not None
            items = [item async for item in wf.read_stream(run_id, STREAM, timeout=0)]
            return str(run.status), items

    # In a thread of its own: the sync Playwright API owns the test thread's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result(60)


def text_and_offsets(received: list[tuple[int | str, Any]]) -> tuple[list[int | str], str]:
    return [at for at, _ in received], "".join(client.text_of(event) for at, event in received if at != "end")


def assert_every_event_once(received: list[tuple[int | str, Any]], store: str, run_id: str) -> None:
    """What the client got is the run's stream, item for item, ending with ``end``; the stream
    holds the reply's tokens once each, in order (an append repeated after the crash would show)."""
    status, items = store_view(store, run_id)
    assert status == "completed"
    assert [at for at, _ in items] == list(range(len(items)))
    assert [client.text_of(event) for _, event in items if client.text_of(event)] == tokens()
    assert received == [*items, ("end", {"status": "completed"})]


def test_tokens_arrive_while_the_run_runs_and_survive_a_replaced_worker(deployment: Deployment) -> None:
    url = deployment.start_web()
    first = deployment.hung_worker()
    run_id = client.start(url, "hello")
    stream = client.events(url, run_id)
    received = [next(stream) for _ in range(HANG_AT)]
    # Every token so far arrived while the run cannot have ended: its worker hangs before the next.
    assert store_view(deployment.store, run_id)[0] == "running"
    assert [at for at, _ in received] == list(range(HANG_AT))
    deployment.wait_for_log(f"hangs before token {HANG_AT}")
    deployment.kill(first)
    deployment.worker()
    # The same connection carries on: the web process relays what the second worker writes.
    received += list(stream)
    assert text_and_offsets(received)[1] == REPLY
    assert_every_event_once(received, deployment.store, run_id)
    # The killed request had no checkpoint: the second worker ran it again from its first token,
    # and appended only the events past those the first had appended.
    assert deployment.generated() == [list(range(HANG_AT)), list(range(len(tokens())))]


def test_a_client_reconnecting_after_a_killed_worker_gets_the_rest_exactly_once(
    any_store: str, tmp_path: Path
) -> None:
    deployment = Deployment(tmp_path, any_store)
    try:
        reconnect_after_a_killed_worker(deployment)
    finally:
        deployment.close()


def reconnect_after_a_killed_worker(deployment: Deployment) -> None:
    url = deployment.start_web()
    first = deployment.hung_worker()
    run_id = client.start(url, "hello")
    received: list[tuple[int | str, Any]] = []
    for item in client.events(url, run_id):
        received.append(item)
        if item[0] == HANG_AT - 1:
            break  # the connection drops (closed by the client) with the worker hung
    deployment.wait_for_log(f"hangs before token {HANG_AT}")
    deployment.kill(first)
    deployment.worker()
    last = received[-1][0]
    assert isinstance(last, int)
    received += list(client.events(url, run_id, last_id=last))  # Last-Event-ID: last
    assert text_and_offsets(received)[1] == REPLY
    assert_every_event_once(received, deployment.store, run_id)
    assert deployment.generated() == [list(range(HANG_AT)), list(range(len(tokens())))]
    shown_by_the_cli(deployment.store, run_id, [event for _, event in received[:-1]])


def shown_by_the_cli(store: str, run_id: str, events: list[Any]) -> None:
    """``durable stream`` prints the run's stream as the relay sent it; ``durable runs show``
    lists it (the agent writes it from its model request steps: only a store that lists streams
    knows it is there)."""
    durable = str(Path(sys.executable).with_name("durable"))
    printed = subprocess.run(
        [durable, "stream", run_id, STREAM, "--store", store, "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert [json.loads(line) for line in printed.stdout.splitlines()] == [
        {"offset": i, "value": event} for i, event in enumerate(events)
    ]
    shown = subprocess.run(
        [durable, "runs", "show", run_id, "--store", store, "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    listed = json.loads(shown.stdout)["streams"]
    if lists_streams(store, run_id):
        assert listed == [{"key": STREAM, "items": len(events), "closed": False}]
    else:
        assert listed == []


def lists_streams(store: str, run_id: str) -> bool:
    async def ask() -> bool:
        async with Workflow("reader", db=store) as wf:
            return await (await wf.get_store()).list_streams(run_id) is not None

    return asyncio.run(ask())


def test_a_reconnect_from_any_earlier_offset_resumes_right_after_it(deployment: Deployment) -> None:
    url = deployment.start_web()
    first = deployment.hung_worker()
    run_id = client.start(url, "hello")
    stream = client.events(url, run_id)
    seen = [next(stream) for _ in range(HANG_AT)]
    stream.close()
    deployment.wait_for_log(f"hangs before token {HANG_AT}")
    deployment.kill(first)
    # Reconnects while no worker runs: the relay has what was written, then waits.
    again = client.events(url, run_id, last_id=1)
    assert [next(again) for _ in range(HANG_AT - 2)] == seen[2:]
    deployment.worker()
    rest = list(again)
    assert_every_event_once([*seen, *rest], deployment.store, run_id)
    # A finished run's stream read again from 0 ends at once, after every item.
    replayed = list(client.events(url, run_id))
    assert replayed == [*seen, *rest]
    assert text_and_offsets(replayed)[1] == REPLY


def test_the_relay_answers_404_for_an_unknown_run(deployment: Deployment) -> None:
    url = deployment.start_web()
    with pytest.raises(RuntimeError, match="HTTP 404"):
        list(client.events(url, "chat-nope"))


# -- the page in a real Chromium -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def page() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set DURABLE_TEST_CHROMIUM)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright to run browser tests"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert errors == []
        finally:
            browser.close()


def test_the_page_renders_the_reply_as_it_streams_and_across_a_restarted_server(
    deployment: Deployment, page: Any
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    port = free_port()
    url = deployment.start_web(port)
    first = deployment.hung_worker()
    page.goto(url)
    page.click("button[type=submit]")
    reply = page.locator("#reply")
    so_far = "".join(tokens()[:HANG_AT])
    expect(reply).to_have_text(so_far, timeout=30_000)  # streamed: the run is still running
    run_id = page.evaluate("new URLSearchParams(location.search).get('run')")
    assert store_view(deployment.store, run_id)[0] == "running"
    assert reply.get_attribute("data-offset") == str(HANG_AT - 1)

    # The web server dies too: the page's EventSource reconnects to its successor on the same
    # port with Last-Event-ID, and the reply goes on from there, no token lost or shown twice.
    assert deployment.web is not None
    deployment.kill(deployment.web)
    expect(page.locator("#status")).to_have_text(f"reconnecting to {run_id}...", timeout=30_000)
    deployment.wait_for_log(f"hangs before token {HANG_AT}")
    deployment.kill(first)
    deployment.start_web(port)
    deployment.worker()
    expect(page.locator("#status")).to_have_text(f"run {run_id}: completed", timeout=60_000)
    assert reply.inner_text() == REPLY
    _, items = store_view(deployment.store, run_id)
    assert reply.get_attribute("data-offset") == str(len(items) - 1)  # it saw the last event
