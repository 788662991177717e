"""The example store passes the whole durable store contract."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from durable.store import Store
from durable_contract_tests import StoreContract, StoreFactory
from durable_example_store import JsonFileStore


class TestExampleStore(StoreContract):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        def make(same_data_as: Store | None = None) -> JsonFileStore:
            if isinstance(same_data_as, JsonFileStore):
                return JsonFileStore(same_data_as.path)
            return JsonFileStore(tmp_path / f"{uuid.uuid4().hex}.json")

        return make
