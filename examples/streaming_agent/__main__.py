"""A durable agent's reply streamed over SSE, a worker killed mid-reply, the client resuming.

    python examples/streaming_agent          # offline; SQLite file in a temporary directory

Three kinds of processes share one SQLite file: the web app (uvicorn serving
``streaming_agent.web:app``), workers (``durable worker streaming_agent.agent:wf``) and this
client. The first worker's model hangs in the middle of the reply and the worker is killed
(SIGKILL); the client drops its connection too. A second worker runs the unfinished model request
again (its events already in the stream are not appended again), and the client reconnects with
the last offset it saw (``Last-Event-ID``): it receives the rest of the reply exactly once. Open
the printed URL in a browser to watch the page.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `python examples/streaming_agent` runs this file alone

from streaming_agent import client  # noqa: E402
from streaming_agent.agent import tokens  # noqa: E402

HANG_AT = 5
"""The first worker hangs before this token."""


def spawn(args: list[str], env: dict[str, str], stderr: int | None = None) -> subprocess.Popen[str]:
    environ = {**os.environ, "PYTHONPATH": str(HERE.parent), **env}
    return subprocess.Popen(args, cwd=HERE.parent, env=environ, text=True, stderr=stderr)


def web_server(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """uvicorn on a free port; its URL read from its own log line."""
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "streaming_agent.web:app",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-access-log",
    ]
    server = spawn(args, env, stderr=subprocess.PIPE)
    assert server.stderr is not None
    for line in server.stderr:
        found = re.search(r"Uvicorn running on (http://\S+)", line)
        if found:
            return server, found.group(1)
    raise RuntimeError(f"uvicorn exited with {server.wait()}")


def worker(env: dict[str, str]) -> subprocess.Popen[str]:
    durable = str(Path(sys.executable).with_name("durable"))
    return spawn([durable, "worker", "streaming_agent.agent:wf", "--poll", "0.05", "-q"], env)


def wait_for(log: Path, text: str) -> None:
    while text not in (log.read_text() if log.exists() else ""):
        time.sleep(0.02)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "agent.log"
        env = {"DURABLE_STORE": f"sqlite:///{Path(tmp) / 'streaming.db'}", "STREAMING_AGENT_LOG": str(log)}
        server, url = web_server(env)
        first = worker({**env, "STREAMING_AGENT_HANG": str(HANG_AT)})
        second = None
        try:
            print(f"web app at {url} (open it in a browser to watch a reply stream)")
            run_id = client.start(url, "Tell me about durable streams")
            print(f"run {run_id} started; its events, as they arrive:")
            seen: list[tuple[int, str]] = []
            for offset, event in client.events(url, run_id):
                assert isinstance(offset, int)
                seen.append((offset, client.text_of(event)))
                print(f"  {offset}: {event['event_kind']} {seen[-1][1]!r}")
                if offset == HANG_AT - 1:
                    break  # the client's connection drops here
            wait_for(log, f"hangs before token {HANG_AT}")
            first.send_signal(signal.SIGKILL)
            code, last = first.wait(), seen[-1][0]
            print(f"first worker killed (exit code {code}) mid-reply; the client had offsets 0..{last}")
            second = worker(env)
            print(f"second worker started; the client reconnects with Last-Event-ID: {seen[-1][0]}")
            for offset, event in client.events(url, run_id, last_id=seen[-1][0]):
                if offset == "end":
                    print(f"end of stream: run {event['status']}")
                    break
                assert isinstance(offset, int)
                seen.append((offset, client.text_of(event)))
                print(f"  {offset}: {event['event_kind']} {seen[-1][1]!r}")
            text = "".join(token for _, token in seen)
            print(f"reply: {text}")
            assert [offset for offset, _ in seen] == list(range(len(seen))), "an offset lost or repeated"
            assert [token for _, token in seen if token] == tokens(), "a token lost or repeated"
            print(f"{len(seen)} events, {len(tokens())} of them tokens, each received once")
        finally:
            for process in (first, second, server):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)


if __name__ == "__main__":
    main()
