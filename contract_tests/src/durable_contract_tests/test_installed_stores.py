"""The contract over installed backends: ``pytest --pyargs durable_contract_tests [--durable-store NAME]``."""

from __future__ import annotations

import pytest

from durable_contract_tests import StoreContract, StoreFactory
from durable_contract_tests._backends import BackendTarget


class TestInstalledStore(StoreContract):
    """Each test gets stores over its own isolated URL of the backend (``isolated_url``)."""

    @pytest.fixture
    def store_factory(self, durable_backend: BackendTarget) -> StoreFactory:
        return durable_backend.factory()
