"""Sync code: ``def`` tasks run in a bounded thread pool, and synchronous callers (Django, Flask,
scripts) drive runs through an event loop of the Workflow's own (``run_sync``).

A thread cannot be stopped from outside. A sync task's timeout (or a cancelled run) stops the
*wait* for its thread: the attempt counts as timed out (and is retried if its policy says so)
while the function runs on to its end in its thread, its result discarded, its thread busy until
then. An attempt still queued for a thread when its timeout passes never starts.

A workflow *body* stays ``async def`` (``@wf.workflow`` refuses a plain ``def``), on purpose. A
sync body would run in a thread with every task call, sleep, signal, patch and child bridged
back to the loop and blocked on; what that buys is only the ``await`` keyword, and it costs: a
body could not run steps concurrently (``asyncio.gather`` of tasks or children), a cancelled or
parked run could not stop its thread (a park would have to unwind it by an exception the body
might catch), and each run waiting on a signal would hold a thread of the bounded pool instead
of nothing. The body is the orchestration only; the blocking work goes in ``def`` tasks (run in
threads), and sync callers drive runs with ``run_sync``. (DBOS accepts sync workflow functions
because its steps are plain calls in the caller's thread, with no event loop to return to.)
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from durable.errors import ConfigurationError

T = TypeVar("T")

STOP_GRACE = 5.0
"""Seconds ``Portal.stop`` (and an interrupted ``run_sync``) gives runs to record how they ended."""


def default_threads() -> int:
    """``concurrent.futures.ThreadPoolExecutor``'s own default size."""
    return min(32, (os.cpu_count() or 1) + 4)


def check_function(fn: object, where: str) -> bool:
    """Whether ``fn`` is an ``async def`` (``True``) or a plain function to run in a thread
    (``False``); ``ConfigurationError`` for anything else."""
    if inspect.iscoroutinefunction(fn):
        return True
    if (
        not callable(fn)
        or inspect.isgeneratorfunction(fn)
        or inspect.isasyncgenfunction(fn)
        or inspect.isclass(fn)
        or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004
    ):
        raise ConfigurationError(
            f"{where}: {fn!r} must be an 'async def' function or a plain 'def' function (run in a thread)"
        )
    return False


class Threads:
    """The bounded pool a Workflow's sync tasks run in, created on first use."""

    def __init__(self, size: int, name: str) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigurationError(f"Workflow({name!r}): max_threads must be an int >= 1, got {size!r}")
        self.size = size
        self._name = name
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self.size, thread_name_prefix=f"durable-{self._name}"
                    )
                pool = self._pool
        return pool

    def shutdown(self) -> None:
        """Drop the pool (queued calls are cancelled; running ones finish in their threads)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def body(self, fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
        """``fn`` as a task body: each call runs it in the pool, with the caller's context
        variables (``current_run()``, a tracer's span), and is awaited on the event loop."""

        def in_thread(*args: Any, **kwargs: Any) -> Awaitable[T]:
            call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
            return asyncio.get_running_loop().run_in_executor(self.pool(), call)

        return in_thread


class Portal:
    """An event loop in a daemon thread of one Workflow, for synchronous callers: every
    ``run_sync`` of that Workflow, from any thread, runs on it, so its store (connections, pools,
    listeners) is opened once and shared. Restarted in a forked child; stopped at exit."""

    def __init__(self, name: str, close: Callable[[], Awaitable[None]]) -> None:
        self._name = name
        self._close = close
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._exit_hook = False

    def run(self, awaitable: Awaitable[T], what: str) -> T:
        """Run ``awaitable`` on the portal's loop and return its result (or raise its error)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never awaited, on purpose: no warning
            raise ConfigurationError(
                f"{what} was called inside a running event loop: it blocks until the run ends and "
                "would stall that loop. In async code, await the call instead (await my_workflow(...))"
            )
        loop = self._started()
        context = contextvars.copy_context()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def spawn() -> None:
            task = loop.create_task(_as_coroutine(awaitable))
            tasks.append(task)
            task.add_done_callback(functools.partial(_settle, future))

        loop.call_soon_threadsafe(context.run, spawn)
        try:
            return future.result()
        except BaseException:
            if not future.done():  # interrupted here (Ctrl-C): stop the run, let it record that
                loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
                with contextlib.suppress(BaseException):
                    future.result(STOP_GRACE)
            raise

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            thread = self._thread
            if self._loop is None or thread is None or not thread.is_alive() or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"durable-{self._name}-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
                if not self._exit_hook:
                    atexit.register(_stop_at_exit, weakref.ref(self))
                    self._exit_hook = True
            return self._loop

    def stop(self) -> None:
        """Close the Workflow's store on the loop, stop the loop and end its thread; runs still
        executing are interrupted (they read ``interrupted``; any worker resumes them)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or not thread.is_alive() or self._pid != os.getpid():
            return

        async def finish() -> None:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self._close()

        with contextlib.suppress(BaseException):
            asyncio.run_coroutine_threadsafe(finish(), loop).result(STOP_GRACE)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_GRACE)
        if not thread.is_alive():
            loop.close()


def _settle(future: concurrent.futures.Future[T], task: asyncio.Task[T]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif (error := task.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(task.result())


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _stop_at_exit(ref: weakref.ref[Portal]) -> None:
    portal = ref()
    if portal is not None:
        portal.stop()
