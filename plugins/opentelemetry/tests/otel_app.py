"""The application of the two-process tests: a run that one process starts and dies in, and
another resumes; a run one process starts inside a span (a web handler) and a worker in another
executes. Each process exports its spans as JSON lines to a file."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from durable import Workflow


class FileExporter(SpanExporter):
    """Each span as it ends, one JSON line, flushed: a process that dies keeps what ended."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            for span in spans:
                out.write(json.dumps(json.loads(span.to_json())) + "\n")
        return SpanExportResult.SUCCESS


def trace_to(path: str) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(path)))
    trace.set_tracer_provider(provider)


wf = Workflow("otel-app", db=os.environ.get("OTEL_APP_STORE", "durable.db"))


@wf.task
async def first() -> int:
    return 1


@wf.task
async def second() -> int:
    if os.environ.get("OTEL_APP_DIE") == "1":
        os._exit(17)  # the process dies in the middle of the step
    return 2


@wf.workflow(id="job")
async def job() -> int:
    return await first() + await second()


async def handle_request() -> None:
    """What a web handler does: start the run inside its request's span, and return."""
    with trace.get_tracer("app").start_as_current_span("POST /jobs"):
        await job.start()
    await wf.close()


async def work() -> int:
    """A worker process: execute due runs until the one the handler started has ended."""
    stop = asyncio.Event()
    working = asyncio.ensure_future(wf.run_worker(poll_interval=0.05, stop=stop))
    try:
        result: int = await wf.wait_for("job", timeout=60)
    finally:
        stop.set()
        await working
        await wf.close()
    return result


if __name__ == "__main__":
    trace_to(sys.argv[2])
    if sys.argv[1] == "call":
        print(asyncio.run(job()))
    elif sys.argv[1] == "start":
        asyncio.run(handle_request())
    elif sys.argv[1] == "work":
        print(asyncio.run(work()))
    else:  # resume
        print(asyncio.run(wf.resume("job")))
