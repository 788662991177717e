"""Identities: ids that differ only by case, Unicode form, separators, spaces or escapes are
different ids, stored side by side and each read back as itself.

A store that turns ids into file names or keys lossily (``order-1``, ``order_1`` and ``order.1``
to one name), folds case (a case-insensitive file system or collation), normalises Unicode or
trims spaces (SQL's PAD SPACE) passes tests that create and delete one hostile id at a time; here
every group of look-alikes coexists.
"""

from __future__ import annotations

import json

from durable.store import RunQuery, Store
from durable_contract_tests._base import ContractBase
from durable_contract_tests._kit import make_run, make_step, owned_run

_LONG = "p" * 200

LOOKALIKES: dict[str, tuple[str, ...]] = {
    "case": ("order-a", "Order-A", "ORDER-A", "order-A"),
    "unicode forms": ("caf\u00e9", "cafe\u0301", "CAF\u00c9", "\uff43\uff41\uff46\u00e9", "\ufb01le", "file"),
    "separators": ("order-1", "order_1", "order.1", "order 1", "order1", "order:1", "order~1"),
    "spaces": ("job", "job ", " job", " job ", "job  ", "job\t", "job\u00a0"),
    "percent-encodings": ("a b", "a%20b", "a+b", "a%2520b", "a%41", "aA"),
    "slashes": ("a/b", "a%2Fb", "a%2fb", "a\\b", "a//b", "a/./b"),
    "path segments": (".", "..", "./.", "x/..", "x"),
    "long ids sharing a 200-character prefix": (
        _LONG + "a",
        _LONG + "b",
        _LONG + "A",
        _LONG,
        _LONG + "a" * 300,
    ),
}
"""Groups of identifiers that a lossy mapping to names or keys would confuse."""


def _shown(value: str) -> str:
    return repr(value) if len(value) < 60 else f"{value[:12]!r}...({len(value)} characters){value[-8:]!r}"


def _every_lookalike() -> list[str]:
    return [value for group in LOOKALIKES.values() for value in group]


class IdentityContract(ContractBase, contract=True):
    """Run ids, workflow names, step keys, signal names and delivery ids are compared exactly."""

    async def test_runs_whose_ids_look_alike_are_stored_side_by_side_and_read_back_as_themselves(
        self, store: Store
    ) -> None:
        wrong: list[str] = []
        for value in _every_lookalike():
            run = make_run(value, inputs=json.dumps({"id": value}))
            stored, created = await store.create_run(run)
            if not created or stored != run:
                wrong.append(
                    f"creating run {_shown(value)} returned {_shown(stored.run_id)} (created={created}): "
                    "the store took it for another run"
                )
        for value in _every_lookalike():
            found = await store.get_run(value)
            if found is None or found.run_id != value or json.loads(found.inputs) != {"id": value}:
                got = "nothing" if found is None else f"run {_shown(found.run_id)}, inputs {found.inputs}"
                wrong.append(f"get_run({_shown(value)}) returned {got}")
        listed = [run.run_id for run in await store.list_runs(RunQuery(limit=10_000))]
        if sorted(listed) != sorted(set(_every_lookalike())):
            wrong.append(f"list_runs returned {len(listed)} runs for {len(_every_lookalike())} created")
        for group in LOOKALIKES.values():
            for value in group:
                prefixed = {run.run_id for run in await store.list_runs(RunQuery(id_prefix=value))}
                expected = {other for other in _every_lookalike() if other.startswith(value)}
                if prefixed != expected:
                    wrong.append(
                        f"list_runs(id_prefix={_shown(value)}) returned {sorted(map(_shown, prefixed))}, "
                        f"expected {sorted(map(_shown, expected))}"
                    )
        assert not wrong, "look-alike run ids were confused:\n" + "\n".join(wrong)

    async def test_deleting_a_run_leaves_its_lookalikes_alone(self, store: Store) -> None:
        for group in LOOKALIKES.values():
            for value in group:
                await store.create_run(make_run(value))
            first, *others = group
            assert await store.delete_run(first) is True
            assert await store.get_run(first) is None
            left = [other for other in others if await store.get_run(other) is None]
            assert not left, (
                f"deleting run {_shown(first)} deleted its look-alike(s) {', '.join(map(_shown, left))} too"
            )

    async def test_runs_of_workflows_whose_names_look_alike_are_listed_apart(self, store: Store) -> None:
        wrong = []
        for i, name in enumerate(_every_lookalike()):
            await store.create_run(make_run(f"run-{i}", name))
        for i, name in enumerate(_every_lookalike()):
            listed = [run.run_id for run in await store.list_runs(RunQuery(workflow=name))]
            if listed != [f"run-{i}"]:
                wrong.append(f"list_runs(workflow={_shown(name)}) returned {listed}, expected ['run-{i}']")
        assert not wrong, "look-alike workflow names were confused:\n" + "\n".join(wrong)

    async def test_steps_whose_keys_look_alike_are_separate_checkpoints(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        keys = _every_lookalike()
        for i, key in enumerate(keys):
            step = make_step("run-1", key, json.dumps(key), finished_at=1_700_000_000.0 + i)
            stored = await store.save_step(lease, step)
            assert stored == step, (
                f"saving step {_shown(key)} returned step {_shown(stored.key)}: the store took one "
                "key for another"
            )
        loaded = {step.key: step.result for step in await store.load_steps("run-1")}
        wrong = [key for key in keys if loaded.get(key) != json.dumps(key)]
        assert len(loaded) == len(keys) and not wrong, (
            f"load_steps returned {len(loaded)} steps for {len(keys)} keys; wrong or missing: "
            + ", ".join(map(_shown, wrong))
        )

    async def test_signals_whose_names_look_alike_are_separate_signals(self, store: Store) -> None:
        names = _every_lookalike()
        for name in names:
            assert await store.send_signal("run-1", name, "", json.dumps(name)) is True, (
                f"a delivery of signal {_shown(name)} was taken for a duplicate of another name's"
            )
        wrong = []
        for name in names:
            payloads = [s.payload for s in await store.list_signals("run-1", name)]
            if payloads != [json.dumps(name)]:
                wrong.append(f"list_signals(name={_shown(name)}) returned {payloads}")
        assert len(await store.list_signals("run-1")) == len(names)
        assert not wrong, "look-alike signal names were confused:\n" + "\n".join(wrong)

    async def test_deliveries_whose_ids_look_alike_are_separate_deliveries(self, store: Store) -> None:
        ids = _every_lookalike()
        for delivery_id in ids:
            assert await store.send_signal("run-1", "go", delivery_id, json.dumps(delivery_id)) is True, (
                f"delivery {_shown(delivery_id)} was taken for a duplicate of another delivery"
            )
        listed = [(s.delivery_id, s.payload) for s in await store.list_signals("run-1", "go")]
        assert listed == [(i, json.dumps(i)) for i in ids], (
            "look-alike delivery ids were confused or reordered"
        )
        for delivery_id in ids:
            assert await store.send_signal("run-1", "go", delivery_id, "null") is False
