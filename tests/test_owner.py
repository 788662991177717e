"""Owner ids tell machines apart, and only a process known to be gone is taken for dead."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import isolated_stores
import pytest

from durable import RunInProgress, Workflow
from durable._owner import _machine, _start_ticks, is_dead_local_owner, new_owner_id

HOST = socket.gethostname()


def exited_pid() -> tuple[int, str]:
    """The pid and start ticks of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    start = _start_ticks(child.pid)
    assert child.stdin is not None and start is not None
    child.stdin.close()
    child.wait()
    return child.pid, start


def test_an_owner_id_names_the_boot_the_pid_namespace_and_the_process_start() -> None:
    host, machine, process, _ = new_owner_id().rsplit(":", 3)
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    assert host == HOST and machine == f"{boot}.{os.stat('/proc/self/ns/pid').st_ino}"
    assert process == f"{os.getpid()}.{_start_ticks(os.getpid())}"


def test_an_exited_process_of_this_machine_is_dead() -> None:
    pid, start = exited_pid()
    assert is_dead_local_owner(f"{HOST}:{_machine()}:{pid}.{start}:abcd1234")


def test_another_host_with_the_same_name_is_alive() -> None:
    pid, start = exited_pid()
    other_boot = "0" * 32 + "." + _machine().split(".")[1]  # same host name, same namespace inode
    assert not is_dead_local_owner(f"{HOST}:{other_boot}:{pid}.{start}:abcd1234")


def test_an_id_without_a_boot_id_is_alive() -> None:
    pid, _ = exited_pid()
    namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    assert not is_dead_local_owner(f"{HOST}:{namespace}:{pid}:abcd1234")  # the 0.3 format


def test_a_reused_pid_is_dead_and_a_live_process_is_alive() -> None:
    parent = os.getppid()
    start = _start_ticks(parent)
    assert start is not None
    assert not is_dead_local_owner(f"{HOST}:{_machine()}:{parent}.{start}:abcd1234")
    assert is_dead_local_owner(f"{HOST}:{_machine()}:{parent}.{int(start) + 1}:abcd1234")


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres", "redis"])
def test_a_live_run_of_a_same_named_host_is_not_taken_over(tmp_path: Path, backend: str) -> None:
    with isolated_stores.store_url(backend, tmp_path, "owners") as url:
        asyncio.run(same_named_host_keeps_its_run(url))


async def same_named_host_keeps_its_run(url: str) -> None:
    wf = Workflow("owners", db=url)

    @wf.workflow(id="shared")
    async def shared() -> None:
        pass

    await shared.start()
    store = await wf.get_store()
    pid, start = exited_pid()
    twin = f"{HOST}:{'f' * 32}.{_machine().split('.')[1]}:{pid}.{start}:abcd1234"
    assert await store.claim_run("shared", twin, 60.0) is not None
    with pytest.raises(RunInProgress):
        await shared.call("shared", wait=False)
    await wf.close()
