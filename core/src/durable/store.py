"""The ``Store`` contract: what a persistence backend must do for the core.

A store keeps runs, step checkpoints and signal deliveries. It never serialises
values (it stores the JSON text the core hands it) and never decides workflow
semantics; it only guarantees the atomic operations documented on each method.
``durable-contract-tests`` checks every one of these promises against a real store.

Fencing: every write made on behalf of an executing run carries its ``Lease``.
A store must refuse (raise ``LeaseLost``) a fenced write whose ``lease.token`` is
not the run's current ``lease_token``, atomically with the write itself.

docs/store-authors.md says how to package a store as a plugin and run the suite over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self

from durable import _codec
from durable._lifecycle import DUE_STATUSES, is_due
from durable._records import (
    Enqueued,
    ErrorInfo,
    Lease,
    QueuedRun,
    QueueLimits,
    QueueStats,
    RunQuery,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    StepStatus,
)
from durable._redact import redact_text, redact_url
from durable.errors import ConfigurationError, StoreNotFound

__all__ = [
    "DEFAULT_QUEUE",
    "Capability",
    "Enqueued",
    "ErrorInfo",
    "InMemoryStore",
    "Lease",
    "OutputWatch",
    "QueueLimits",
    "QueueStats",
    "QueuedRun",
    "RunQuery",
    "RunRecord",
    "RunStatus",
    "SQLiteStore",
    "SignalRecord",
    "StepRecord",
    "StepStatus",
    "Store",
    "StoreNotFound",
    "StreamItems",
    "accepts_activity",
    "accepts_create",
    "accepts_read_only",
    "accepts_workflows",
    "compact_json",
    "is_due",
    "redact_text",
    "redact_url",
]


class Capability:
    """Names a store may list in ``Store.capabilities`` (and its plugin in
    ``StoreBackend.capabilities``, the same set); the contract suite skips what is absent."""

    PERSISTENT = "persistent"
    """Data survives closing and reopening the store, and a process killed while writing."""
    MULTI_PROCESS = "multi-process"
    """Several store objects, processes (or hosts) may share the data at once."""
    NOTIFY = "notify"
    """``wait_for_signal`` wakes on a delivery, made through any store object over the same data
    (another process's too, with ``multi-process``), instead of polling."""
    MULTI_HOST = "multi-host"
    """Processes on several hosts, whose clocks may disagree, may share the data: every lease
    comparison and expiry uses one clock, the store's (a database server's), and ``Store.clock``
    only places the times callers take on it."""

    QUEUES = "queues"
    """Named queues (``wf.queue``): ``enqueue_run``, ``claim_queued`` (limits checked inside the
    claim, atomically), ``get_queued``, ``queue_stats``, ``list_queues``; ``due_runs`` leaves
    queued runs out. docs/QUEUES.md says what each store must do."""

    STREAMS = "streams"
    """Events and streams of a run (``wf.set_event``, ``wf.write_stream``): ``set_event``,
    ``get_events``, ``append_stream``, ``close_stream``, ``read_stream``, ``watch_output``;
    ``delete_run`` deletes them with the run. docs/STREAMS.md says what each store must do."""

    ALL = frozenset({PERSISTENT, MULTI_PROCESS, NOTIFY, MULTI_HOST, QUEUES, STREAMS})
    """Every name there is: anything else in ``capabilities`` is a mistake (a typo would skip tests)."""


class StreamItems(NamedTuple):
    """What ``Store.read_stream`` returns: ``(offset, value)`` pairs in offset order, and whether
    the stream was closed when they were read (then no item follows the last one)."""

    items: list[tuple[int, str]]
    closed: bool


class OutputWatch:
    """What ``Store.watch_output`` yields: one reader's wake-up, set by every change after it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Return once woken since the last return (at once if so already), or after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()  # before the caller's next read: a change after it wakes the next wait


DEFAULT_QUEUE = "default"
"""The name workers give the runs without a queue entry (``due_runs`` serves them): ``durable worker
--queue default``. A store that can wakes ``wait_for_queues`` callers of it when it records a new
pending run (``create_run``)."""


def compact_json(data: Any) -> str:
    """Plain JSON data (dicts with string keys, lists, strings, numbers, booleans, ``None``) as
    compact JSON text that keeps non-ASCII characters: for a store that packs several fields
    into one value. Faster than ``json.dumps``, which sets up an encoder on every call."""
    return _codec._encode(data)


def accepts_activity(store: Store) -> bool:
    """Whether the store's ``update_run`` and ``renew_lease`` take ``activity=`` (stores written
    before 0.4 do not: the core then leaves the field alone)."""
    return _accepts(type(store), "update_run", "activity") and _accepts(
        type(store), "renew_lease", "activity"
    )


def accepts_create(store: Store) -> bool:
    """Whether the store's ``open`` takes ``create=`` (stores written before 0.4 do not: the CLI
    then opens them as they are, which may create their data)."""
    return _accepts(type(store), "open", "create")


def accepts_read_only(store: Store) -> bool:
    """Whether the store's ``open`` takes ``read_only=`` (open for reading only, as ``durable
    replay`` asks: a production file is then neither written nor upgraded)."""
    return _accepts(type(store), "open", "read_only")


def accepts_workflows(store: Store) -> bool:
    """Whether the store's ``due_runs`` takes ``workflows=`` (stores written before 0.4 do not:
    workers then filter what it returns)."""
    return _accepts(type(store), "due_runs", "workflows")


@functools.cache
def _accepts(cls: type, method: str, parameter: str) -> bool:
    import inspect

    return parameter in inspect.signature(getattr(cls, method)).parameters


URL_ATTRIBUTE = "_durable_url"
"""Where ``PluginManager.store_from_url`` records the URL a store was made from (for its repr)."""


class Store(ABC):
    """Base class of every store. Subclass it and implement the abstract methods: each method's
    docstring is its contract, and ``durable-contract-tests`` checks every one of them.

    Every method is atomic: concurrent calls (coroutines of one process, other store objects or
    processes over the same data) see it done or not done, never half done, and a process killed
    during a write leaves the old record or the new one, each readable. Identifiers (run ids,
    step keys, workflow, signal and delivery names) are compared exactly, as the code points they
    are: no case folding, Unicode normalisation, trimming or escaping that could make two of them
    one. Values (inputs, results, errors, payloads) are stored as the exact text given.

    Times are seconds since the epoch. The caller's are stored as given: ``created_at`` and
    ``updated_at`` of the record ``create_run`` inserts, ``wake_at`` of ``update_run``, a step's
    ``started_at`` and ``finished_at``. The store takes the others from its own clock (a server's,
    for a store with one): ``lease_expires_at`` (now plus ``lease_seconds``), ``sent_at`` of a
    delivery and the ``wake_at`` it gives a waiting run, and ``updated_at``, which every write that
    changes a run after its creation sets to now: ``claim_run``, ``update_run``, ``request_cancel``,
    a ``reset_run`` that resets, a ``send_signal`` that wakes a waiting run. ``renew_lease`` leaves
    ``updated_at`` alone: a heartbeat is not a change (``RunQuery.updated_before`` and
    ``durable runs prune`` go by it).
    """

    name: ClassVar[str] = "store"
    capabilities: ClassVar[frozenset[str]] = frozenset()

    loop_bound: ClassVar[bool] = True
    """Connections belong to the event loop that opened them: a ``Workflow`` used from a new
    loop (a second ``asyncio.run``) opens a fresh store from the same URL."""

    poll_interval: float = 0.25
    """Upper bound of the polling interval used by the default ``wait_for_signal``."""

    clock: Callable[[], float] = time.time
    """This process's clock as the store sees it (``time.time``): the clock of the times callers
    pass (``due_runs(now)``, a new run's lease expiry). Replace it on one store object to skew
    that store's idea of local time (the contract suite does). A ``multi-host`` store judges
    leases on its own clock and uses this one only to place callers' times on it."""

    # -- lifecycle ---------------------------------------------------------------

    @abstractmethod
    async def open(self, *, create: bool = True) -> None:
        """Connect, and create or migrate the store's data (its file, schema or key prefix).
        Called once, before any other method.

        ``create=False`` opens only data that exists (the CLI and ``durable ui`` open stores so:
        a mistyped URL must not make an empty store): a store whose data does not exist raises
        ``StoreNotFound`` naming it and creates nothing, no file, directory, schema or key. Data
        exists once an ``open()`` created it; for a store in memory, that is an earlier ``open()``
        of the same object.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release every connection and thread. Safe to call twice. Writes it has returned from
        stay written (``persistent``): nothing is lost by closing."""

    async def setup(self) -> None:
        """Alias of ``open()``, the original library's name."""
        await self.open()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- runs --------------------------------------------------------------------

    @abstractmethod
    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        """Insert ``run`` unless a run with its id exists.

        Returns the stored record and whether this call created it. Of concurrent
        creators exactly one gets ``True``; the others get the stored run, unchanged. ``run``
        is stored exactly as given, its ``created_at`` and ``updated_at`` included. It may
        already carry a lease (owner, token 1, expiry): the creator then owns the new run.
        Deliveries sent to its id before it existed are kept (``send_signal``).
        """

    @abstractmethod
    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None`` if there is none with that id."""

    @abstractmethod
    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        """Take the run's lease if nobody holds it (``durable._lifecycle``: a claim).

        Succeeds when the run exists, its status is in ``CLAIMABLE`` (not completed or
        cancelled) and it has no owner or an expired lease. On success, atomically: status
        becomes ``running``, ``lease_token`` increases by one, ``owner`` and
        ``lease_expires_at`` are set, ``wake_at`` and ``activity`` cleared, ``updated_at`` set
        to now. Returns ``None`` otherwise, changing nothing. Refusing a claimable run that
        nobody holds is a bug the engine reports (``StoreError``) rather than wait forever.
        """

    @abstractmethod
    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        """Set a held lease to expire ``lease_seconds`` from now and return the run (callers read
        ``cancel_requested``); ``activity``, unless ``None``, replaces the stored one.

        ``lease_seconds=0`` gives the lease back while keeping ``owner`` (the last owner, shown
        for an interrupted run): another executor may claim the run at once. Status and
        ``updated_at`` are kept. Raises ``LeaseLost`` if ``lease.token`` is no longer current.

        The token alone fences it: while no claim has followed, a lease renews whether it
        expired or was released (``update_run(release=True)``), and ``owner`` becomes
        ``lease.owner`` again. The engine stops renewing before it releases.
        """

    @abstractmethod
    async def update_run(
        self,
        lease: Lease,
        status: RunStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        wake_at: float | None = None,
        release: bool = False,
        activity: str | None = None,
    ) -> None:
        """Fenced write of the run's status and outcome fields (``result``, ``error``, ``wake_at``
        and ``activity`` are written as given, ``None`` included); ``updated_at`` becomes now.

        With ``release=True`` the lease is dropped (``owner`` and ``lease_expires_at``
        cleared, token kept) so another executor may claim the run at once; without it the
        lease is kept as it is. Raises ``LeaseLost`` if the token is stale (writing nothing).
        """

    @abstractmethod
    async def request_cancel(self, run_id: str) -> RunRecord | None:
        """Ask a run to stop; returns the run after the change, or ``None`` if unknown.

        Sets ``cancel_requested`` and ``updated_at``. If nobody holds a live lease and the
        status is not final, the status becomes ``cancelled`` at once; otherwise the owner
        sees the flag when it renews its lease and cancels itself. A final run keeps its status.
        """

    @abstractmethod
    async def reset_run(self, run_id: str) -> RunRecord | None:
        """Make a cancelled or failed run claimable again (``resume()``), in one atomic step with
        reading its status; returns the run after it, or ``None`` if the run is unknown.

        Status becomes ``pending``; ``cancel_requested``, ``error``, ``wake_at`` and ``activity``
        are cleared and ``updated_at`` set to now. Owner, lease, result and checkpoints are kept.
        A run in any other status (pending, running, waiting, completed) is returned unchanged:
        ``durable._lifecycle.TRANSITIONS`` lists no reset from them, and a resume that raced
        a claim must not take a running run from its owner.
        """

    @abstractmethod
    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching ``query`` (see ``RunQuery.matches``), newest ``created_at`` first,
        ties broken by ``run_id``, then ``offset`` and ``limit`` applied."""

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        """Runs a worker should resume at ``now`` (``durable._lifecycle.is_due``), at most ``limit``,
        oldest ``created_at`` first (ties by ``run_id``), so old runs are not starved by new ones;
        with ``workflows``, only runs of those workflows (a worker asks for what it can execute, so
        due runs of other workflows cannot crowd its own out). A run with a queue entry
        (``enqueue_run``, ``queues`` stores) is never returned: ``claim_queued`` serves it, within
        its queue's limits.

        This default reads every run whose status is in ``DUE_STATUSES`` through ``list_runs``;
        our stores override it with an indexed query returning the same runs, so a poll costs the
        same however many finished runs the store holds.
        """
        found: list[RunRecord] = []
        offset, page_size = 0, 500
        while True:
            page = await self.list_runs(RunQuery(statuses=DUE_STATUSES, limit=page_size, offset=offset))
            found.extend(
                run for run in page if is_due(run, now) and (workflows is None or run.workflow in workflows)
            )
            if len(page) < page_size:
                break
            offset += page_size
        found.sort(key=lambda run: (run.created_at, run.run_id))
        return found[:limit]

    @abstractmethod
    async def delete_run(self, run_id: str) -> bool:
        """Delete a run with its steps and signals (and its queue entry, events and streams).
        Returns whether it existed."""

    # -- queues (Capability.QUEUES; docs/QUEUES.md) -----------------------------------------
    #
    # A queued run is an ordinary run (its RunRecord, steps, signals and lease are as above) plus
    # a ``QueuedRun`` entry the store keeps beside it, in its own table or keys. Stores without
    # the capability inherit these defaults, which refuse: ``wf.queue`` and ``queue=`` need it.

    async def enqueue_run(self, run: RunRecord, entry: QueuedRun) -> tuple[RunRecord, Enqueued]:
        """Insert the pending ``run`` and its queue ``entry`` in one atomic write, or collapse it
        into a debounced run; returns the stored run and what was done.

        Without ``entry.debounce_key``: as ``create_run`` (``EXISTS`` and nothing written if a run
        with its id exists, else ``CREATED``: both records stored as given, ``started_at`` None).

        With ``entry.debounce_key``, first, in the same atomic step: if the queue holds a run with
        that key that is ``pending`` and was never started (``started_at`` None, token 0), then
        when it is of ``run.workflow`` it takes ``run``'s ``inputs``, ``inputs_digest`` and
        ``updated_at`` and ``entry``'s ``priority``, ``partition_key``, ``not_before`` and
        ``enqueued_at`` (its id, ``created_at`` and key are kept) and ``REPLACED`` is returned with
        it; when it is of another workflow, it is returned unchanged with ``EXISTS``. Of
        concurrent debounced enqueues with one key, exactly one creates. A claim racing a replace
        sees the run before it or after it, never half replaced.

        Stores with ``notify`` wake idle claimers of ``entry.queue`` (``wait_for_queues``).
        """
        raise self._no_queues("enqueue_run")

    async def claim_queued(
        self,
        queue: str,
        now: float,
        owner: str,
        lease_seconds: float,
        limits: QueueLimits,
        *,
        limit: int = 1,
        workflows: Collection[str] | None = None,
    ) -> list[tuple[RunRecord, Lease]]:
        """Claim up to ``limit`` runs of ``queue`` that the limits allow, in one atomic step with
        counting what the limits count; returns each claimed run (as stored after the claim) with
        its lease, in claim order.

        Candidates: runs with an entry in ``queue`` that ``durable._lifecycle.is_due`` accepts at
        ``now`` (pending, interrupted, or parked and woken; nobody holds a live lease) whose
        ``not_before <= now`` (``now``, ``not_before`` and ``wake_at`` are on the caller's clock),
        of ``workflows`` when given, taken in order of ``(priority, enqueued_at, run_id)``.
        Walking them in that order, a candidate is claimed unless:

        * ``limits.concurrency``: the queue's runs holding a live lease already number that many
          (then no further candidate is claimed);
        * ``limits.partition_concurrency``: its partition's runs holding a live lease already
          number that many (skipped: a later candidate of another partition may be claimed);
        * ``limits.rate_limit = (n, seconds)``, and it was never started: ``n`` runs of the queue
          were first claimed within the last ``seconds`` (skipped; a run started before, resumed
          after a park or a crash, is not a new start).

        Live leases are counted on the store's clock (as ``claim_run`` judges them), so the slot
        of an owner that died frees itself when its lease expires, and one given back
        (``update_run(release=True)``, ``renew_lease(lease, 0)``, a final status) frees at once.
        A claim writes what ``claim_run`` writes, and sets ``started_at`` to the store's now on
        a first claim. Two claims never both take a slot: concurrent claimers of one queue are
        serialised by the store (one transaction, a lock per queue, one script).
        """
        raise self._no_queues("claim_queued")

    async def get_queued(self, run_id: str) -> QueuedRun | None:
        """The run's queue entry, or ``None`` if it has none (or there is no such run)."""
        raise self._no_queues("get_queued")

    async def queue_stats(self, queue: str, now: float, *, window: float | None = None) -> QueueStats:
        """``queue``'s counts at ``now`` (``QueueStats``); ``window`` (seconds): also count the first
        claims within it. A read: writes nothing."""
        raise self._no_queues("queue_stats")

    async def list_queues(self) -> list[str]:
        """Names of the queues holding a run that is not completed or cancelled, sorted."""
        raise self._no_queues("list_queues")

    async def wait_for_queues(self, queues: Collection[str], timeout: float) -> None:
        """Return when a run of one of ``queues`` may have become claimable (an enqueue, a freed
        slot, a woken run), or after ``timeout`` seconds; may return early. Workers call it
        between claims; polling at ``timeout`` stays the safety net.

        This default returns on this process's wake-ups (``wake_queue_waiters``); stores with
        ``notify`` also wake it from other store objects and processes (LISTEN/NOTIFY, pub/sub).
        """
        event = asyncio.Event()
        registry: dict[str, set[asyncio.Event]] = self.__dict__.setdefault("_queue_waiters", {})
        for queue in queues:
            registry.setdefault(queue, set()).add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            for queue in queues:
                waiters = registry.get(queue)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        registry.pop(queue, None)

    def wake_queue_waiters(self, queue: str | None = None) -> None:
        """Wake this process's ``wait_for_queues`` callers of ``queue`` (all of them: ``None``)."""
        registry: dict[str, set[asyncio.Event]] = self.__dict__.get("_queue_waiters", {})
        for name in list(registry) if queue is None else [queue]:
            for event in registry.get(name, ()):
                event.set()

    def _no_queues(self, method: str) -> ConfigurationError:
        return ConfigurationError(
            f"{self!r} does not declare the {Capability.QUEUES!r} capability, so it has no {method}(): "
            "named queues (wf.queue, queue=) need a store that keeps them (docs/QUEUES.md)"
        )

    # -- events and streams (Capability.STREAMS; docs/STREAMS.md) ------------------------------
    #
    # Per run, beside its record (never in RunRecord): events, a latest value per key, and streams,
    # append-only lists per key whose items are numbered 0, 1, 2, ... (their offsets) and which may
    # be closed. Values are the codec's JSON text, stored exactly as given, as large as payloads.
    # Writes are fenced by the run's lease. Stores without the capability inherit these defaults,
    # which refuse: wf.set_event, wf.write_stream and their readers need it.

    async def set_event(self, lease: Lease, key: str, value: str) -> None:
        """Fenced write: event ``key`` of ``lease.run_id`` becomes ``value`` (replacing the one before),
        atomically with the fencing check (``LeaseLost`` and nothing written if stale). Wakes
        ``watch_output`` watchers of the run (every store object's, with ``notify``)."""
        raise self._no_streams("set_event")

    async def get_events(self, run_id: str) -> dict[str, str]:
        """Every event of the run, key -> latest value, in one read (``{}`` for none or no run)."""
        raise self._no_streams("get_events")

    async def append_stream(
        self, lease: Lease, key: str, value: str, *, write_id: str | None = None
    ) -> int | None:
        """Fenced append of ``value`` to stream ``key`` of ``lease.run_id``; returns its offset.

        Offsets are 0, 1, 2, ... per run and key, in append order, with no gap: concurrent appends
        are serialised (one transaction, a lock, one script), so every reader sees the same order.
        ``write_id``, when given, makes the append idempotent: if an item of that stream was
        appended with it, that item's offset is returned and nothing is written (the core passes a
        workflow body's step key, so a replay after a crash between append and checkpoint does not
        append again). A closed stream takes no item: ``None``, nothing written (a repeated
        ``write_id`` still returns its offset). ``LeaseLost`` if stale. Wakes ``watch_output``.
        """
        raise self._no_streams("append_stream")

    async def close_stream(self, lease: Lease, key: str) -> None:
        """Fenced: mark stream ``key`` of ``lease.run_id`` closed (existing or not, twice is once), so
        readers end after its last item. ``LeaseLost`` if stale. Wakes ``watch_output``."""
        raise self._no_streams("close_stream")

    async def read_stream(self, run_id: str, key: str, offset: int, limit: int = 1000) -> StreamItems:
        """Up to ``limit`` items of the stream from ``offset`` on, in offset order, and whether it is
        closed, read together (a closed stream's last item is among what one read can see). An
        unknown stream or run: no items, not closed. A read: writes nothing."""
        raise self._no_streams("read_stream")

    async def list_streams(self, run_id: str) -> dict[str, tuple[int, bool]] | None:
        """Every stream of the run (appended to or closed): key -> (its number of items, whether it
        is closed), in one read; ``{}`` for none or no run. Optional: this default answers ``None``
        (the store cannot list them), and ``durable runs show`` then shows only the streams the
        run's journal names (those written from the workflow body)."""
        return None

    @contextlib.asynccontextmanager
    async def watch_output(self, run_id: str) -> AsyncIterator[OutputWatch]:
        """Watch the run's events and streams: ``await watch.wait(timeout)`` returns once they may
        have changed since the watch began or the last wait returned (``set_event``,
        ``append_stream``, ``close_stream``, the run reaching a final status or being deleted), or
        after ``timeout``; it may return early. Readers enter it before their first read, so no
        change between a read and the next wait is missed, and still wait at most a safety-net
        timeout.

        This default is woken by ``wake_output_waiters``, which stores call after those writes in
        this process; stores with ``notify`` also call it when another store object or process
        made one (a change watcher, LISTEN/NOTIFY, pub/sub), subscribing here if they need to.
        """
        watch = OutputWatch()
        registry: dict[str, set[asyncio.Event]] = self.__dict__.setdefault("_output_waiters", {})
        registry.setdefault(run_id, set()).add(watch.event)
        try:
            yield watch
        finally:
            waiters = registry.get(run_id)
            if waiters is not None:
                waiters.discard(watch.event)
                if not waiters:
                    registry.pop(run_id, None)

    def wake_output_waiters(self, run_id: str) -> None:
        """Wake this process's ``watch_output`` watchers of the run (safe to call from the loop only)."""
        registry: dict[str, set[asyncio.Event]] = self.__dict__.get("_output_waiters", {})
        for event in registry.get(run_id, ()):
            event.set()

    def _no_streams(self, method: str) -> ConfigurationError:
        return ConfigurationError(
            f"{self!r} does not declare the {Capability.STREAMS!r} capability, so it has no {method}(): "
            "events and streams (wf.set_event, wf.write_stream) need a store that keeps them "
            "(docs/STREAMS.md)"
        )

    # -- steps -------------------------------------------------------------------

    @abstractmethod
    async def load_steps(self, run_id: str) -> list[StepRecord]:
        """Every checkpoint of the run, in one round trip, ordered by ``finished_at`` (not by
        ``started_at`` or by when it was saved: of steps run in parallel, one that started first
        may finish last); steps with equal ``finished_at`` come in any order. ``[]`` for a run
        without checkpoints or no run at all."""

    @abstractmethod
    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        """Fenced write of a checkpoint; returns the record that is stored afterwards.

        First completed writer wins: if a ``completed`` step with that key exists it
        is returned unchanged. A ``failed`` step is replaced by any later write.
        Raises ``LeaseLost`` if the token is stale (and writes nothing).
        """

    async def save_steps(self, lease: Lease, steps: Iterable[StepRecord]) -> list[StepRecord]:
        """Several checkpoints of one run; stores may do this in one transaction."""
        return [await self.save_step(lease, step) for step in steps]

    # -- signals -----------------------------------------------------------------

    @abstractmethod
    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        """Record one delivery unless ``(run_id, name, delivery_id)`` exists.

        Returns whether it was recorded. Deliveries of a run get increasing ``seq``
        numbers in arrival order; ``sent_at`` is now. The run need not exist: its deliveries
        are kept when ``create_run`` creates it. If the run is ``waiting``, its ``wake_at``
        and ``updated_at`` are set to now in the same atomic step, so workers see it due.
        Stores with ``notify`` wake ``wait_for_signal`` callers of every store object over the
        same data; the others' waiters find it at their next poll.
        """

    @abstractmethod
    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        """Deliveries for the run (of one name if given), ordered by ``seq``."""

    async def wait_for_signal(
        self, run_id: str, name: str, index: int, timeout: float | None
    ) -> SignalRecord | None:
        """Wait for the ``index``-th (0-based) delivery of ``name``; ``None`` on timeout.

        This default re-reads ``list_signals`` at a growing interval up to
        ``poll_interval``, and at once whenever ``wake_local_waiters`` is called for the
        run and name (stores call it after recording a delivery in this process).
        """
        event = asyncio.Event()
        registry = self._local_waiters()
        waiters = registry.setdefault((run_id, name), set())
        waiters.add(event)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            interval = 0.005
            while True:
                event.clear()  # before reading: a delivery after the read still wakes us
                deliveries = await self.list_signals(run_id, name)
                if len(deliveries) > index:
                    return deliveries[index]
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        event.wait(), interval if remaining is None else min(interval, remaining)
                    )
                interval = min(interval * 2, self.poll_interval)
        finally:
            waiters.discard(event)
            if not waiters:
                registry.pop((run_id, name), None)

    def wake_local_waiters(self, run_id: str | None = None, name: str | None = None) -> None:
        """Wake this process's ``wait_for_signal`` callers for one run and name, or all of them."""
        registry = self._local_waiters()
        keys = list(registry) if run_id is None else [(run_id, name or "")]
        for key in keys:
            for event in registry.get(key, ()):
                event.set()

    def has_local_waiters(self) -> bool:
        return bool(self._local_waiters())

    def _local_waiters(self) -> dict[tuple[str, str], set[asyncio.Event]]:
        # Created on first use: subclasses need not call an __init__ of this class.
        registry: dict[tuple[str, str], set[asyncio.Event]] = self.__dict__.setdefault("_signal_waiters", {})
        return registry

    def __repr__(self) -> str:
        """``<ClassName where>``, passwords hidden (``redact_url``): the URL the plugin manager
        made the store from, else the store's ``url`` or ``path`` attribute, else its ``name``."""
        where = self.__dict__.get(URL_ATTRIBUTE) or getattr(self, "url", None)
        if isinstance(where, str) and where:
            return f"<{type(self).__name__} {redact_url(where)}>"
        path = getattr(self, "path", None)
        if isinstance(path, str) and path:
            return f"<{type(self).__name__} {path!r}>"
        return f"<{type(self).__name__} {self.name}>"

    # -- python-durable 0.2's signal calls, on every store ----------------------------

    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        """``(True, payload)`` of the first delivery of ``name`` to the run, else ``(False, None)``."""
        deliveries = await self.list_signals(run_id, name)
        return (True, _codec.loads(deliveries[0].payload)) if deliveries else (False, None)

    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool:
        """Deliver ``payload`` as signal ``name`` once: ``False`` if ``name`` was delivered before
        (``Workflow.complete`` does the same and also tells observers)."""
        return await self.send_signal(run_id, name, "", _codec.dumps(payload))

    # -- stores written for python-durable 0.2 ------------------------------------------

    _legacy_api: ClassVar[bool] = False
    """Set on a subclass written against python-durable 0.2's seven-method API (see
    ``__init_subclass__``); ``Workflow`` runs such a store through ``durable._legacy_store``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Recognise a store written for python-durable 0.2: it defines the seven methods that
        version's ``Store`` declared (``LEGACY_METHODS``) and none of this class's abstract methods
        but ``open`` and ``close``. Such a class gets stand-ins for the abstract methods, so it can
        be instantiated as it could there; every other subclass must implement them all."""
        super().__init_subclass__(**kwargs)

        def own(name: str) -> bool:
            method = getattr(cls, name, None)
            return method is not None and method is not getattr(Store, name, None)

        abstract: frozenset[str] = getattr(Store, "__abstractmethods__", frozenset())
        if not all(own(name) for name in LEGACY_METHODS):
            return
        if cls._legacy_api or not any(own(name) for name in abstract - {"open", "close"}):
            cls._legacy_api = True
            for name in abstract:
                if getattr(getattr(cls, name, None), "__isabstractmethod__", False):
                    setattr(cls, name, _legacy_stand_in(name))


LEGACY_METHODS = (
    "setup", "get_step", "set_step", "mark_run_done", "mark_run_failed", "get_signal", "set_signal"
)  # fmt: skip
"""The abstract methods of python-durable 0.2's ``Store``."""


def _legacy_stand_in(name: str) -> Any:
    """What a python-durable 0.2 store has in place of this version's abstract method ``name``."""
    if name == "open":

        async def open(self: Store, *, create: bool = True) -> None:
            await self.setup()

        return open
    if name == "close":

        async def close(self: Store) -> None:
            pass

        return close

    async def unsupported(self: Store, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"{type(self).__name__} implements python-durable 0.2's seven-method Store API, which has no "
            f"{name}(): pass it to Workflow(db=...), which runs it through an adapter"
        )

    unsupported.__name__ = unsupported.__qualname__ = name
    return unsupported


def __getattr__(name: str) -> Any:
    # The default stores live in their own distributions; import them on first use.
    if name in ("SQLiteStore", "InMemoryStore"):
        from durable._plugins import import_store_class

        return import_store_class(name)
    raise AttributeError(f"module 'durable.store' has no attribute {name!r}")
