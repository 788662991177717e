"""Store URLs: what ``PostgresStore`` takes from them and what it hands to asyncpg."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from durable.errors import ConfigurationError
from durable.store import redact_url

SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
DEFAULT_SCHEMA = "durable"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1: Postgres silently truncates longer names

# Query options the store reads itself, with their types; the rest go to asyncpg untouched.
STORE_OPTIONS: dict[str, type] = {
    "schema": str,
    "min_size": int,
    "max_size": int,
    "command_timeout": float,
    "connect_timeout": float,
    "retries": int,
    "operation_timeout": float,
}


@dataclass(frozen=True)
class ConnectionTarget:
    """A parsed store URL: the asyncpg DSN without credentials, the credentials, the store options."""

    dsn: str
    """``postgresql://host:port/db?...`` with the user and password removed."""
    user: str | None
    password: str | None = field(repr=False)
    options: dict[str, Any]

    def display(self) -> str:
        """The URL for messages: the user is shown, the password never."""
        parts = urlsplit(self.dsn)
        netloc = parts.netloc if self.user is None else f"{self.user}@{parts.netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_postgres_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SCHEMES if "://" in url else False


def parse_url(url: str) -> ConnectionTarget:
    """Split a ``postgresql://``, ``postgres://`` or ``postgresql+asyncpg://`` URL.

    The user and password are percent-decoded here and passed to asyncpg apart from the
    DSN, so passwords with ``@``, ``:``, ``/``, ``%`` or ``#`` (percent-encoded) work.
    """
    if not is_postgres_url(url):
        raise ConfigurationError(
            f"{_shown(url)!r} is not a PostgreSQL URL; write postgresql://user:password@host:5432/database"
        )
    parts = urlsplit("postgresql://" + url.split("://", 1)[1])
    userinfo, at, hostspec = parts.netloc.rpartition("@")
    user: str | None = None
    password: str | None = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote(raw_user) or None
        password = unquote(raw_password) if colon else None
    options: dict[str, Any] = {}
    passthrough: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = STORE_OPTIONS.get(key)
        if kind is None:
            passthrough.append((key, value))
            continue
        try:
            options[key] = kind(value)
        except ValueError:
            raise ConfigurationError(
                f"store URL {_shown(url)!r}: option {key}={value!r} is not a valid {kind.__name__}"
            ) from None
    dsn = urlunsplit(("postgresql", hostspec, parts.path, urlencode(passthrough), ""))
    return ConnectionTarget(dsn=dsn, user=user, password=password, options=options)


def with_schema(url: str, schema: str) -> str:
    """``url`` with its ``schema`` query option set to ``schema`` (other options kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    query.append(("schema", schema))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def check_schema_name(schema: str) -> str:
    """``schema`` if it is a plain identifier Postgres keeps as written, else ``ConfigurationError``."""
    if not isinstance(schema, str) or not IDENTIFIER.match(schema):
        raise ConfigurationError(
            f"schema {schema!r} is not a valid name: use letters, digits and underscores, "
            "not starting with a digit"
        )
    if len(schema.encode()) > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(f"schema {schema!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
    if schema.lower().startswith("pg_"):
        raise ConfigurationError(f"schema {schema!r}: names starting with 'pg_' are reserved by PostgreSQL")
    return schema


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _shown(url: str) -> str:
    return redact_url(url)
