"""Which asyncpg failures are transient, and whether a failed statement may have committed."""

from __future__ import annotations

import enum

import asyncpg
import asyncpg.exceptions as pg


class Failure(enum.Enum):
    """How a failed attempt may be retried."""

    PERMANENT = "permanent"
    """Not a connectivity problem (a bug, bad data): raised at once."""
    NOT_APPLIED = "not-applied"
    """The server certainly did not apply the statement (no connection, or rolled back)."""
    UNKNOWN = "unknown"
    """The connection was lost while the statement ran: it may or may not have committed."""


# Refused or rolled back before anything was applied.
_NOT_APPLIED: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    pg.TooManyConnectionsError,
    pg.CannotConnectNowError,
    pg.ClientCannotConnectError,
    pg.ConnectionRejectionError,
    pg.SerializationError,
    pg.DeadlockDetectedError,
)
# Lost mid-statement: the commit may or may not have happened.
_UNKNOWN: tuple[type[BaseException], ...] = (
    pg.PostgresConnectionError,  # ConnectionDoesNotExistError, ConnectionFailureError, ...
    pg.AdminShutdownError,  # pg_terminate_backend, server shutdown
    pg.CrashShutdownError,
    asyncpg.InterfaceError,  # "connection is closed" and friends
    asyncpg.InternalClientError,  # protocol state left behind by a connection killed mid-message
    OSError,  # ConnectionResetError, BrokenPipeError, unreachable host
    TimeoutError,  # command_timeout or connect timeout
)


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, _NOT_APPLIED):
        return Failure.NOT_APPLIED
    if isinstance(exc, _UNKNOWN):
        return Failure.UNKNOWN
    return Failure.PERMANENT


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
