"""What a restart of the Redis server keeps, and the loss of data noticed afterwards.

A store reads the server's persistence settings when it opens (``CONFIG GET appendonly``,
``save`` and ``maxmemory-policy``, in the round trip that loads its scripts) and logs one
WARNING per process and server when a restart or memory pressure would lose runs.
``RedisStore(require_persistence=True)`` refuses such a server, and one whose settings cannot
be read (``CONFIG`` renamed away or denied by an ACL, as on some managed services).

What is kept, by the settings:

* ``appendonly yes``: every write is in the append-only file before its reply is sent, so a
  restart or a crash of the server keeps every committed checkpoint; a power loss or an OS crash
  may lose the last second of writes with ``appendfsync everysec`` (Redis's default), none with
  ``always``.
* ``appendonly no`` with ``save`` rules: only snapshots. A clean ``SHUTDOWN`` writes one, but a
  crash or a kill loses everything written since the last snapshot.
* ``appendonly no`` and ``save ""``: nothing on disk. A restart loses every run.
* ``maxmemory-policy allkeys-*``: Redis evicts any key when memory is full, live runs included.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from durable.errors import StoreError

log = logging.getLogger("durable_redis")

SETTINGS = ("appendonly", "save", "maxmemory-policy")
"""The settings read, one ``CONFIG GET`` each (Redis before 7 takes one name per call)."""

_warned: set[tuple[str, str]] = set()
"""(server, settings) already warned about in this process."""


class RedisDataLost(StoreError):
    """The Redis server lost the data this store wrote since it opened: it restarted without
    persistence, was flushed, or evicted keys. Raised instead of ``LeaseLost`` or "unknown run"
    for a run that vanished with it."""


@dataclass(frozen=True)
class Persistence:
    """The server's persistence settings as a store read them when it opened."""

    appendonly: str | None = None
    save: str | None = None
    eviction: str | None = None
    """``maxmemory-policy``."""
    unreadable: str | None = None
    """Why the settings could not be read (``CONFIG`` disabled or denied), else ``None``."""

    @classmethod
    def from_replies(cls, replies: Sequence[Any]) -> Persistence:
        """The settings from the replies to ``CONFIG GET`` of each of ``SETTINGS``, in order."""
        values: list[str | None] = []
        for name, reply in zip(SETTINGS, replies, strict=True):
            if isinstance(reply, Exception):
                return cls(unreadable=f"CONFIG GET {name} answered {reply}")
            if isinstance(reply, list | tuple):  # a client without the reply callback
                reply = dict(zip(reply[::2], reply[1::2], strict=True))
            value = reply.get(name) if isinstance(reply, dict) else None
            if isinstance(value, bytes):
                value = value.decode()
            if value is None:  # a server or proxy that hides it
                return cls(unreadable=f"CONFIG GET {name} answered nothing")
            values.append(str(value))
        appendonly, save, eviction = values
        return cls(appendonly, save, eviction)

    @property
    def settings(self) -> str:
        """The settings as one would write them in redis.conf."""
        if self.unreadable is not None:
            return "unknown"
        return f"appendonly {self.appendonly}, save {self.save!r}, maxmemory-policy {self.eviction}"

    @property
    def risk(self) -> str | None:
        """What a restart or memory pressure loses, or ``None`` when every committed write is kept
        (or the settings could not be read)."""
        if self.unreadable is not None:
            return None
        if self.eviction is not None and self.eviction.startswith("allkeys-"):
            return "evicts keys when its memory is full: runs, live ones included, can vanish"
        if self.appendonly == "yes":
            return None
        if not (self.save or "").strip():
            return "keeps nothing on disk: a restart loses every run, completed ones included"
        return "keeps snapshots only: a crash loses everything written since the last snapshot"

    @property
    def safe(self) -> bool | None:
        """Whether a restart keeps every committed write: ``None`` when it could not be read."""
        return None if self.unreadable is not None else self.risk is None

    def describe(self) -> str:
        """One line on what a restart keeps."""
        if self.unreadable is not None:
            return f"could not be checked ({self.unreadable})"
        if self.risk is None:
            return f"kept on disk ({self.settings})"
        return f"at risk: the server {self.risk} ({self.settings})"

    def warn_once(self, server: str) -> None:
        """Log what is at risk on ``server`` (redacted), once per process and settings."""
        key = (server, self.settings)
        if key in _warned:
            return
        _warned.add(key)
        if self.unreadable is not None:
            log.info(
                "durable-redis: Redis at %s: persistence could not be checked (%s)", server, self.unreadable
            )
        elif self.risk is not None:
            log.warning(
                "durable-redis: Redis at %s %s (%s); calling a lost run again re-runs its steps. "
                "Set appendonly yes (and no allkeys-* maxmemory-policy), or pass "
                "require_persistence=True to refuse such a server",
                server,
                self.risk,
                self.settings,
            )
