"""Stores that can be read but not written: a file on a read-only mount, an immutable file, a file
or directory this process may not write.

Such a store opens for reading (``durable runs list/show``, the viewer) and every write fails with
a ``StoreError`` saying the file is read-only. SQLite needs the write-ahead log's index (the
``-shm`` file) to read a WAL database: where it exists or can be created, the file is opened with
``mode=ro`` and sees commits of other processes; on a read-only directory without one, it is
opened ``immutable`` (read as it is on disk), which is exact only while no write-ahead log holds
commits, so a non-empty log there is refused rather than silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from durable.errors import StoreError


class NotWritable(Exception):
    """Raised while opening a file read-write that turned out to be read-only (``why``)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class NeedsImmutable(Exception):
    """Raised while opening with ``mode=ro``: the write-ahead log's index cannot be opened."""


def known_reason(path: str) -> str | None:
    """Why this process cannot write ``path`` (or create its log beside it), if it can tell."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
    except OSError:
        pass
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "this process may not write the file"
    if not os.access(directory, os.W_OK):
        return f"this process may not create files in {directory!r}"
    return None


def why_read_only(path: str, cause: str) -> str:
    """Why ``path`` cannot be written: ``known_reason``, else SQLite's ``cause`` (an immutable
    file, as ``chattr +i`` makes, looks writable to every check but SQLite's)."""
    return known_reason(path) or f"SQLite cannot write it: {cause}"


def read_only_error(path: str, why: str) -> StoreError:
    """The error of a write to a store that can only be read."""
    return StoreError(f"SQLiteStore({path!r}) is read-only ({why}): it can be read, not written")


def uri(path: str, *, immutable: bool) -> str:
    """The URI opening ``path`` for reading only (``immutable``: without the log's index)."""
    return Path(path).absolute().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")


def log_holds_commits(path: str) -> bool:
    """Whether ``path``'s write-ahead log holds frames (commits not yet copied into the file)."""
    try:
        return os.path.getsize(path + "-wal") > 0
    except OSError:
        return False
