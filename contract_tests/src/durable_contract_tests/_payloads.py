"""Payloads and identifiers: large, unicode and hostile values come back exactly as stored."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from durable.store import RunQuery, RunStatus, Store
from durable_contract_tests._base import ContractBase
from durable_contract_tests._kit import HOSTILE_IDS, get, lease_of, make_run, make_step

MEGABYTES = 5


def big_json(megabytes: int) -> str:
    """Valid JSON text of about ``megabytes`` MB with non-ASCII and escapes, and unusual spacing
    that a store normalising JSON (rather than storing text) would change."""
    chunk = json.dumps(
        {"text": 'π≈3.14159 ✓ "quoted" \\ back\nslash', "n": [1, 2.5, None]}, ensure_ascii=False
    )
    count = megabytes * 1024 * 1024 // len(chunk.encode()) + 1
    return "[" + ",  ".join([chunk] * count) + "]"


def hostile_id(value: str) -> str:
    return value if len(value) < 60 else f"{len(value)} x's"


class PayloadContract(ContractBase, contract=True):
    """Several-MB values, unicode and identifiers built to break quoting or key schemes."""

    async def test_a_several_megabyte_checkpoint_round_trips_exactly(self, store: Store) -> None:
        payload = big_json(MEGABYTES)
        run = make_run("big", owner="o")
        await store.create_run(run)
        step = make_step("big", "huge", payload)
        assert await store.save_step(lease_of(run), step) == step
        [loaded] = await store.load_steps("big")
        assert loaded.result == payload

    async def test_several_megabyte_inputs_results_and_signals_round_trip_exactly(self, store: Store) -> None:
        payload = big_json(MEGABYTES)
        run = replace(make_run("big", owner="o"), inputs=payload)
        await store.create_run(run)
        assert (await get(store, "big")).inputs == payload
        await store.update_run(lease_of(run), RunStatus.COMPLETED, result=payload, release=True)
        assert (await get(store, "big")).result == payload
        await store.send_signal("big", "blob", "", payload)
        [delivery] = await store.list_signals("big", "blob")
        assert delivery.payload == payload

    async def test_json_text_is_stored_as_text_not_normalised(self, store: Store) -> None:
        odd = '{"b" : 1,"a":[1.0, 1e3, -0.0, "\\u00e9", "é"],  "b": 2}'
        run = replace(make_run("json", owner="o"), inputs=odd)
        await store.create_run(run)
        await store.save_step(lease_of(run), make_step("json", "k", odd))
        await store.send_signal("json", "s", "", odd)
        assert (await get(store, "json")).inputs == odd
        assert [s.result for s in await store.load_steps("json")] == [odd]
        assert [s.payload for s in await store.list_signals("json")] == [odd]

    @pytest.mark.parametrize("value", HOSTILE_IDS, ids=hostile_id)
    async def test_hostile_identifiers_are_stored_and_read_back_exactly(
        self, store: Store, value: str
    ) -> None:
        run = make_run(value, value, owner=value)
        stored, created = await store.create_run(run)
        assert created and stored == run
        assert await store.get_run(value) == run
        step = make_step(value, value, json.dumps(value), task=value, args_digest=value)
        assert await store.save_step(lease_of(run), step) == step
        assert await store.load_steps(value) == [step]
        assert await store.send_signal(value, value, value, json.dumps(value)) is True
        assert await store.send_signal(value, value, value, "null") is False
        [delivery] = await store.list_signals(value, value)
        assert (delivery.run_id, delivery.name, delivery.delivery_id) == (value, value, value)
        assert [r.run_id for r in await store.list_runs(RunQuery(workflow=value))] == [value]
        assert [r.run_id for r in await store.list_runs(RunQuery(id_prefix=value))] == [value]

    async def test_hostile_identifiers_do_not_touch_other_rows(self, store: Store) -> None:
        bystander = make_run("bystander", owner="o")
        await store.create_run(bystander)
        await store.save_step(lease_of(bystander), make_step("bystander", "k"))
        for value in HOSTILE_IDS:
            run = make_run(value, owner="o")
            await store.create_run(run)
            await store.save_step(lease_of(run), make_step(value, value))
            await store.send_signal(value, value, value, "1")
            assert await store.delete_run(value) is True
        assert [r.run_id for r in await store.list_runs(RunQuery(limit=1000))] == ["bystander"]
        assert len(await store.load_steps("bystander")) == 1

    async def test_unicode_payloads_round_trip_exactly(self, store: Store) -> None:
        text = json.dumps(
            {"emoji": "🚀👩‍💻", "rtl": "שלום", "cjk": "日本語", "sep": "\u2028\u2029", "zw": "a\u200bb"},
            ensure_ascii=False,
        )
        run = replace(make_run("ü-run", "wf-ß", owner="o"), inputs=text)
        await store.create_run(run)
        await store.save_step(lease_of(run), make_step("ü-run", "ключ", text))
        await store.send_signal("ü-run", "信号", "ид", text)
        assert (await get(store, "ü-run")).inputs == text
        assert [(s.key, s.result) for s in await store.load_steps("ü-run")] == [("ключ", text)]
        assert [(s.name, s.delivery_id, s.payload) for s in await store.list_signals("ü-run")] == [
            ("信号", "ид", text)
        ]
