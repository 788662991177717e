"""Unit tests of key building, encodings and URL handling (no server needed)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import fakeredis
import pytest
import redis.asyncio as aioredis

from durable.errors import ConfigurationError
from durable.store import StepStatus
from durable_redis import _isolated_url, durable_store_backends, durable_store_from_url
from durable_redis import _keys as k
from durable_redis._store import RedisStore, redact, split_url

ODD_IDS = ["", "%", "%25", "%7B", "{", "}", "a}b{c", "{x}", "tenant:1", "tenant", "a:b", "ü 🚀", "x" * 1000]


def hash_tag(key: str) -> str:
    """A key's hash tag, the part Redis hashes to a slot: between the first '{' and the next '}'."""
    start = key.index("{")
    end = key.index("}", start + 1)
    return key[start + 1 : end]


@pytest.mark.parametrize("run_id", ODD_IDS)
def test_escaping_a_run_id_is_reversible_and_brace_free(run_id: str) -> None:
    escaped = k.escape_run_id(run_id)
    assert escaped and "{" not in escaped and "}" not in escaped
    assert k.unescape_run_id(escaped) == run_id


def test_distinct_run_ids_never_share_a_key() -> None:
    space = k.KeySpace("app")
    keys = [key for run_id in ODD_IDS for key in space.run_keys(run_id)]
    assert len(set(keys)) == len(keys)
    assert space.index not in keys and space.channel not in keys


@pytest.mark.parametrize("run_id", ODD_IDS)
def test_every_key_of_a_run_has_the_same_non_empty_hash_tag(run_id: str) -> None:
    tags = {hash_tag(key) for key in k.KeySpace("app").run_keys(run_id)}
    assert len(tags) == 1 and tags != {""}


def test_runs_whose_ids_concatenate_alike_get_different_tags() -> None:
    space = k.KeySpace("app")
    assert hash_tag(space.run_keys("tenant:1")[0]) != hash_tag(space.run_keys("tenant")[0])


def test_prefixes_and_run_ids_cannot_be_traded_for_each_other() -> None:
    pairs = [("a", ":b"), ("a:", "b"), ("a", "b"), ("a:b", ""), ("a", "b:"), ("a:b", "c")]
    keys = [key for prefix, run_id in pairs for key in k.KeySpace(prefix).run_keys(run_id)]
    assert len(set(keys)) == len(keys)


TRICKY_PREFIXES = ["a", "a:", "a:b", "a:workflow", "a:status", "a:live", "a:runs", "a:ids", "a:{", "ü"]
TRICKY_NAMES = ["", "runs", "b", ":b", "x}:run", "{x}", "status:pending", "%", "live"]


def every_key(space: k.KeySpace, names: list[str]) -> set[str]:
    """Every key name a prefix may hold: its runs' (events and streams too), the indexes (the
    workflows' among them), the queues', the markers, and the previous layout's names."""
    keys = set(space.fixed())
    for name in names:
        keys.update(space.run_keys(name))
        keys.update(space.output_keys(name))
        keys.update(space.queue(name).all)
        keys.add(space.legacy_delivered(name))
        keys.add(space.workflow(name))
    keys.update(space.status(status) for status in k.STATUSES)
    keys.update((space.index, space.live, space.ids, space.layout, space.alive, space.expiring))
    return keys


def test_no_two_prefixes_share_a_key_of_any_kind() -> None:
    spaces = [k.KeySpace(prefix) for prefix in TRICKY_PREFIXES if "{" not in prefix]
    seen: dict[str, str] = {}
    for space in spaces:
        for key in every_key(space, TRICKY_NAMES):
            assert seen.setdefault(key, space.prefix) == space.prefix, (key, seen[key], space.prefix)


def test_a_prefix_owns_exactly_its_own_keys() -> None:
    spaces = [k.KeySpace(prefix) for prefix in TRICKY_PREFIXES if "{" not in prefix]
    for space in spaces:
        own = every_key(space, TRICKY_NAMES)
        assert all(space.owns(key) for key in own), space.prefix
        others = set().union(*(every_key(o, TRICKY_NAMES) for o in spaces if o is not space))
        assert not [key for key in others if space.owns(key)], space.prefix
        assert not space.owns(space.prefix + ":something-else")
        assert not space.owns(space.prefix + ":{x}:unknown-kind")


def test_a_runs_deliveries_live_in_one_key_named_sig() -> None:
    # python-durable 0.2's test_redis_signal_ttl counts the keys containing "sig" (issue 14).
    space = k.KeySpace("durable")
    named_sig = [
        key for key in every_key(space, ["ttl-test"]) - {space.legacy_delivered("ttl-test")} if "sig" in key
    ]
    assert named_sig == [space.run_keys("ttl-test")[2]] == ["durable:{ttl-test}:sigs"]


def test_the_keys_of_a_run_key_are_read_back_from_its_name() -> None:
    space = k.KeySpace("app")
    for run_id in ODD_IDS:
        for kind, key in zip(k.RUN_KINDS, space.run_keys(run_id), strict=True):
            assert space.run_id_of(key) == (run_id, kind)
        for kind, key in zip(k.OUTPUT_KINDS, space.output_keys(run_id), strict=True):
            assert space.run_id_of(key) == (run_id, kind)
        assert space.run_id_of(space.legacy_delivered(run_id)) == (run_id, "sigids")
    assert space.run_id_of("app:v2:{x}:run") is None
    assert space.run_id_of(space.workflow("x")) is None


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b"])
def test_a_prefix_with_braces_or_empty_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore(prefix=prefix)


def test_signal_dedupe_fields_do_not_collide_and_never_equal_the_counter_field() -> None:
    # Fields of a run's "delivered" hash.
    fields = {k.delivery_field("a", "b:c"), k.delivery_field("a:b", "c"), k.delivery_field("", "")}
    assert len(fields) == 3
    assert all(field[0].isdigit() for field in fields)


def test_a_step_survives_encoding_with_its_status_mark() -> None:
    from durable.store import StepRecord

    for status in StepStatus:
        step = StepRecord("r", "k#1", "t", "d", status, '"é"', None, 3, 1.25, 1_700_000_000.123456)
        encoded = k.encode_step(step)
        assert encoded[0] == ("c" if status is StepStatus.COMPLETED else "f")
        assert k.decode_step("r", "k#1", encoded) == step


def test_a_signal_entry_round_trips() -> None:
    body = k.encode_signal_body("approve", "d 1", '{"ok": true}', 1.5)
    record = k.decode_signal("r", "7 " + body)
    assert (record.seq, record.name, record.delivery_id, record.payload, record.sent_at) == (
        7,
        "approve",
        "d 1",
        '{"ok": true}',
        1.5,
    )


def test_url_options_of_durable_are_split_from_those_of_redis() -> None:
    url, ours = split_url("redis://h:1/2?prefix=p&ttl=5&socket_timeout=3")
    assert url == "redis://h:1/2?socket_timeout=3"
    assert ours == {"prefix": "p", "ttl": "5"}
    store = RedisStore.from_url("redis://h:1/2?prefix=p&ttl=0")
    assert (store.url, store.prefix, store.ttl) == ("redis://h:1/2", "p", 0.0)
    assert RedisStore.from_url("redis://h/0?prefix=p", prefix="q").prefix == "q"


def test_the_isolated_url_gives_a_fresh_prefix() -> None:
    url = _isolated_url("redis://h:6379/0?prefix=old&socket_timeout=2", "tok_1")
    store = RedisStore.from_url(url)
    assert store.prefix == "durable-test-tok_1"
    assert store.url == "redis://h:6379/0?socket_timeout=2"


def test_the_backend_is_declared_for_both_schemes() -> None:
    [backend] = durable_store_backends()
    assert (backend.name, backend.schemes) == ("redis", ("redis", "rediss"))
    assert backend.install_hint == "pip install 'python-durable[redis]'"
    assert backend.capabilities == {
        "persistent",
        "multi-process",
        "notify",
        "multi-host",
        "queues",
        "streams",
    }
    assert durable_store_from_url("sqlite:///x.db", {}) is None
    made = durable_store_from_url("rediss://h/0", {"ttl": 5})
    assert isinstance(made, RedisStore) and made.ttl == 5


def test_passwords_are_redacted_and_reach_the_client() -> None:
    url = "rediss://user:p%40ss%3Aw0rd@cache.example:6380/3"
    store = RedisStore(url)
    assert "p%40ss" not in repr(store) and "***" in repr(store)
    assert redact(url) == "rediss://user:***@cache.example:6380/3"
    client = store._make_client()
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["password"], kwargs["username"], kwargs["db"]) == ("p@ss:w0rd", "user", 3)
    assert client.connection_pool.connection_class is aioredis.SSLConnection


def test_an_unopened_store_pickles() -> None:
    store = RedisStore("redis://h/0", ttl=10, prefix="p")
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.url, copy.ttl, copy.prefix) == ("redis://h/0", 10, "p")


@pytest.mark.asyncio
async def test_the_cleanup_pattern_matches_only_its_own_prefix() -> None:
    # fakeredis stands in for the server here: this checks glob escaping, not the store's semantics.
    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    tricky = k.KeySpace("t[1]*?")
    other = k.KeySpace("t1x")
    for space in (tricky, other):
        for key in [*space.run_keys("r"), space.index]:
            await client.set(key, "1")
    matched = {key async for key in client.scan_iter(match=tricky.pattern)}
    assert matched == {*tricky.run_keys("r"), tricky.index}
    assert all(re.match(r"t\[1\]\*\?:", key) for key in matched)
    runs = {key async for key in client.scan_iter(match=tricky.run_pattern)}
    assert runs == set(tricky.run_keys("r"))


def test_nothing_claims_redis_cluster_support() -> None:
    # The store speaks to one server: its client is not cluster-aware and no test runs it on a
    # cluster. Every description, docstring and README paragraph that names Redis Cluster says so.
    import durable_redis

    [backend] = durable_store_backends()
    assert "not Redis Cluster" in backend.description
    assert "does not support Redis Cluster" in (durable_redis.__doc__ or "")
    root = Path(__file__).resolve().parents[3]
    texts = [p.read_text() for p in sorted((root / "plugins/redis/src/durable_redis").glob("*.py"))]
    texts += [(root / name).read_text() for name in ("README.md", "plugins/redis/pyproject.toml")]
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            if re.search(r"redis cluster", paragraph, re.IGNORECASE):
                assert re.search(r"\bnot\b", paragraph), paragraph
