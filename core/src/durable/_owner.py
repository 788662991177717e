"""Executor identity, and whether an executor on this host is known to be dead."""

from __future__ import annotations

import os
import socket
import uuid


def _pid_namespace() -> str:
    # Containers may share a host name; the PID namespace tells their process tables apart.
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def new_owner_id() -> str:
    """``host:pid-namespace:pid:random``: unique per Workflow object."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_dead_local_owner(owner: str | None) -> bool:
    """True only when ``owner`` ran in this host's PID namespace and its process is gone.

    Anything uncertain (another host, another namespace, a live or foreign PID) is
    False: the caller then waits for the lease to expire, which is always safe.
    """
    if not owner:
        return False
    parts = owner.rsplit(":", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return False
    host, namespace, pid, _ = parts
    if host != socket.gethostname() or namespace != _pid_namespace() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False
