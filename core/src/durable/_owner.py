"""Executor identity, and whether an executor on this machine is known to be dead.

An owner id is ``host:machine:pid.start:random``. ``machine`` is the kernel's boot id with the
PID namespace's inode: host names repeat across hosts and containers, and the initial PID
namespace has the same inode on every Linux host, but a boot id is random per boot. ``start``
is the process's start time in clock ticks since boot, so a reused PID is not taken for the
old process. Anything uncertain reads as alive: the caller then waits for the lease to expire,
which is always safe.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid


@functools.cache
def _machine() -> str:
    """This boot of this machine, and this PID namespace ("-" for what cannot be read)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip().replace("-", "")
    except OSError:
        boot = "-"
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = "-"
    return f"{boot}.{namespace}"


def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or ``None`` if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else "?"


def new_owner_id() -> str:
    """``host:machine:pid.start:random``: unique per Workflow object."""
    pid = os.getpid()
    start = _start_ticks(pid) or "?"
    return f"{socket.gethostname()}:{_machine()}:{pid}.{start}:{uuid.uuid4().hex[:8]}"


def is_dead_local_owner(owner: str | None) -> bool:
    """True only when ``owner`` ran in this boot of this machine, in this PID namespace, and its
    process is gone (no such PID, or a PID now used by a process that started at another time).

    Anything uncertain (another host, an id from before boot ids were part of it, a live or
    unreadable process) is False.
    """
    if not owner:
        return False
    parts = owner.rsplit(":", 3)
    if len(parts) != 4:
        return False
    host, machine, process, _ = parts
    pid_text, _, start = process.partition(".")
    if not pid_text.isdigit() or not start or start == "?" or "-" in machine.split(".", 1)[0]:
        return False
    if host != socket.gethostname() or machine != _machine() or int(pid_text) == os.getpid():
        return False
    now = _start_ticks(int(pid_text))
    return now is None or (now != "?" and now != start)
