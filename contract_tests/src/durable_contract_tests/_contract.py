"""``StoreContract``: every concern of the contract in one base class."""

from __future__ import annotations

from durable_contract_tests._activity import ActivityContract
from durable_contract_tests._atomicity import AtomicityContract
from durable_contract_tests._base import ContractBase, _register_definitions
from durable_contract_tests._checkpoints import CheckpointContract
from durable_contract_tests._clock import ClockContract
from durable_contract_tests._declarations import DeclarationContract
from durable_contract_tests._due import DueRunContract
from durable_contract_tests._identities import IdentityContract
from durable_contract_tests._isolation import IsolationContract
from durable_contract_tests._leases import LeaseContract
from durable_contract_tests._lifecycle import LifecycleContract
from durable_contract_tests._listing import ListingContract
from durable_contract_tests._opening import OpeningContract
from durable_contract_tests._payloads import PayloadContract
from durable_contract_tests._persistence import PersistenceContract
from durable_contract_tests._provenance import ProvenanceContract
from durable_contract_tests._queues import QueueContract
from durable_contract_tests._runs import RunContract
from durable_contract_tests._signals import SignalContract
from durable_contract_tests._streams import StreamContract
from durable_contract_tests._workflow import WorkflowContract

__all__ = ["StoreContract"]

# The shared fixtures are contract members too: shadowing `store` would bypass the factory.
_register_definitions(ContractBase)


class StoreContract(
    DeclarationContract,
    OpeningContract,
    CheckpointContract,
    RunContract,
    ProvenanceContract,
    LeaseContract,
    ClockContract,
    ListingContract,
    DueRunContract,
    LifecycleContract,
    ActivityContract,
    SignalContract,
    IsolationContract,
    IdentityContract,
    PayloadContract,
    AtomicityContract,
    PersistenceContract,
    WorkflowContract,
    QueueContract,
    StreamContract,
    contract=True,
):
    """The whole store contract. Subclass it as ``class TestMyStore(StoreContract)`` and
    provide a ``store_factory`` fixture (see ``StoreFactory`` for exactly what it must do)::

        @pytest.fixture
        def store_factory(self, tmp_path):
            def make(same_data_as=None):
                path = same_data_as.path if same_data_as else tmp_path / f"{uuid.uuid4().hex}.db"
                return MyStore(path)
            return make

    Tests needing a capability the store does not declare skip with a reason. Replacing a
    contract test needs ``@override_contract("reason")``; a silent override is an error.
    """
