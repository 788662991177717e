"""Durable streaming agents (issue 18): run_stream streams while the model produces, a crash in the
third model request replays requests 1 and 2 from the store and streams request 3 again live, and
the run's durable stream "events" holds every event exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import FunctionToolCallEvent, FunctionToolResultEvent, PartStartEvent, TextPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
from stream_app import ANSWER, TOOL_ROUNDS, Crash, StreamRecorder, build, read_log, signature

from durable import RunStatus, Workflow
from durable.backoff import constant
from durable_pydantic_ai import DurableAgent, TaskConfig, decode_event

APP = Path(__file__).with_name("stream_app.py")
PROMPT = "what is the answer?"


async def items(wf: Workflow, run_id: str) -> list[dict[str, Any]]:
    """The run's "events" stream, read to its end (the run is final)."""
    return [item async for _, item in wf.read_stream(run_id, "events")]


async def reference(wf: Workflow, run_id: str) -> list[tuple[Any, ...]]:
    """The events of the same agent's uninterrupted run."""
    async with build(wf, StreamRecorder()).run_stream(PROMPT, run_id=run_id) as result:
        await result.get_output()
    return [signature(item) for item in await items(wf, run_id)]


async def test_tokens_reach_the_caller_and_the_stream_before_the_model_finishes(
    wf: Workflow, run_prefix: str
) -> None:
    run_id = f"{run_prefix}-live"
    recorder = StreamRecorder(gate=asyncio.Event())
    async with build(wf, recorder).run_stream(PROMPT, run_id=run_id) as result:
        texts = result.stream_text(delta=True)
        first = await anext(texts)
        # The model is held after its first token: whatever arrived, it arrived while streaming.
        assert first == ANSWER[0] and not result.is_complete
        async for _, item in wf.read_stream(run_id, "events"):  # another reader, through the store
            if (item.get("part") or {}).get("content") == ANSWER[0]:
                break
        run = await wf.get_run(run_id)
        assert run is not None and run.status is RunStatus.RUNNING
        assert recorder.gate is not None
        recorder.gate.set()
        rest = [text async for text in texts]
        assert await result.get_output() == "".join(ANSWER)
    assert [first, *rest] == ANSWER
    assert recorder.model_requests == TOOL_ROUNDS + 1
    assert result.usage.requests == TOOL_ROUNDS + 1
    assert result.all_messages()[-1].parts == [TextPart("".join(ANSWER))]  # type: ignore[union-attr]

    steps = [(s.key, s.task) for s in await wf.get_steps(run_id)]
    assert [task for _, task in steps].count("streamer__model.request_stream") == TOOL_ROUNDS + 1
    stream = await items(wf, run_id)
    assert stream[-1] == {"event_kind": "agent_run_result", "output": "".join(ANSWER)}
    assert decode_event(stream[-1]) is None
    assert all(decode_event(item) is not None for item in stream[:-1])


@pytest.mark.parametrize("resume_with", ["run_stream", "resume"])
async def test_crash_in_request_3_replays_requests_1_and_2_and_streams_3_again(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str, resume_with: str
) -> None:
    run_id = f"{run_prefix}-crash"
    first = StreamRecorder(crash_at_token=2)
    seen: list[str] = []
    with pytest.raises(Crash):
        async with build(wf, first).run_stream(PROMPT, run_id=run_id) as result:
            async for text in result.stream_text():
                seen.append(text)
    assert seen == ["The ", "The answer "]
    assert (first.model_requests, first.tool_calls) == (3, ["item-0", "item-1"])

    second = StreamRecorder()
    again = build(await reopen(), second)
    if resume_with == "run_stream":
        async with again.run_stream(PROMPT, run_id=run_id) as result:
            events = [event async for event in result.stream_events()]
            output = await result.get_output()
        # Requests 1 and 2 come back from the store, their events first and at once; 3 streams live.
        replayed = [e for e in events if isinstance(e, FunctionToolCallEvent | FunctionToolResultEvent)]
        assert [e.tool_call_id for e in replayed] == ["call-0", "call-0", "call-1", "call-1"]
        starts = [e for e in events if isinstance(e, PartStartEvent)]
        assert [getattr(e.part, "tool_name", None) for e in starts[:2]] == ["lookup", "lookup"]
        assert "".join([t async for t in result.stream_text(delta=True)]) == "".join(ANSWER)
    else:
        output = (await again.resume(run_id)).output  # a worker's way: nobody reads, the stream is written
    assert output == "".join(ANSWER)
    # Only request 3 reaches the model again; no tool runs again.
    assert (second.model_requests, second.tool_calls) == (1, [])

    stream = [signature(item) for item in await items(wf, run_id)]
    assert stream == await reference(await reopen(), f"{run_prefix}-ref")  # every event once, in order
    texts = [s for s in stream if s[0] in ("part_start", "part_delta") and s[2] in ("text", None)]
    assert [s[3] or s[7] for s in texts if s[3] or s[7]] == ANSWER


async def test_a_retried_request_streams_no_token_twice(wf: Workflow, run_prefix: str) -> None:
    """A model request that fails mid-stream and is retried in the same process (its step's retry):
    the caller and the stream get each token once."""
    recorder = StreamRecorder(crash_at_token=2)
    agent = build(wf, recorder, model_task_config=TaskConfig(retries=1, backoff=constant(0)))
    async with agent.run_stream(PROMPT, run_id=f"{run_prefix}-retry") as result:
        texts = [text async for text in result.stream_text(delta=True)]
        assert await result.get_output() == "".join(ANSWER)
    assert texts == ANSWER
    assert recorder.model_requests == TOOL_ROUNDS + 2  # request 3 twice: its attempts
    stream = [signature(item) for item in await items(wf, f"{run_prefix}-retry")]
    assert len(stream) == len(set(stream))  # signatures of one run differ: index, content, call id
    assert [s[3] or s[7] for s in stream if s[0] in ("part_start", "part_delta") and (s[3] or s[7])][
        -4:
    ] == ANSWER


async def test_a_run_keeps_the_mode_its_journal_started_with(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str
) -> None:
    """Begun by run() (model.request steps), a run resumed by run_stream goes on with model.request
    steps: streaming its requests would name them model.request_stream and make them all again."""
    from agent_app import Crash as ToolCrash
    from agent_app import Recorder
    from agent_app import build as build_agent

    run_id = f"{run_prefix}-mode"
    with pytest.raises(ToolCrash):
        await build_agent(wf, Recorder(crash_in_tool_call=2)).run("look things up", run_id=run_id)
    second = Recorder()
    async with build_agent(await reopen(), second).run_stream("look things up", run_id=run_id) as result:
        assert await result.get_output() == "looked up 3 items"
    assert second.model_requests == 2
    tasks = {step.task for step in await wf.get_steps(run_id)}
    assert "assistant__model.request" in tasks and "assistant__model.request_stream" not in tasks


async def test_run_stream_of_a_finished_run_returns_its_result(wf: Workflow, run_prefix: str) -> None:
    recorder = StreamRecorder()
    agent = build(wf, recorder)
    for _ in range(2):
        async with agent.run_stream(PROMPT, run_id=f"{run_prefix}-done") as result:
            events = [event async for event in result.stream_events()]
            assert await result.get_output() == "".join(ANSWER)
    assert events == [] and recorder.model_requests == TOOL_ROUNDS + 1


@pytest.mark.slow
def test_sigkill_mid_stream_of_request_3(persistent_store_url: str, tmp_path: Path, run_prefix: str) -> None:
    """A real process killed while request 3 streams: the next one makes only request 3 again, the
    caller gets the whole answer, and the stream has each event once (the tokens the killed process
    wrote are not written twice)."""
    run_id = f"{run_prefix}-kill"
    log = tmp_path / "calls.log"
    ready = Path(f"{log}.ready")
    proc = subprocess.Popen(
        [sys.executable, str(APP), persistent_store_url, run_id, str(log), "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the child never reached the third token"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_log(log)
    assert (before["model"], before["tool"], before["text"]) == (3, 2, 2)

    async def resume() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        async with Workflow("pai-tests", db=persistent_store_url, default_backoff=constant(0)) as wf:
            recorder = StreamRecorder(log=log)
            async with build(wf, recorder).run_stream(PROMPT, run_id=run_id) as result:
                text = "".join([t async for t in result.stream_text(delta=True)])
                assert text == "".join(ANSWER) and await result.get_output() == text
            stream = [signature(i) for i in await items(wf, run_id)]
            async with Workflow("pai-tests", db=persistent_store_url) as other:
                return stream, await reference(other, f"{run_prefix}-ref")

    stream, expected = asyncio.run(resume())
    after = read_log(log)
    assert (after["model"], after["tool"]) == (4, 2), "a request other than the third was made twice"
    assert stream == expected


class City(BaseModel):
    name: str
    population: int


async def test_structured_output_streams_as_it_is_produced(wf: Workflow, run_prefix: str) -> None:
    pieces = ['{"name": "Par', 'is", "popu', 'lation": 2100', "000}"]

    async def stream(messages: list[Any], info: AgentInfo) -> Any:
        (output,) = info.output_tools
        for i, piece in enumerate(pieces):
            yield {0: DeltaToolCall(name=output.name if i == 0 else None, json_args=piece, tool_call_id="o1")}

    agent = Agent(FunctionModel(stream_function=stream), name="cities", output_type=City)
    durable = DurableAgent(agent, wf)
    async with durable.run_stream("biggest french city", run_id=f"{run_prefix}-city") as result:
        partial = [city async for city in result.stream_output()]
        output = await result.get_output()
    assert output == City(name="Paris", population=2100000)
    assert partial[-1] == output and len(partial) > 1
    assert partial[0].name in ("Par", "Paris")


async def test_iter_inside_a_workflow_is_durable(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str
) -> None:
    """Inside a @wf.workflow body the caller's loop is workflow code: each model request and tool call
    is a step of that run, so a resumed run makes only what had not finished."""
    from agent_app import ROUNDS, Recorder
    from agent_app import Crash as ToolCrash
    from agent_app import build as build_agent

    def make(workflow: Workflow, recorder: Recorder) -> Any:
        durable = build_agent(workflow, recorder)

        @workflow.workflow(name="iterating")
        async def iterating(prompt: str) -> str:
            async with durable.iter(prompt) as agent_run:
                nodes = [type(node).__name__ async for node in agent_run]
            assert agent_run.result is not None
            return f"{agent_run.result.output} after {nodes.count('CallToolsNode')} tool rounds"

        return iterating

    run_id = f"{run_prefix}-iter"
    first = Recorder(crash_in_tool_call=2)
    with pytest.raises(ToolCrash):
        await make(wf, first).run(run_id, "look things up")
    assert (first.model_requests, first.tool_calls) == (2, ["item-0", "item-1"])

    second = Recorder()
    output = await make(await reopen(), second).run(run_id, "look things up")
    assert output == f"looked up {ROUNDS} items after {ROUNDS + 1} tool rounds"
    # Requests 1 and 2 and the first tool call replayed; the interrupted call and the rest ran.
    assert (second.model_requests, second.tool_calls) == (ROUNDS + 1 - 2, ["item-1", "item-2"])
