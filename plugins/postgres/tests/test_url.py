"""URL parsing, options and the plugin hooks: no server needed."""

from __future__ import annotations

import inspect
import pickle

import pytest

import durable_postgres
from durable._plugins import PluginManager
from durable.errors import ConfigurationError
from durable_postgres import PostgresStore
from durable_postgres._listener import channel_name, wake_key
from durable_postgres._url import parse_url


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg", "PostgreSQL"])
def test_every_scheme_becomes_a_plain_postgresql_dsn(scheme: str) -> None:
    target = parse_url(f"{scheme}://app@db.example:6543/orders")
    assert target.dsn == "postgresql://db.example:6543/orders"
    assert (target.user, target.password) == ("app", None)


def test_a_percent_encoded_password_is_decoded_and_kept_out_of_the_dsn() -> None:
    target = parse_url("postgresql://us%40er:p%40ss%3Aw%2Frd%23%3F%25@db:5432/app")
    assert (target.user, target.password) == ("us@er", "p@ss:w/rd#?%")
    assert target.dsn == "postgresql://db:5432/app"


def test_a_raw_at_sign_or_colon_in_the_password_still_parses() -> None:
    target = parse_url("postgresql://app:p@ss:word@db/app")
    assert (target.user, target.password, target.dsn) == ("app", "p@ss:word", "postgresql://db/app")


def test_the_password_never_shows_in_repr() -> None:
    store = PostgresStore("postgresql://app:s3cr%40t@db:5432/app?schema=tenant_a")
    assert "s3cr" not in repr(store)
    assert repr(store) == "<PostgresStore postgresql://app@db:5432/app schema='tenant_a'>"


def test_store_options_come_from_the_query_and_others_go_to_asyncpg() -> None:
    store = PostgresStore(
        "postgresql://db/app?schema=tenant_a&min_size=2&max_size=20&sslmode=disable&command_timeout=5"
    )
    assert (store.schema, store.min_size, store.max_size, store.command_timeout) == ("tenant_a", 2, 20, 5.0)
    assert store._target.dsn == "postgresql://db/app?sslmode=disable"


def test_keyword_options_override_the_url() -> None:
    store = PostgresStore("postgresql://db/app?schema=from_url&max_size=3", schema="from_kw", max_size=7)
    assert (store.schema, store.max_size) == ("from_kw", 7)


def test_defaults() -> None:
    store = PostgresStore("postgresql://db/app")
    assert (store.schema, store.min_size, store.max_size, store.retries) == ("durable", 1, 10, 3)


@pytest.mark.parametrize(
    "schema",
    ["bad-name", "1starts_with_digit", 'x"; DROP SCHEMA public; --', "s" * 64, "pg_catalog", "", "ünï"],
)
def test_unsafe_schema_names_are_refused(schema: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresStore("postgresql://db/app", schema=schema)


@pytest.mark.parametrize(
    "url",
    ["postgresql://db/app?max_size=many", "postgresql://db/app?min_size=5&max_size=2", "mysql://db/app"],
)
def test_bad_urls_raise_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresStore(url)


def test_an_unopened_store_pickles_with_its_options() -> None:
    store = PostgresStore("postgresql://app:pw@db/app?schema=one", max_size=4)
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.schema, copy.max_size, copy._target) == ("one", 4, store._target)


def test_hooks_are_synchronous() -> None:
    for hook in (durable_postgres.durable_store_backends, durable_postgres.durable_store_from_url):
        assert not inspect.iscoroutinefunction(hook)


@pytest.mark.parametrize("url", ["postgresql://db/a", "postgres://db/a", "postgresql+asyncpg://db/a"])
def test_the_plugin_manager_opens_every_scheme_as_an_unopened_postgres_store(url: str) -> None:
    manager = PluginManager()
    manager.register(durable_postgres, name="durable-postgres")
    store = manager.store_from_url(url, schema="given")
    assert isinstance(store, PostgresStore) and store.schema == "given" and store._pool is None


def test_other_schemes_are_left_to_other_plugins() -> None:
    assert durable_postgres.durable_store_from_url("redis://localhost/0", {}) is None
    assert durable_postgres.durable_store_from_url("sqlite:///x.db", {}) is None


def test_the_backend_declaration() -> None:
    [backend] = durable_postgres.durable_store_backends()
    assert backend.name == "postgres"
    assert backend.schemes == ("postgresql", "postgres", "postgresql+asyncpg")
    assert backend.install_hint == "pip install 'python-durable[postgres]'"
    assert backend.capabilities == {
        "persistent",
        "multi-process",
        "notify",
        "multi-host",
        "streams",
        "queues",
    }
    assert backend.load_store_class() is PostgresStore and backend.test_server is not None


def test_isolated_urls_get_distinct_valid_schemas_and_keep_other_options() -> None:
    [backend] = durable_postgres.durable_store_backends()
    assert backend.isolated_url is not None
    base = "postgresql://app:p%40ss@db/app?sslmode=disable&schema=ignored"
    one, two = backend.isolated_url(base, "dct1a_0"), backend.isolated_url(base, "dct1a_1")
    stores = [PostgresStore(one), PostgresStore(two)]
    assert stores[0].schema != stores[1].schema
    assert all(s.schema.startswith("durable_test_") for s in stores)
    assert all(s._target.password == "p@ss" and "sslmode=disable" in s._target.dsn for s in stores)


def test_wake_keys_do_not_confuse_ids_that_concatenate_alike() -> None:
    assert wake_key("a:b", "c") != wake_key("a", "b:c")
    assert wake_key("ab", "c") != wake_key("a", "bc")
    assert len(wake_key("x" * 100_000, "y")) == 32


def test_channel_names_fit_postgres_identifier_limit() -> None:
    assert channel_name("durable") == "durable_signals_durable"
    assert len(channel_name("s" * 63).encode()) <= 63
    assert channel_name("a" * 63) != channel_name("a" * 62 + "b")
