"""The hard time limit of every contract test: a watchdog thread that fails a test still running
after the limit, with the stack of every thread and task, even when the event loop is blocked.

An asyncio timeout cannot end a test whose store blocks the event loop (a blocking lock, sleep or
I/O in an ``async def``): nothing runs the timeout's callback. So a thread watches the clock. When
a test's setup and body (or, separately, its teardown) overrun the limit, it records where every
thread is and sends ``SIGALRM`` to the main thread, whose handler raises the test's failure from
wherever the main thread is blocked (system calls and lock waits are interrupted by a signal). If
the test still runs ``GRACE`` seconds later (the failure was swallowed, or there is no signal to
send: Windows, or pytest not on the main thread), the stacks are written to stderr and the process
exits, as ``faulthandler.dump_traceback_later(exit=True)`` would: a hung run must end.

Imports only pytest and the standard library (the plugin imports it at load).
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import io
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import pytest

DEFAULT_LIMIT = 60.0
"""Seconds; a correct store's slowest contract test takes a few."""
ENV = "DURABLE_TEST_TIMEOUT"
INI = "durable_timeout"
OPTION = "--durable-timeout"
GRACE = 10.0
"""How long after failing a test the watchdog waits for it to stop before ending the process."""
RESIGNAL = 0.05
"""How often the watchdog looks again, once it failed a test that goes on: if the main thread is
stuck where it was, the failure is raised there too."""
STACK_LIMIT = 40
"""Innermost frames shown per thread or task."""
TASK_LIMIT = 12
"""Tasks whose stacks are shown."""
_SIGNAL = getattr(signal, "SIGALRM", None)


def limit_of(config: pytest.Config) -> float:
    """The limit in seconds (0: none): ``--durable-timeout``, else ``DURABLE_TEST_TIMEOUT``, else
    ``durable_timeout`` in the pytest configuration, else ``DEFAULT_LIMIT``."""
    for where, value in (
        (OPTION, config.getoption("durable_timeout")),
        (ENV, os.environ.get(ENV)),
        (INI, config.getini(INI)),
    ):
        if value is None or str(value).strip() == "":
            continue
        try:
            seconds = float(value)
        except ValueError:
            raise pytest.UsageError(f"{where}={value!r}: give the time limit in seconds (0: none)") from None
        if seconds < 0:
            raise pytest.UsageError(f"{where}={value!r}: the time limit cannot be negative (0: none)")
        return seconds
    return DEFAULT_LIMIT


@dataclass
class _Arm:
    nodeid: str
    phase: str
    deadline: float
    limit: float
    report: str | None = None
    """Set when the limit passed: the message the test fails with."""
    pending: bool = False
    """A signal was sent and its handler has not raised yet."""


class Watchdog:
    """One per session: ``arm`` before a phase of a contract test, ``disarm`` after it."""

    def __init__(self, before_exit: Callable[[], None] | None = None) -> None:
        self._before_exit = before_exit
        """Called before the process is ended (the plugin stops pytest capturing the output)."""
        self._lock = threading.Condition()
        self._arm: _Arm | None = None
        self._thread: threading.Thread | None = None
        self._main = threading.main_thread()
        self._previous: Any = None
        self._installed = False

    # -- main thread --------------------------------------------------------------

    def arm(self, nodeid: str, phase: str, deadline: float, limit: float) -> None:
        self._install()
        with self._lock:
            self._arm = _Arm(nodeid, phase, deadline, limit)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="durable-watchdog", daemon=True)
                self._thread.start()
            self._lock.notify_all()

    def disarm(self) -> None:
        with self._lock:
            self._arm = None
            self._lock.notify_all()

    def uninstall(self) -> None:
        if self._installed and _SIGNAL is not None and threading.current_thread() is self._main:
            if signal.getsignal(_SIGNAL) == self._on_signal:
                signal.signal(_SIGNAL, self._previous)
            self._installed = False

    def _install(self) -> None:
        if self._installed or _SIGNAL is None or not hasattr(signal, "pthread_kill"):
            return
        if threading.current_thread() is not self._main:
            return
        self._previous = signal.signal(_SIGNAL, self._on_signal)
        self._installed = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            arm = self._arm
            ours = arm is not None and arm.pending and arm.report is not None
            if ours:
                assert arm is not None
                arm.pending = False
        if not ours:
            if callable(self._previous):  # another user of SIGALRM (pytest-timeout, say)
                self._previous(signum, frame)
            return
        assert arm is not None and arm.report is not None
        pytest.fail(arm.report + _task_stacks(), pytrace=False)

    # -- the watchdog thread ------------------------------------------------------------

    def _watch(self) -> None:
        while True:
            with self._lock:
                arm = self._arm
                while arm is None or time.monotonic() < arm.deadline:
                    self._lock.wait(None if arm is None else max(0.0, arm.deadline - time.monotonic()))
                    arm = self._arm
                arm.report = _report(arm, self._main)
                give_up = time.monotonic() + GRACE
            last: tuple[int, int] | None = None
            while True:
                with self._lock:
                    if self._arm is not arm:
                        break  # the phase ended: the test failed, or finished just in time
                    if time.monotonic() >= give_up:
                        if self._before_exit is not None:
                            with contextlib.suppress(Exception):
                                self._before_exit()
                        _end_process(arm)
                    # Raise again only where the main thread is stuck (at the instruction it was at
                    # one look before): each coroutine blocking the loop in turn (fifty creators
                    # waiting for one lock) gets its failure; a loop finishing the test is left be.
                    where = _position(self._main)
                    if last is None or (where == last and not arm.pending):
                        self._interrupt(arm)
                    last = where
                    self._lock.wait(RESIGNAL)

    def _interrupt(self, arm: _Arm) -> None:
        """Raise the failure in the main thread (called with the lock held)."""
        main = self._main.ident
        # (A bound method is a new object at each access: compared with ==, not is.)
        ours = self._installed and _SIGNAL is not None and signal.getsignal(_SIGNAL) == self._on_signal
        if ours and _SIGNAL is not None and main is not None:
            arm.pending = True
            signal.pthread_kill(main, _SIGNAL)
            return
        if not arm.pending:  # no signal to raise the failure with: stop the session instead
            arm.pending = True
            _write(f"\n\ndurable contract suite: interrupting the test run.\n\n{arm.report}\n")
            _thread.interrupt_main()


def _position(thread: threading.Thread) -> tuple[int, int] | None:
    """Where ``thread`` is now: the code and the instruction in it of its innermost frame (the
    code, not the frame: coroutines blocking one after the other at one line are one place)."""
    frame = sys._current_frames().get(thread.ident or -1)
    return None if frame is None else (id(frame.f_code), frame.f_lasti)


def _report(arm: _Arm, main: threading.Thread) -> str:
    return (
        f"{arm.nodeid} was still running ({arm.phase}) after the durable contract suite's time limit "
        f"of {arm.limit:g} s per test ({OPTION}, {ENV} or {INI} in the pytest configuration; 0 turns "
        "it off). A correct store passes every contract test in a few seconds: this store is blocked "
        "or waits for something that never comes. A blocking call in an async method (a lock held "
        "across an await, time.sleep, synchronous I/O) stops the event loop, and no asyncio timeout "
        "can fire then; a claim_run or wait_for_signal that never succeeds makes the engine wait "
        "forever.\n\nWhere each thread was when the limit passed:\n" + _thread_stacks(main)
    )


def _thread_stacks(main: threading.Thread) -> str:
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = []
    me = threading.get_ident()
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        label = "main thread" if ident == main.ident else f"thread {names.get(ident, ident)!r}"
        stack = "".join(traceback.format_stack(frame)[-STACK_LIMIT:])
        parts.append(f"--- {label} (most recent call last):\n{stack}")
    return "".join(parts)


def _task_stacks() -> str:
    try:
        tasks = asyncio.all_tasks(asyncio.get_running_loop())
    except RuntimeError:  # no loop runs in the main thread
        return ""
    parts = []
    for task in sorted(tasks, key=lambda task: task.get_name())[:TASK_LIMIT]:
        text = io.StringIO()
        task.print_stack(limit=STACK_LIMIT, file=text)
        parts.append(f"--- {text.getvalue()}")
    if len(tasks) > TASK_LIMIT:
        parts.append(f"... and {len(tasks) - TASK_LIMIT} more tasks\n")
    return "\n\nThe event loop's tasks:\n" + "".join(parts) if parts else ""


def _write(text: str) -> None:
    stream = sys.__stderr__ or sys.stderr
    stream.write(text)
    stream.flush()


def _end_process(arm: _Arm) -> None:
    _write(
        f"\n\ndurable contract suite: {arm.nodeid} did not stop within {GRACE:g} s after failing it "
        f"for running past its time limit; ending the test process.\n\n{arm.report}\n"
    )
    os._exit(3)
