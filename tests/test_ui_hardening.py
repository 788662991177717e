"""``durable ui`` against odd values, bad parameters, other host names and large values.

NaN and the infinities are legal stored values: the viewer still answers strict JSON. Bad
``limit``/``offset`` parameters are refused, not read as "everything". Listening on every
interface keeps the Host check. A run with a large value is shown cut, with its size.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

from test_ui import get, page  # noqa: F401 - page is a fixture used below

from durable import Workflow
from durable._records import RunStatus
from durable._ui import UIServer

NAN, INF = float("nan"), float("inf")


@pytest.fixture
def odd_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    wf = Workflow("odd", db=url)

    @wf.task
    async def measure(x: float) -> float:
        return x * 2

    @wf.workflow(id="odd-1")
    async def odd(x: float, y: float) -> list[float]:
        await measure(x)
        limit = await wf.signal("limit", timeout=10)
        return [limit, -INF]

    @wf.workflow(id="big-1")
    async def big(blob: str) -> int:
        return len(blob)

    async def fill() -> None:
        started = asyncio.create_task(odd(x=NAN, y=INF))
        while (run := await wf.get_run("odd-1")) is None or run.status is not RunStatus.WAITING:
            await asyncio.sleep(0.01)
        await wf.complete("odd-1", "limit", INF)
        await started
        await big(blob="z" * 3_000_000)
        await wf.close()

    asyncio.run(fill())
    return url


@pytest.fixture
def server(odd_db: str) -> Iterator[UIServer]:
    with UIServer(odd_db, port=0, poll_interval=0.3) as ui:
        yield ui


def test_nan_and_infinities_are_sent_as_strings(server: UIServer) -> None:
    status, _, run = get(server, "/api/run?id=odd-1")
    assert status == 200, run
    assert run["inputs"] == {"x": "NaN", "y": "Infinity"}
    assert run["result"] == ["Infinity", "-Infinity"]
    assert run["steps"][0]["result"] == "NaN"
    assert run["signals"][0]["payload"] == "Infinity"
    status, _, listed = get(server, "/api/runs")
    assert status == 200 and {r["run_id"] for r in listed["runs"]} == {"odd-1", "big-1"}


@pytest.mark.parametrize("query", ["limit=-1", "limit=0", "limit=x", "limit=1.5", "offset=-1", "offset=x"])
def test_bad_limits_and_offsets_are_refused(server: UIServer, query: str) -> None:
    status, _, data = get(server, "/api/runs?" + query)
    assert status == 400, data
    assert query.split("=")[0] in data["error"]


def test_limits_are_bounded(server: UIServer) -> None:
    _, _, one = get(server, "/api/runs?limit=1")
    assert (one["limit"], len(one["runs"])) == (1, 1)
    _, _, many = get(server, "/api/runs?limit=1000000")
    assert many["limit"] == 1000


def test_large_values_are_left_out_with_their_size(server: UIServer) -> None:
    status, headers, run = get(server, "/api/run?id=big-1")
    assert status == 200
    assert int(headers["Content-Length"]) < 10_000
    assert run["omitted"] == ["inputs"]
    assert run["inputs"] is None
    assert run["inputs_preview"].startswith('{"blob":"zzz') and run["inputs_preview"].endswith("… (3.0 MB)")
    assert run["result"] == 3_000_000


def test_the_page_shows_a_large_value_cut_with_its_size(server: UIServer, page: Any) -> None:  # noqa: F811
    page.goto(server.url + "#run=big-1")
    inputs = page.locator('dd[data-fact="inputs"]')
    inputs.wait_for()
    assert inputs.inner_text().endswith("… (3.0 MB)")
    page.goto(server.url + "#run=odd-1")
    page.locator('dd[data-fact="inputs"]:text("NaN")').wait_for()
    assert page.locator('dd[data-fact="inputs"]').inner_text() == '{"x":"NaN","y":"Infinity"}'


# -- the Host check ------------------------------------------------------------------------------


def status_for(port: int, host_header: str) -> int:
    conn = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", "/api/config", skip_host=True)
        conn.putheader("Host", host_header)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_every_interface_keeps_the_host_check(odd_db: str) -> None:
    with UIServer(odd_db, host="0.0.0.0", port=0, allowed_hosts=["Box.LAN"]) as ui:
        port = ui.port
        assert status_for(port, "evil.example") == 403
        assert status_for(port, f"evil.example:{port}") == 403
        assert status_for(port, "box.lan.evil.example") == 403
        for allowed in (
            f"box.lan:{port}",
            "BOX.lan",
            f"localhost:{port}",
            f"127.0.0.1:{port}",
            "[::1]",
            "10.1.2.3",
        ):
            assert status_for(port, allowed) == 200, allowed


def test_the_listening_host_name_is_allowed(odd_db: str) -> None:
    with UIServer(odd_db, host="localhost", port=0) as ui:
        assert status_for(ui.port, "localhost") == 200
        assert status_for(ui.port, "evil.example") == 403


def test_durable_ui_takes_allowed_hosts(odd_db: str, tmp_path: Path) -> None:
    console_script = Path(sys.executable).with_name("durable")
    command = [str(console_script), "ui", "--store", odd_db, "--host", "0.0.0.0", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--allowed-host", "box.lan", "--allowed-host", "ops.example"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        allowed = process.stdout.readline()
        assert banner.startswith("durable ui for sqlite:///"), banner
        assert allowed == (
            "answers requests for localhost and IP addresses, box.lan, ops.example"
            " (--allowed-host NAME for more)\n"
        )
        port = int(banner.split(" at http://127.0.0.1:")[1].split("/")[0])
        assert status_for(port, "ops.example") == 200
        assert status_for(port, "box.lan:1234") == 200
        assert status_for(port, "evil.example") == 403
    finally:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
